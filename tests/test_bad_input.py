"""Faults and hostile input: full disks, kills in the middle of a write, read-only directories and bad
values each give one clear line (exit status 2 from the command lines, a GymAutoencoderError from the
Python API), and leave nothing lost or half-written."""

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch

from gym_autoencoder import FrameFormatError, load_model
from gym_autoencoder.checkpoint import load_checkpoint, save_checkpoint
from gym_autoencoder.data_generation import sample_generator_heist, sample_generator_heist_basic
from gym_autoencoder.data_generation.arguments import GenerationError
from gym_autoencoder.data_generation.sample_generator_heist_basic import generate_basic_dataset
from gym_autoencoder.envs.errors import EnvOptionError
from gym_autoencoder.errors import CheckpointError, DeviceError, GymAutoencoderError, StorageError
from gym_autoencoder.model_stubs import build_model
from gym_autoencoder.payload import save_payload
from gym_autoencoder.procgen_batch import ProcgenBatch
from gym_autoencoder.procgen_games import ProcgenOptionError, ProcgenOptions
from gym_autoencoder.training.autoencoder_training import main as train_main
from gym_autoencoder.training.config import ConfigError
from gym_autoencoder.training.data import DataError, open_dataset
from gym_autoencoder.training.evaluate import evaluate_run
from gym_autoencoder.training.evaluate import main as evaluate_main
from gym_autoencoder.training.loop import read_state
from tests.helpers import one_error_line, training_args, tree_bytes, untrained_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DATA_FILES = ("training_samples.npy", "test_samples.npy", "training_labels.npz", "test_labels.npz",
              "generation_report.json")


def small_set(directory: Path, seed: int) -> Path:
    """40 labelled Heist frames (36 training, 4 test) made with ``seed``."""
    generate_basic_dataset(directory, 40, seed=seed, num_envs=8, progress=False)
    return directory


def hidden_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# --- data sets: full disks, kills, leftovers, generators that cannot progress -----------------------

def test_a_full_disk_stops_generation_with_one_line_and_leaves_nothing(small_disk, capsys):
    out = small_disk / "out"
    argv = ["--num-envs", "8", "--num-samples", "1000", "--output-dir", str(out), "--no-progress"]
    assert sample_generator_heist_basic.main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot write to {out} (No space left on device)" in line and "--output-dir" in line
    assert list(out.iterdir()) == []  # no temporaries fill the disk
    with pytest.raises(StorageError, match="No space left on device"):
        generate_basic_dataset(out, 1000, num_envs=8, progress=False)
    assert list(out.iterdir()) == []


KILL_SCRIPT = """
import os, signal, sys
from gym_autoencoder.atomic import COMMIT_JOURNAL
from gym_autoencoder.data_generation.sample_generator_heist_basic import generate_basic_dataset

kill_at, steps = int(sys.argv[2]), [0]
real_replace, real_unlink = os.replace, os.unlink

def step():
    steps[0] += 1
    if steps[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

def replace(*args, **kwargs):
    step()
    return real_replace(*args, **kwargs)

def unlink(path, *args, **kwargs):
    if os.path.basename(path) == COMMIT_JOURNAL:
        step()
    return real_unlink(path, *args, **kwargs)

os.replace, os.unlink = replace, unlink
generate_basic_dataset(sys.argv[1], 40, seed=1, num_envs=8, progress=False)
"""
# The renames of a generator run: the commit journal, four data files, the report; then the journal goes.
RENAME_POINTS = range(1, 8)


@pytest.mark.slow
def test_a_kill_at_any_rename_leaves_the_old_or_the_new_data_set_never_a_mix(tmp_path):
    old = tree_bytes(small_set(tmp_path / "old", seed=0))
    new = tree_bytes(small_set(tmp_path / "new", seed=1))
    assert all(old[name] != new[name] for name in DATA_FILES)
    outcomes = []
    for kill_at in RENAME_POINTS:
        work = tmp_path / f"killed_at_{kill_at}"
        shutil.copytree(tmp_path / "old", work)
        killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(work), str(kill_at)],
                                capture_output=True, text=True, timeout=300)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert hidden_files(work), "the kill left the run's temporaries or journal behind"
        open_dataset(work)  # what a reader (training) sees
        seen = {name: (work / name).read_bytes() for name in DATA_FILES}
        assert seen in ({name: old[name] for name in DATA_FILES}, {name: new[name] for name in DATA_FILES})
        outcomes.append("new" if seen["training_samples.npy"] == new["training_samples.npy"] else "old")
        small_set(work, seed=2)  # the next run in that directory
        assert hidden_files(work) == []
    # before the journal is in place the old set stands; from then on the new one does
    assert outcomes == ["old"] + ["new"] * (len(RENAME_POINTS) - 1)


