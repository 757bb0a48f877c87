"""The basic and balanced generators: files, labels against pixels, balance, splits, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gym_autoencoder.data_generation import sample_generator_heist, sample_generator_heist_basic
from gym_autoencoder.data_generation.dataset_files import SPLITS, DatasetWriter, is_test_level
from gym_autoencoder.data_generation.heist_render import sprite_images
from gym_autoencoder.data_generation.labels import LABEL_ARRAYS, OBJECT_CLASSES
from gym_autoencoder.data_generation.sample_generator_heist import NONE, Quota, generate_balanced_dataset
from gym_autoencoder.data_generation.sample_generator_heist_basic import generate_basic_dataset

LABEL_DTYPES = {
    "level_seeds": np.int64, "visible": np.bool_, "pixel_counts": np.int32, "object_mask": np.uint8,
    "object_xy": np.float32, "agent_xy": np.float32, "held_keys": np.bool_, "walls": np.bool_,
    "level_steps": np.int32,
}
BASIC = dict(num_samples=320, seed=1, num_envs=32, progress=False)
BALANCED = dict(num_samples=700, seed=2, num_envs=32, progress=False)


def load(directory: Path, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    with np.load(directory / f"{split}_labels.npz") as labels:
        return np.load(directory / f"{split}_samples.npy"), {name: labels[name] for name in labels.files}


@pytest.fixture(scope="module")
def basic_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("basic")
    generate_basic_dataset(out, **BASIC)
    return out


@pytest.fixture(scope="module")
def balanced_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("balanced")
    generate_balanced_dataset(out, **BALANCED)
    return out


@pytest.fixture(params=["basic", "balanced"])
def dataset(request) -> Path:
    return request.getfixturevalue(f"{request.param}_dir")


def palettes() -> list[np.ndarray]:
    """Each object class's main sprite colours (opaque colours at least 10% as common as the top one)."""
    result = []
    for image in sprite_images():
        colours, counts = np.unique(image[..., :3][image[..., 3] == 255], axis=0, return_counts=True)
        result.append(colours[counts >= 0.1 * counts.max()])
    return result


def test_files_follow_the_label_contract(dataset):
    sizes = {}
    for split in SPLITS:
        frames, labels = load(dataset, split)
        assert frames.dtype == np.uint8 and frames.shape[1:] == (64, 64, 3)
        assert set(LABEL_ARRAYS) <= set(labels)
        for name, dtype in LABEL_DTYPES.items():
            assert labels[name].dtype == dtype and len(labels[name]) == len(frames), name
        assert labels["visible"].shape[1:] == (len(OBJECT_CLASSES),) and labels["walls"].shape[1:] == (9, 9)
        assert labels["object_mask"].shape[1:] == (64, 64) and labels["object_mask"].max() <= len(OBJECT_CLASSES)
        sizes[split] = len(frames)
    report = json.loads((dataset / "generation_report.json").read_text())
    total = report["arguments"]["num_samples"]
    assert sizes == report["frames"] == {"training": total - round(total * 0.1), "test": round(total * 0.1)}


def test_train_and_test_share_no_level(dataset):
    seeds = {split: load(dataset, split)[1]["level_seeds"] for split in SPLITS}
    assert not set(seeds["training"]) & set(seeds["test"])
    assert not is_test_level(seeds["training"], 0.1).any() and is_test_level(seeds["test"], 0.1).all()


def test_labels_agree_with_the_pixels(dataset):
    colours = palettes()
    for split in SPLITS:
        frames, labels = load(dataset, split)
        mask, visible = labels["object_mask"], labels["visible"]
        assert np.array_equal(labels["pixel_counts"], np.stack([(mask == k + 1).sum((1, 2)) for k in range(7)], 1))
        hud = np.zeros((64, 64), bool)
        hud[:10, 40:] = True  # held-key icons: key-coloured, but not world objects
        rows, cols = np.mgrid[0:64, 0:64] + 0.5
        for k, palette in enumerate(colours):
            coloured = (frames[:, :, :, None, :] == palette).all(-1).any(-1)
            # every visible object shows its colours ...
            assert ((coloured & (mask == k + 1)).sum((1, 2))[visible[:, k]] > 0).all(), OBJECT_CLASSES[k]
            # ... where its world position projects (memory mode: 8 px per unit, agent at the centre)
            for i in np.flatnonzero(visible[:, k]):
                (x, y), (ax, ay) = labels["object_xy"][i, k], labels["agent_xy"][i]
                col, row = 8 * (x - ax + 4), 8 * (4 + ay - y)
                pixels = mask[i] == k + 1
                assert (np.abs(cols[pixels] - col) <= 5).all() and (np.abs(rows[pixels] - row) <= 5).all()
            # and no object colour appears outside the labelled object pixels
            outside = coloured & (mask == 0)
            outside[labels["held_keys"].any(axis=1)] &= ~hud
            assert not outside.any(), OBJECT_CLASSES[k]


