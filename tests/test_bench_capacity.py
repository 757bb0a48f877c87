"""The capacity benchmark's two references: the linear (PCA) baseline and the memorisation fit."""

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.bench_capacity import linear_reconstruction, main, memorise, score, starting_model
from training.data import open_dataset
from tests.test_training_data import write_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


def test_memorising_a_few_frames_draws_them_better(data_dir):
    train = open_dataset(data_dir).train
    rows = np.arange(8)
    model = starting_model("Conv_Unpool", fresh=True)
    before, _ = score(model.eval().reconstruct, train, rows)
    memorise(model, train, rows, steps=40, lr=3e-3, object_weight=20.0, batch=8, progress=False)
    after, fidelity = score(model.reconstruct, train, rows)
    assert after > before + 1.0
    assert 0.0 <= fidelity <= 1.0 or np.isnan(fidelity)


def test_a_run_reports_both_references_per_model(data_dir, tmp_path, capsys):
    out = tmp_path / "capacity.json"
    assert main(["--data-dir", str(data_dir), "--models", "Conv_Maxpool", "--frames", "4", "--steps", "2",
                 "--linear-frames", "16", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["reference"], r["model"], r["floats"]) for r in rows] == [
        ("linear", "Conv_Maxpool", 32), ("memorise", "Conv_Maxpool", 32)]
    assert rows[1]["frames"] == 4
    assert "memorise  Conv_Maxpool" in capsys.readouterr().out
