"""The encoder benchmark's per-layer breakdown accounts for every operation of each encoder."""

from __future__ import annotations

import pytest

from benchmarks.bench_encoders import flops_per_frame, make_model, measure_layers
from gym_autoencoder.model_stubs import MODEL_NAMES
from tests.helpers import heist_frames


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_layer_breakdown_covers_the_whole_encoder(name):
    model = make_model(name)
    rows = measure_layers(name, model, heist_frames(1, seed=0), n_threads=1, rounds=1)
    assert sum(r.mflop for r in rows) == pytest.approx(flops_per_frame(model) / 1e6, rel=1e-6)
    assert all(r.us > 0 for r in rows)
    assert rows[0].input_shape == (1, 3, 64, 64)
