"""The capacity references (the encoder's view, the linear (PCA) baseline, the memorisation fit, the
train/test gap) and the benchmark script that prints them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gym_autoencoder.training.capacity import (
    fidelity_ceiling,
    linear_reconstruction,
    memorise,
    pixels_seen,
    score,
    starting_model,
)
from gym_autoencoder.training.data import open_dataset
from tests.helpers import write_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_capacity.py"


def main(args: list[str]) -> subprocess.CompletedProcess:
    """The benchmark script run with ``args`` on one thread."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"), 24, 8)


def test_the_linear_baseline_is_exact_with_every_component_and_worse_with_fewer(data_dir):
    train = open_dataset(data_dir).train
    rows = np.arange(len(train))
    full, _ = score(linear_reconstruction(train, rows, len(rows)), train, rows)
    two, _ = score(linear_reconstruction(train, rows, 2), train, rows)
    assert full > 45.0
    assert two < full - 10.0


@pytest.mark.slow
def test_memorising_a_few_frames_draws_them_better(data_dir):
    train = open_dataset(data_dir).train
    rows = np.arange(8)
    model = starting_model("Conv_Unpool", fresh=True)
    before, _ = score(model.eval().reconstruct, train, rows)
    memorise(model, train, rows, steps=40, lr=3e-3, object_weight=20.0, batch=8, progress=False)
    after, fidelity = score(model.reconstruct, train, rows)
    assert after > before + 1.0
    assert 0.0 <= fidelity <= 1.0 or np.isnan(fidelity)


@pytest.mark.slow
def test_a_run_reports_every_reference_per_model(data_dir, tmp_path):
    out = tmp_path / "capacity.json"
    ran = main(["--data-dir", str(data_dir), "--models", "Conv_Maxpool", "--frames", "4", "--steps", "2",
                "--linear-frames", "16", "--test-frames", "6", "--json", str(out)])
    assert ran.returncode == 0, ran.stderr
    rows = json.loads(out.read_text())
    assert [(r["reference"], r["model"], r["floats"]) for r in rows] == [
        ("view", "Conv_Maxpool", 32), ("linear", "Conv_Maxpool", 32), ("train", "Conv_Maxpool", 32),
        ("test", "Conv_Maxpool", 32), ("memorise", "Conv_Maxpool", 32)]
    assert rows[0]["psnr_db"] is None and rows[0]["fidelity"] == 1.0
    assert [r["frames"] for r in rows[1:]] == [6, 6, 6, 4]
    assert "memorise  Conv_Maxpool" in ran.stdout


@pytest.mark.slow
def test_the_gap_scores_the_shipped_model_on_training_and_test_frames(data_dir, tmp_path):
    out = tmp_path / "capacity.json"
    assert main(["--data-dir", str(data_dir), "--models", "Conv_Maxpool", "--test-frames", "6",
                 "--skip-view", "--skip-linear", "--skip-memorise", "--json", str(out)]).returncode == 0
    train, test = json.loads(out.read_text())
    data, shipped = open_dataset(data_dir), starting_model("Conv_Maxpool", fresh=False)
    rows = np.arange(6)
    assert (train["psnr_db"], test["psnr_db"]) == pytest.approx(
        (score(shipped.reconstruct, data.train, rows)[0], score(shipped.reconstruct, data.test, rows)[0]))
    assert train["psnr_db"] != test["psnr_db"]
    assert main(["--data-dir", str(data_dir), "--models", "Conv_Maxpool", "--fresh", "--skip-view",
                 "--skip-linear", "--skip-memorise", "--json", str(out)]).returncode == 0
    assert json.loads(out.read_text()) == []


def test_the_view_is_the_pixels_the_encoding_depends_on():
    # Conv_No_Bottleneck's last convolution (3x3, stride 2) reads 3 of its 4x4 input's rows and columns
    square = np.zeros((64, 64), bool)
    square[:50, :50] = True
    assert np.array_equal(pixels_seen(starting_model("Conv_No_Bottleneck", fresh=True)), square)
    assert pixels_seen(starting_model("Conv_Maxpool_Big", fresh=True)).all()


def test_objects_outside_the_view_lower_the_fidelity_ceiling(data_dir):
    test = open_dataset(data_dir).test
    everywhere = np.ones((64, 64), bool)
    assert fidelity_ceiling(everywhere, test) == 1.0
    assert fidelity_ceiling(~everywhere, test) == 0.0
    mask = test.label("object_mask")
    left = np.zeros((64, 64), bool)
    left[:, :32] = True
    counted = test.label("pixel_counts") >= 8
    per_class = [((mask[counted[:, k]] == k + 1) & left).any((1, 2)).mean()
                 for k in range(7) if counted[:, k].any()]
    assert fidelity_ceiling(left, test) == np.mean(per_class)
