"""training/evaluate.py: standalone evaluation, label-based metrics, VAE and Conv_Unpool extras."""

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from gym_autoencoder import load_checkpoint
from gym_autoencoder.training.autoencoder_training import main as train_main
from gym_autoencoder.training.evaluate import compute_evaluation, evaluate_run, main, write_evaluation
from gym_autoencoder.training.report import loss_scale, plot_loss_curve
from tests.helpers import FAST_EVALUATION, copy_frames, untrained_run, write_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Real frames with their emulator labels."""
    return write_dataset(tmp_path_factory.mktemp("data"), 24, 48)


@pytest.fixture(scope="module")
def unlabelled_dir(data_dir, tmp_path_factory) -> Path:
    return copy_frames(data_dir, tmp_path_factory.mktemp("unlabelled"))


@pytest.mark.slow
def test_standalone_evaluation_of_a_trained_run(data_dir, tmp_path, capsys):
    assert train_main(["--model", "VAE_Paper", "--epochs", "1", "--batch-size", "8", "--skip-evaluation",
                       "--data-dir", str(data_dir), "--save-dir", str(tmp_path)]) == 0
    run = tmp_path / "VAE_Paper"
    assert not (run / "metrics.json").exists()
    assert main([str(run), "--timing-repeats", "2", "--video-frames", "5"]) == 0
    assert "VAE_Paper: test MSE" in capsys.readouterr().out
    values = json.loads((run / "metrics.json").read_text())
    assert values["training"]["epochs_trained"] == 1 and values["training"]["stop_reason"] == "epochs"
    assert int(cv2.VideoCapture(str(run / "reconstruction.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    samples = cv2.imread(str(run / "vae_samples.png"))
    walk = cv2.imread(str(run / "latent_walk.png"))
    assert samples.shape == (8 * 128, 8 * 128, 3)  # the recipe's 64 samples, 8 a row, shown 2x
    assert walk.shape == (128, 12 * 128, 3)  # input, 10 decoded steps, input
    _, metadata = load_checkpoint(run / "VAE_Paper.pt")
    assert metadata["metrics"]["test"] == values["test"]


@pytest.mark.slow
def test_label_based_metrics_when_the_test_set_has_labels(data_dir, tmp_path):
    run = untrained_run(tmp_path / "probe", "Conv_Maxpool", data_dir)
    values = evaluate_run(run, evaluation=FAST_EVALUATION)
    fidelity = values["object_fidelity"]
    assert set(fidelity["per_class"]) == {"blue_key", "green_key", "red_key", "blue_lock", "green_lock",
                                          "red_lock", "gem"}
    assert sum(entry["objects"] for entry in fidelity["per_class"].values()) > 0
    assert 0 <= fidelity["mean"] <= 1 and fidelity["threshold"] == 0.15
    for probe in ("latent_probe", "pixel_probe"):
        accuracies = [a for a in values[probe]["balanced_accuracy"].values() if a is not None]
        assert accuracies and all(0 <= a <= 1 for a in accuracies)
        assert values[probe]["mean"] == pytest.approx(np.mean(accuracies))
    policy = values["policy_probe"]
    assert 0 < policy["frames"] <= 48 and policy["chance"] == 0.25
    assert 0 <= policy["latent"] <= 1 and 0 <= policy["pixels"] <= 1
    with np.load(run / "metrics.npz") as arrays:
        assert arrays["object_errors"].shape == (48, 7)
        assert arrays["latent_probe"].shape == (7,)
    assert values["training"]["history"] is None and not (run / "loss_curve.png").exists()


def test_conv_unpool_without_labels_reports_psnr_with_the_latent_zeroed(unlabelled_dir, tmp_path):
    run = untrained_run(tmp_path / "unpool", "Conv_Unpool", unlabelled_dir)
    values = evaluate_run(run, evaluation=FAST_EVALUATION)
    assert math.isfinite(values["test"]["psnr_zeroed_latent_db"])
    for key in ("object_fidelity", "latent_probe", "pixel_probe", "policy_probe"):
        assert values[key] == {"absent": "no test_labels.npz next to the test frames (test split)"}
    assert json.loads((run / "metrics.json").read_text())["object_fidelity"] == values["object_fidelity"]


@pytest.mark.slow
def test_computing_an_evaluation_writes_nothing_and_writing_it_stores_the_same_metrics(data_dir, tmp_path):
    run = untrained_run(tmp_path / "split", "VAE_Paper", data_dir)
    checkpoint = run / "split.pt"
    before = checkpoint.read_bytes()
    computed = compute_evaluation(run, checkpoint, evaluation=FAST_EVALUATION)
    assert [p.name for p in run.iterdir()] == ["split.pt"] and checkpoint.read_bytes() == before
    assert set(computed.images) == {"vae_samples.png", "latent_walk.png"} and len(computed.inputs) == 6
    values = write_evaluation(run, computed, checkpoint)
    assert values == {**computed.values, "files": sorted(p.name for p in run.iterdir() if p != checkpoint)}
    assert load_checkpoint(checkpoint)[1]["metrics"] == values


@pytest.mark.slow
def test_evaluating_another_checkpoint_leaves_it_unchanged(data_dir, tmp_path):
    source = untrained_run(tmp_path / "source", "Conv_Maxpool", data_dir) / "source.pt"
    before = source.read_bytes()
    assert main([str(tmp_path / "report"), "--checkpoint", str(source), "--video-frames", "3",
                 "--timing-repeats", "1"]) == 0
    assert (tmp_path / "report" / "metrics.json").is_file()
    assert source.read_bytes() == before


def test_a_directory_without_a_run_gives_one_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "nothing")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "holds no run: nothing.pt is missing" in error


def test_loss_curves_of_a_log_objective_are_drawn_on_a_linear_scale(tmp_path):
    assert loss_scale({"train_loss": [0.02, 0.01], "test_loss": [0.03, 0.02]}) == "log"
    frame_log = {"train_loss": [-6.9, -7.0], "test_loss": [-6.8, -7.1]}
    assert loss_scale(frame_log) == "linear"
    plot_loss_curve(tmp_path / "curve.png", frame_log, 2)
    image = cv2.imread(str(tmp_path / "curve.png"))
    # both curves are drawn across the plot, not only in the legend (about 70 pixels of each colour
    # with a log scale, where matplotlib drops every negative value; over 800 here)
    blue, orange = np.array([180, 119, 31]), np.array([14, 127, 255])  # matplotlib's first two, BGR
    for colour in (blue, orange):
        assert (np.abs(image.astype(int) - colour).sum(axis=2) < 40).sum() > 300


def test_a_data_set_made_before_the_oracle_labels_marks_the_policy_probe_absent(data_dir, tmp_path):
    older = copy_frames(data_dir, tmp_path / "older")
    for split in ("training", "test"):
        with np.load(data_dir / f"{split}_labels.npz") as labels:
            np.savez(older / f"{split}_labels.npz", **{k: labels[k] for k in labels.files if k != "oracle_direction"})
    values = evaluate_run(untrained_run(tmp_path / "old", "Conv_Maxpool", older), evaluation=FAST_EVALUATION)
    assert values["policy_probe"] == {
        "absent": "the test labels hold no oracle_direction (made before it); regenerate the data"}
    assert values["latent_probe"]["mean"] is not None
