"""training/autoencoder_training.py on real Heist frames: artefacts, resumption, stopping, errors."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from gym_autoencoder import load_checkpoint, load_model
from gym_autoencoder.training.autoencoder_training import build_parser, command_line_settings, main
from gym_autoencoder.training.config import default_config
from gym_autoencoder.training.loop import read_state
from tests.helpers import RUN_EVALUATION, training_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # in-process runs; scripts get --threads 1
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "training" / "autoencoder_training.py"


def finite_numbers(value) -> list[float]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in finite_numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in finite_numbers(v)]
    return [value] if isinstance(value, float) else []


@pytest.mark.slow
def test_the_script_trains_evaluates_and_writes_every_artefact(data_dir, fast_config, tmp_path):
    command = [sys.executable, str(SCRIPT), "--model", "Conv_Maxpool", "--name", "e2e", "--epochs", "2",
               "--threads", "1", *training_args(data_dir, tmp_path, fast_config)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "e2e"
    expected = {"e2e.pt", "summary.txt", "reconstruction.mp4", "recon_grid.png", "loss_curve.png",
                "metrics.json", "metrics.npz", "checkpoints"}
    assert expected <= {p.name for p in run.iterdir()}
    assert (run / "checkpoints" / "last.pt").is_file()

    video = cv2.VideoCapture(str(run / "reconstruction.mp4"))
    ok, frame = video.read()
    assert ok and frame.shape == (4 * 64 + 28, 2 * 4 * 64, 3)
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == RUN_EVALUATION["video_frames"]
    assert cv2.imread(str(run / "recon_grid.png")).shape == (2 * 128, 8 * 128, 3)
    assert cv2.imread(str(run / "loss_curve.png")) is not None

    summary = (run / "summary.txt").read_text()
    assert "Total params" in summary and "CPU with 1 torch threads" in summary
    for part in ("encoder", "full"):
        for batch in (1, 64):
            assert re.search(rf"^cpu\s+{part}\s+batch\s+{batch}:\s+\d+\.\d+ ms/frame$", summary, re.M)
    assert "median of 3 timed repetitions after 1 untimed warm-up" in summary

    values = json.loads((run / "metrics.json").read_text())
    assert values["training"]["epochs_trained"] == 2 and len(values["training"]["history"]["test_loss"]) == 2
    for key in ("mse", "psnr_db", "ssim"):
        assert math.isfinite(values["test"][key])
    assert 0 < values["test"]["ssim"] <= 1
    numbers = finite_numbers(values)
    assert numbers and all(math.isfinite(x) for x in numbers)
    assert values["data"]["labels"]
    for key in ("object_fidelity", "latent_probe", "pixel_probe"):
        assert 0 <= values[key]["mean"] <= 1
    assert sum(entry["objects"] for entry in values["object_fidelity"]["per_class"].values()) > 0
    with np.load(run / "metrics.npz") as arrays:
        assert arrays["frame_psnr"].shape == (64,) and np.isfinite(arrays["frame_psnr"]).all()
        assert arrays["history_train_loss"].shape == (2,)
        assert arrays["object_errors"].shape == (64, 7) and arrays["latent_probe"].shape == (7,)

    model = load_model(run / "e2e.pt")
    assert model.architecture == "Conv_Maxpool"
    assert model.metadata["metrics"]["test"]["psnr_db"] == pytest.approx(values["test"]["psnr_db"])
    assert model.metadata["recipe"]["epochs"] == 2 and model.metadata["data"]["train_frames"] == 256


@pytest.mark.parametrize("extra", [[], ["--visibility-weight", "0.5"]], ids=["plain", "visibility head"])
@pytest.mark.slow
def test_resume_continues_exactly_as_an_uninterrupted_seeded_run(extra, small_data_dir, fast_config, tmp_path):
    common = ["--model", "VAE_Paper", "--skip-evaluation", *extra, *training_args(small_data_dir, tmp_path, fast_config)]
    assert main([*common, "--name", "straight", "--epochs", "2"]) == 0
    assert main([*common, "--name", "halves", "--epochs", "1"]) == 0
    assert main([*common, "--name", "halves", "--epochs", "2", "--resume"]) == 0
    straight = read_state(tmp_path / "straight" / "checkpoints" / "last.pt")
    halves = read_state(tmp_path / "halves" / "checkpoints" / "last.pt")
    timed = ("seconds",)  # wall time is the one thing a resumed run cannot repeat
    assert {key: value for key, value in straight["state"]["history"].items() if key not in timed} == {
        key: value for key, value in halves["state"]["history"].items() if key not in timed}
    assert len(straight["state"]["history"]["test_loss"]) == 2 == len(halves["state"]["history"]["seconds"])
    for part in ("model", "visibility_head"):
        for key, tensor in straight[part].items():
            assert torch.equal(tensor, halves[part][key]), (part, key)
    assert bool(straight["visibility_head"]) == bool(extra)


def test_early_stopping_ends_a_run_that_no_longer_improves(small_data_dir, fast_config, tmp_path, capsys):
    # lr 0 never changes the weights, so the test loss never drops below epoch 1's
    assert main(["--model", "Conv_Maxpool", "--lr", "0", "--patience", "2", "--epochs", "10",
                 "--skip-evaluation", *training_args(small_data_dir, tmp_path, fast_config)]) == 0
    state = read_state(tmp_path / "Conv_Maxpool/checkpoints/last.pt")["state"]
    assert state["epoch"] == 3 and state["best_epoch"] == 1 and state["stale_epochs"] == 2
    assert "training stopped (early stopping) after 3 epochs" in capsys.readouterr().out


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_from_its_last_completed_epoch(data_dir, fast_config, tmp_path):
    run = ["--model", "Conv_Maxpool", "--epochs", "8", "--patience", "100", "--skip-evaluation",
           *training_args(data_dir, tmp_path, fast_config)]
    command = [sys.executable, str(SCRIPT), *run, "--threads", "1"]
    state_path = tmp_path / "Conv_Maxpool" / "checkpoints" / "last.pt"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.monotonic() + 240
    while not state_path.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = read_state(state_path)["state"]
    assert 1 <= before["epoch"] < 8

    assert main([*run, "--resume"]) == 0
    after = read_state(state_path)["state"]
    assert after["epoch"] == 8 and len(after["history"]["train_loss"]) == 8
    for key, series in before["history"].items():
        assert after["history"][key][: before["epoch"]] == series


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(
    small_data_dir, fast_config, tmp_path, capsys
):
    common = ["--model", "Conv_Maxpool", "--skip-evaluation", *training_args(small_data_dir, tmp_path, fast_config)]
    assert main([*common, "--epochs", "1"]) == 0
    best = tmp_path / "Conv_Maxpool" / "Conv_Maxpool.pt"
    best_bytes = best.read_bytes()
    assert main([*common, "--epochs", "3", "--resume", "--lr", "1e30"]) == 1
    error = capsys.readouterr().err
    assert re.search(r"loss became (nan|inf).*in epoch 2; training stopped and the last good state "
                     r"\(epoch 1\) is kept", error)
    assert read_state(tmp_path / "Conv_Maxpool/checkpoints/last.pt")["state"]["epoch"] == 1
    assert best.read_bytes() == best_bytes


@pytest.mark.slow
def test_all_trains_the_six_models_in_turn_and_a_second_call_finds_them_done(
    small_data_dir, fast_config, tmp_path, capsys
):
    common = ["--all", "--name", "tiny", "--epochs", "1", "--skip-evaluation",
              *training_args(small_data_dir, tmp_path, fast_config)]
    assert main(common) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {f"tiny_{m}" for m in ("Conv_Unpool", "Conv_Maxpool", "Conv_Maxpool_Big",
                                            "Conv_No_Bottleneck", "VAE_Paper", "VAE_Alex")}
    vae_alex = load_model(tmp_path / "tiny_VAE_Alex" / "tiny_VAE_Alex.pt")
    assert vae_alex.metadata["recipe"]["arch"]["perceptual_features"] == "random"
    capsys.readouterr()
    assert main([*common, "--resume"]) == 0
    assert capsys.readouterr().out.count("already complete") == 6


@pytest.mark.parametrize("extra, config, message", [
    (["--epochs", "0"], {}, "epochs must be a positive integer, got 0"),
    ([], {"epoch": 3}, "unknown setting 'epoch' in .*; known settings: data_dir, save_dir"),
    ([], {"models": {"VAE_Paper": {"arch": {"kl_weigth": 0.1}}}}, None),
    ([], {"models": {"Conv_Maxpool": {"momentum": 0.9}}}, "unknown setting 'momentum' in models.Conv_Max"),
    (["--lr-schedule", "linear"], {}, "lr_schedule must be one of constant, cosine, plateau"),
    (["--arch", "oops"], {}, "--arch takes KEY=VALUE"),
    (["--data-dir", "nowhere"], {}, r"training data not found: training_samples.npy, test_samples.npy "
                                    r"missing in .*nowhere; create the data set with `python -m "
                                    r"gym_autoencoder.data_generation.sample_generator_heist --output-dir .*nowhere "
                                    r"--num-samples 50000 --test-fraction 0.1 --random-actions 10 "
                                    r"--distribution-mode memory --seed 0`, or add --generate-data"),
])
def test_bad_settings_give_one_clear_error(extra, config, message, small_data_dir, tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    model = ["--model", "VAE_Paper"] if "models" in config else []
    assert main([*training_args(small_data_dir, tmp_path, path), *model, *extra]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("autoencoder_training.py: error: ")
    assert re.search(message or r"bad arguments for VAE_Paper: .*kl_weigth", error)


def test_a_true_or_false_setting_takes_true_or_false_on_the_command_line(capsys):
    settings = command_line_settings(build_parser(default_config()).parse_args(
        ["--object-class-balance", "false", "--loss-reduction", "frame_log"]))
    assert settings == {"object_class_balance": False, "loss_reduction": "frame_log"}
    with pytest.raises(SystemExit):
        build_parser(default_config()).parse_args(["--object-class-balance", "maybe"])
    assert "expected true or false, got 'maybe'" in capsys.readouterr().err


def test_unknown_flags_are_refused_by_name(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--epoch", "3", "--learning-rat", "1"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --epoch 3 --learning-rat 1" in capsys.readouterr().err


def test_an_existing_run_is_continued_only_on_request_and_with_its_recipe(
    small_data_dir, fast_config, tmp_path, capsys
):
    common = ["--model", "Conv_Maxpool", "--epochs", "1", "--skip-evaluation",
              *training_args(small_data_dir, tmp_path, fast_config)]
    assert main(common) == 0
    assert main(common) == 2
    assert "already holds a run; add --resume to continue it" in capsys.readouterr().err
    assert main([*common, "--resume", "--weight-decay", "0.1"]) == 2
    error = capsys.readouterr().err
    assert "a resumed run keeps its recipe, but weight_decay (stored 0.0, given 0.1) differ" in error


def test_a_run_can_start_from_the_weights_of_a_checkpoint_and_records_their_lineage(
    small_data_dir, fast_config, tmp_path, capsys
):
    common = ["--skip-evaluation", *training_args(small_data_dir, tmp_path, fast_config)]
    assert main(["--model", "Conv_Maxpool", "--name", "first", "--epochs", "2", *common]) == 0
    first = tmp_path / "first" / "first.pt"
    first_model, first_metadata = load_checkpoint(first)
    # lr 0 keeps the starting weights, so the new run's best model is the first run's
    tune = ["--model", "Conv_Maxpool", "--name", "tuned", "--lr", "0", "--init-from", str(first), *common]
    assert main([*tune, "--epochs", "1", "--loss-reduction", "frame_log"]) == 0
    tuned_model, tuned = load_checkpoint(tmp_path / "tuned" / "tuned.pt")
    for key, tensor in first_model.state_dict().items():
        assert torch.equal(tensor, tuned_model.state_dict()[key]), key
    lineage = tuned["initialised_from"]
    assert lineage["checkpoint"] == str(first.resolve()) and lineage["epochs"] == first_metadata["epoch"]
    assert lineage["recipe"]["loss_reduction"] == "mean" and tuned["recipe"]["loss_reduction"] == "frame_log"
    assert lineage["learning_rates"] == first_metadata["history"]["lr"] and len(lineage["learning_rates"]) == 2
    first.unlink()  # a resumed run keeps the lineage it recorded, whatever became of the source
    capsys.readouterr()
    assert main([*tune, "--epochs", "2", "--resume"]) == 0
    assert f"({first_metadata['epoch']} epochs)" in capsys.readouterr().out
    assert main(["--model", "Conv_Unpool", "--name", "wrong", "--epochs", "1",
                 "--init-from", str(tmp_path / "tuned" / "tuned.pt"), *common]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "holds a Conv_Maxpool model, expected Conv_Unpool" in error


def test_generate_data_makes_a_missing_data_set_first(fast_config, tmp_path):
    data = tmp_path / "fresh"
    assert main(["--model", "Conv_Maxpool", "--epochs", "1", "--skip-evaluation", "--generate-data",
                 "--generate-num-samples", "48", "--generate-test-fraction", "0.25",
                 *training_args(data, tmp_path / "runs", fast_config)]) == 0
    assert np.load(data / "training_samples.npy", mmap_mode="r").shape == (36, 64, 64, 3)
    assert np.load(data / "test_labels.npz")["visible"].shape == (12, 7)
    assert (tmp_path / "runs" / "Conv_Maxpool" / "Conv_Maxpool.pt").is_file()


@pytest.mark.slow
def test_the_offered_generator_command_makes_the_missing_data(fast_config, tmp_path, capsys):
    data = tmp_path / "offered"
    run = ["--model", "Conv_Maxpool", "--epochs", "1", "--skip-evaluation", "--generate-num-samples", "40",
           *training_args(data, tmp_path / "runs", fast_config)]
    assert main(run) == 2
    command = re.search(r"`(python -m [^`]+)`", capsys.readouterr().err).group(1).split()
    subprocess.run([sys.executable, *command[1:], "--no-progress"], check=True, cwd=tmp_path, timeout=300)
    assert main(run) == 0
    assert np.load(data / "test_samples.npy", mmap_mode="r").shape == (4, 64, 64, 3)
