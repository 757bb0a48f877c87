"""The encoder benchmark runs every variant, checks each against the plain module and counts every operation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from gym_autoencoder.inference import ONNX_PATH, TOLERANCE
from gym_autoencoder.model_stubs import MODEL_NAMES
from tests.helpers import fresh_model

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_encoders.py"


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("bench") / "rows.json"
    ran = subprocess.run([sys.executable, str(SCRIPT), "--batches", "1", "--threads", "1", "--rounds", "1",
                          "--no-cuda", "--json", str(out)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert "enc/best" in ran.stdout
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_benchmark_times_every_path_and_counts_every_operation(name, rows):
    (row,) = [r for r in rows if r["model"] == name]
    assert row["path"] == ONNX_PATH
    assert set(row["ms"]) == {"eager", "ort", "encode"} and all(ms > 0 for ms in row["ms"].values())
    assert max(row["max_rel_diff"].values()) <= TOLERANCE
    with FlopCounterMode(display=False) as counter, torch.no_grad():  # PyTorch's own count, 2 per multiply-add
        fresh_model(name).eval().encode(torch.rand(1, 3, 64, 64))
    assert row["gflop_per_frame"] * 1e9 == pytest.approx(counter.get_total_flops(), rel=1e-6)
