"""The encoder benchmark's per-layer breakdown accounts for every operation of each encoder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from gym_autoencoder.model_stubs import MODEL_NAMES
from tests.helpers import fresh_model

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_encoders.py"


@pytest.fixture(scope="module")
def layer_rows(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("bench") / "layers.json"
    ran = subprocess.run([sys.executable, str(SCRIPT), "--layers", "--rounds", "1", "--threads", "1",
                          "--json", str(out)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_layer_breakdown_covers_the_whole_encoder(name, layer_rows):
    rows = [row for row in layer_rows if row["model"] == name]
    with FlopCounterMode(display=False) as counter, torch.no_grad():  # PyTorch's own count, 2 per multiply-add
        fresh_model(name).eval().encode(torch.rand(1, 3, 64, 64))
    assert sum(r["mflop"] for r in rows) == pytest.approx(counter.get_total_flops() / 1e6, rel=1e-6)
    assert all(r["us"] > 0 for r in rows)
    assert rows[0]["input_shape"] == [1, 3, 64, 64]