def test_parts_of_two_data_sets_are_refused_together(tmp_path, capsys):
    first, second = small_set(tmp_path / "first", seed=0), small_set(tmp_path / "second", seed=1)
    shutil.copy(second / "training_labels.npz", first / "training_labels.npz")  # same size, other seed
    with pytest.raises(DataError, match="do not belong together; regenerate the data set"):
        open_dataset(first)
    before = tree_bytes(tmp_path)
    assert train_main(["--model", "Conv_Maxpool", "--epochs", "1",
                       "--data-dir", str(first), "--save-dir", str(tmp_path / "runs")]) == 2
    assert "training_labels.npz is not the file generation_report.json records" in one_error_line(
        capsys.readouterr().err, "autoencoder_training.py")
    assert tree_bytes(tmp_path) == before and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("junk", [b"not a zip archive at all", None], ids=["random", "truncated"])
def test_unreadable_labels_are_one_data_error(junk, tmp_path, capsys):
    data = small_set(tmp_path / "data", seed=0)
    (data / "generation_report.json").unlink()  # a data set made by hand: nothing to check against
    labels = data / "training_labels.npz"
    labels.write_bytes(junk if junk is not None else labels.read_bytes()[: labels.stat().st_size // 2])
    with pytest.raises(DataError, match="training_labels.npz is not a readable label archive"):
        open_dataset(data).train.label("visible")
    assert train_main(["--model", "Conv_Maxpool", "--epochs", "1", "--object-pixel-weight", "4",
                       "--data-dir", str(data), "--save-dir", str(tmp_path / "runs")]) == 2
    assert "is not a readable label archive" in one_error_line(capsys.readouterr().err, "autoencoder_training.py")


@pytest.mark.parametrize("generator", [sample_generator_heist_basic, sample_generator_heist])
def test_random_actions_beyond_the_time_limit_stop_with_the_reason(generator, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--num-samples", "20", "--num-envs", "2", "--random-actions", "1000", "--output-dir", str(out)]
    assert generator.main(argv) == 2
    assert "random_actions 1000 reaches heist's time limit of 1000 steps" in one_error_line(capsys.readouterr().err)
    assert list(out.iterdir()) == []
    with pytest.raises(GenerationError, match="use fewer than 1000 random actions"):
        generate_basic_dataset(out, 20, random_actions=5000, num_envs=2, progress=False)


# --- values crossing into Procgen ------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"start_level": 1.5}, "start_level must be >= 0 and <= 2147483647, an integer, got 1.5"),
    ({"start_level": 2**31}, "start_level must be >= 0 and <= 2147483647"),
    ({"start_level": "a"}, "start_level must be >= 0 and <= 2147483647, an integer, got 'a'"),
    ({"start_level": True}, "start_level must be"),
    ({"num_levels": 2**40}, "num_levels (0: unlimited levels) must be >= 0 and <= 2147483647"),
    ({"use_backgrounds": "yes"}, "use_backgrounds must be True or False"),
    ({"game": None}, "unknown Procgen game None"),
])
def test_bad_environment_options_are_one_catchable_error(options, message, env_checkpoints):
    with pytest.raises(EnvOptionError) as raised:
        gymnasium.make("gym_autoencoder:auto-maxpool-v0", checkpoint=env_checkpoints["auto-maxpool-v0"],
                       device="cpu", **options).reset()
    assert message in str(raised.value) and len(str(raised.value).splitlines()) == 1
    assert isinstance(raised.value, GymAutoencoderError)


@pytest.mark.parametrize("arguments, message", [
    ({"num": 2.5}, "the number of games must be >= 1"),
    ({"num": 0}, "the number of games must be >= 1"),
    ({"rand_seed": 2**31}, "rand_seed must be >= 0 and <= 2147483647"),
    ({"num_threads": 100000}, "num_threads must be >= 0 and <= 1024"),
    ({"options": ProcgenOptions(start_level=1.5)}, "start_level must be"),
])
def test_procgen_batches_check_every_value_first(arguments, message):
    values = {"options": ProcgenOptions(), "num": 1, "rand_seed": 0, **arguments}
    with pytest.raises(ProcgenOptionError, match=message.replace("(", r"\(")):
        ProcgenBatch(**values)


# --- checkpoints ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_checkpoints_with_non_finite_weights_are_refused(value, tmp_path, env_checkpoints):
    model = build_model("Conv_Maxpool")
    with torch.no_grad():
        model.state_dict()["encoder.0.weight"][0, 0, 0, 0] = value
    save_checkpoint(tmp_path / "bad.pt", model)
    with pytest.raises(CheckpointError, match="holds NaN or infinite weights \\(encoder.0.weight\\)"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        gymnasium.make("gym_autoencoder:auto-maxpool-v0", checkpoint=tmp_path / "bad.pt", device="cpu")


@pytest.mark.parametrize("state_dict", [[1, 2], "weights", {"w": [1.0]}, {1: torch.zeros(1)}])
def test_hand_made_checkpoints_with_a_bad_state_dict_are_refused(state_dict, tmp_path):
    save_payload(tmp_path / "hand.pt", "gym_autoencoder.checkpoint", 1, {
        "architecture": "Conv_Maxpool", "arch_kwargs": {}, "encoding_shape": [1], "state_dict": state_dict,
        "metadata": {},
    })
    with pytest.raises(CheckpointError, match="'state_dict' is not a mapping of parameter names to tensors"):
        load_checkpoint(tmp_path / "hand.pt")


# --- training and evaluation ----------------------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--lr", "inf"], "learning_rate must be a finite number, got inf"),
    (["--lr", "nan"], "learning_rate must be a finite number, got nan"),
    (["--object-pixel-weight", "inf"], "object_pixel_weight must be a finite number, got inf"),
    (["--weight-decay", "inf"], "weight_decay must be a finite number, got inf"),
    (["--seed", str(2**64)], "seed must be an integer from 0 to 9223372036854775807"),
    (["--threads", "100000"], "threads must be an integer from 0 to 1024"),
    (["--arch", "kl_weight=inf"], "arch must be architecture arguments whose numbers are finite"),
    (["--config", "{latin1}"], "is not UTF-8 text (byte 13); save it as UTF-8 YAML"),
])
def test_bad_training_settings_are_one_line_and_exit_2(flags, message, small_data_dir, tmp_path, capsys):
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("epochs: 1\n# r\xe9glages\n".encode("latin-1"))
    argv = [flag.replace("{latin1}", str(latin1)) for flag in flags]
    runs = tmp_path / "runs"
    assert train_main(["--model", "Conv_Maxpool", "--data-dir", str(small_data_dir), "--save-dir", str(runs),
                       *argv]) == 2
    assert message in one_error_line(capsys.readouterr().err, "autoencoder_training.py")
    assert not runs.exists()


