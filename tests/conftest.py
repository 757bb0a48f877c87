"""Shared fixtures: real Heist frames from Procgen, made once per test session."""

from __future__ import annotations

import numpy as np
import pytest

from gym_autoencoder.procgen_import import import_procgen


def heist_frames(count: int, seed: int = 0, steps: int = 10) -> np.ndarray:
    """``count`` uint8 (64, 64, 3) Heist frames (memory mode), each after ``steps`` random actions."""
    procgen = import_procgen()
    env = procgen.ProcgenGym3Env(
        num=count, env_name="heist", distribution_mode="memory", start_level=seed,
        num_levels=0, rand_seed=seed, use_backgrounds=False,
    )
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        env.act(rng.integers(0, 15, count).astype(np.int32))
    return env.observe()[1]["rgb"].copy()


@pytest.fixture(scope="session")
def frames() -> np.ndarray:
    """32 real Heist frames."""
    return heist_frames(32)