def test_balanced_target_shares_are_exact(balanced_dir):
    report = json.loads((balanced_dir / "generation_report.json").read_text())
    for split in SPLITS:
        _, labels = load(balanced_dir, split)
        target, visible = labels["target_class"], labels["visible"]
        quota = Quota(len(target), 0.5).target
        counts = np.bincount(np.where(target < 0, NONE, target), minlength=NONE + 1)
        assert np.array_equal(counts, quota)
        assert not visible[target < 0].any()
        assert visible[np.flatnonzero(target >= 0), target[target >= 0]].all()
        assert report["target_share"][split]["none"] == pytest.approx(quota[NONE] / len(target), abs=1e-4)


def test_single_object_frames_balance_visibility_too(tmp_path):
    generate_balanced_dataset(tmp_path, 84, seed=4, test_fraction=0.5, num_envs=32, single_object=True,
                              progress=False)
    for split in SPLITS:
        _, labels = load(tmp_path, split)
        target, visible = labels["target_class"], labels["visible"]
        assert (visible.sum(axis=1) == (target >= 0)).all()
        assert np.array_equal(visible.sum(axis=0), Quota(len(target), 0.5).target[:NONE])


def test_quota_prefers_the_class_furthest_behind():
    quota = Quota(28, 0.5)
    assert quota.target.tolist() == [2] * 7 + [14]
    red_key, blue_lock = OBJECT_CLASSES.index("red_key"), OBJECT_CLASSES.index("blue_lock")
    both = np.zeros(7, bool)
    both[[red_key, blue_lock]] = True
    quota.filled[blue_lock] = 1
    assert quota.choose(both) == red_key
    assert quota.choose(np.zeros(7, bool)) == NONE
    quota.filled[[red_key, blue_lock]] = 2
    assert quota.choose(both) is None
    assert not quota.behind()[[red_key, blue_lock]].any()


@pytest.mark.parametrize(
    "generate, arguments, reference",
    [(generate_basic_dataset, BASIC, "basic_dir"), (generate_balanced_dataset, BALANCED, "balanced_dir")],
)
def test_same_arguments_give_the_same_bytes(generate, arguments, reference, request, tmp_path):
    generate(tmp_path, **arguments)
    first = request.getfixturevalue(reference)
    names = sorted(path.name for path in first.iterdir())
    assert names == sorted(path.name for path in tmp_path.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_basic_generator_works_for_other_games(tmp_path):
    report = generate_basic_dataset(tmp_path, 40, game="coinrun", distribution_mode="easy", num_envs=16,
                                    random_actions=3, progress=False)
    frames, labels = load(tmp_path, "training")
    assert report["arguments"]["labels"] is False
    assert set(labels) == {"level_seeds"} and len(frames) == 36
    assert frames.std() > 10  # real pictures, not blank buffers


def test_an_interrupted_write_leaves_no_file_and_keeps_the_old_ones(tmp_path, basic_dir):
    for path in basic_dir.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    frames = np.zeros((5, 64, 64, 3), np.uint8)
    with pytest.raises(KeyboardInterrupt):
        with DatasetWriter(tmp_path, {"training": 10, "test": 2}) as writer:
            writer.add("training", frames, {"level_seeds": np.arange(5)})
            raise KeyboardInterrupt
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="incomplete"):
        with DatasetWriter(fresh, {"training": 10, "test": 2}) as writer:
            writer.add("training", frames, {"level_seeds": np.arange(5)})
    assert list(fresh.iterdir()) == []


@pytest.mark.parametrize("main", [sample_generator_heist.main, sample_generator_heist_basic.main])
@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--num-samples", "-5"], "num_samples must be a positive integer"),
        (["--num-samples", "ten"], "invalid int value"),
        (["--test-fraction", "0"], "strictly between 0 and 1"),
        (["--test-fraction", "1.5"], "strictly between 0 and 1"),
        (["--random-actions", "-1"], "random_actions must be a non-negative"),
        (["--seed", "-3"], "seed must be an integer"),
        (["--distribution-mode", "extreme"], "no 'extreme' distribution mode"),
        (["--output-dir", "{file}/sub"], "choose a writable --output-dir"),
        (["--workers", "0"], "workers must be a positive integer"),
        (["--workers", "-2"], "workers must be a positive integer"),
    ],
)
def test_bad_input_gets_one_line_and_a_nonzero_exit(main, arguments, message, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    argv = ["--num-samples", "100", "--output-dir", str(tmp_path / "out")]
    argv += [a.replace("{file}", str(blocker)) for a in arguments]
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own type errors
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and message in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unknown_game_and_help_from_the_command_line(tmp_path):
    script = [sys.executable, "-m", "gym_autoencoder.data_generation.sample_generator_heist_basic"]
    bad = subprocess.run(script + ["--game", "tetris", "--num-samples", "10", "--output-dir", str(tmp_path)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown Procgen game 'tetris'")
    assert len(bad.stderr.strip().splitlines()) == 1
    for module in ("gym_autoencoder.data_generation.sample_generator_heist", "gym_autoencoder.data_generation.sample_generator_heist_basic"):
        shown = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True)
        assert shown.returncode == 0 and "--num-samples" in shown.stdout and "--distribution-mode" in shown.stdout