def test_training_into_a_full_disk_stops_before_the_first_epoch(small_data_dir, small_disk, fast_config, capsys):
    # Conv_No_Bottleneck's checkpoints need more than the 3 MB disk holds
    assert train_main(["--model", "Conv_No_Bottleneck", "--epochs", "1",
                       *training_args(small_data_dir, small_disk, fast_config)]) == 2
    line = one_error_line(capsys.readouterr().err, "autoencoder_training.py")
    assert "(No space left on device); choose a --save-dir with room for the run's checkpoints" in line
    assert [p.name for p in (small_disk / "Conv_No_Bottleneck" / "checkpoints").iterdir()] == []


def test_training_into_a_read_only_directory_stops_before_the_first_epoch(
    small_data_dir, fast_config, tmp_path, make_read_only, capsys
):
    (tmp_path / "runs").mkdir()
    runs = make_read_only(tmp_path / "runs")
    assert train_main(["--model", "Conv_Maxpool", "--epochs", "1",
                       *training_args(small_data_dir, runs / "inside", fast_config)]) == 2
    line = one_error_line(capsys.readouterr().err, "autoencoder_training.py")
    assert f"cannot write to {runs / 'inside' / 'Conv_Maxpool' / 'checkpoints'} (" in line
    assert list(runs.iterdir()) == []


def test_evaluate_refuses_a_read_only_run_and_an_unknown_device(small_data_dir, tmp_path, make_read_only, capsys):
    run = untrained_run(tmp_path / "run", "Conv_Maxpool", small_data_dir)
    before = tree_bytes(run)
    assert evaluate_main([str(run), "--device", "tpu"]) == 2
    assert "device must be auto, cpu, or cuda" in one_error_line(capsys.readouterr().err, "evaluate.py")
    with pytest.raises(ConfigError, match="got 'tpu'"):
        evaluate_run(run, device="tpu")
    make_read_only(run)
    assert evaluate_main([str(run), "--device", "cpu"]) == 2
    line = one_error_line(capsys.readouterr().err, "evaluate.py")
    assert f"cannot write to {run} (" in line and "evaluate a writable copy of the run directory" in line
    with pytest.raises(StorageError):
        evaluate_run(run, device="cpu")
    assert tree_bytes(run) == before


@pytest.mark.slow
@pytest.mark.parametrize("how", [shutil.move, shutil.copytree], ids=["moved", "copied"])
def test_a_run_resumes_after_its_directory_is_moved_or_copied(how, small_data_dir, fast_config, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    common = ["--model", "Conv_Maxpool", "--skip-evaluation", "--resume"]
    assert train_main([*common, "--epochs", "1", *training_args(small_data_dir, first, fast_config)]) == 0
    how(str(first), str(second))
    assert train_main([*common, "--epochs", "2", *training_args(small_data_dir, second, fast_config)]) == 0
    state = read_state(second / "Conv_Maxpool" / "checkpoints" / "last.pt")
    assert state["state"]["epoch"] == 2 and state["recipe"]["save_dir"] == str(second)
    if how is shutil.copytree:  # the original is untouched
        assert read_state(first / "Conv_Maxpool" / "checkpoints" / "last.pt")["state"]["epoch"] == 1



# --- command lines: argument errors -----------------------------------------------------------------

@pytest.mark.parametrize("command, message", [
    (["gym_autoencoder.demo", "--seed", "-1"], "--seed must be an integer from 0 to 4294967295, got -1"),
    (["gym_autoencoder.demo", "--video", "{dir}"], "is a directory; name a file, such as"),
    (["gym_autoencoder.demo", "--steps", "x"], "argument --steps: invalid int value: 'x'"),
    (["gym_autoencoder.training.autoencoder_training", "--lr", "abc"], "invalid float value: 'abc'"),
    (["gym_autoencoder.training.evaluate", "--device"], "argument --device: expected one argument"),
    (["gym_autoencoder.training.ship_checkpoints"], "give evaluated run directories to ship, or --card-only"),
    (["gym_autoencoder.data_generation.sample_generator_heist", "--num-samples", "x"], "invalid int value"),
])
def test_argument_errors_of_every_command_line_are_one_line_and_exit_2(command, message, tmp_path):
    module, *args = command
    ran = subprocess.run([sys.executable, "-m", module, *[a.replace("{dir}", str(tmp_path)) for a in args]],
                         capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 2 and message in one_error_line(ran.stderr)
    assert list(tmp_path.iterdir()) == []


# --- the Python API: frames and devices -------------------------------------------------------------

def test_encode_takes_an_empty_batch_and_refuses_what_is_no_array(env_checkpoints):
    model = load_model(env_checkpoints["auto-maxpool-v0"])
    assert model.encode(np.zeros((0, 64, 64, 3), np.uint8)).shape == (0, 32)
    for bad in ([np.zeros((64, 64, 3), np.uint8)], None):
        with pytest.raises(FrameFormatError, match="frames must be a uint8 numpy array .* np.stack"):
            model.encode(bad)


@pytest.mark.parametrize("device", ["tpu", "meta", "cuda:x"])
def test_an_unknown_device_is_one_device_error(device, env_checkpoints):
    with pytest.raises(DeviceError, match=r"unknown device .*; pass device='auto', 'cpu' or 'cuda'"):
        load_model(env_checkpoints["auto-maxpool-v0"], device=device)
    with pytest.raises(DeviceError, match="unknown device"):
        gymnasium.make("gym_autoencoder:auto-maxpool-v0", checkpoint=env_checkpoints["auto-maxpool-v0"], device=device)
