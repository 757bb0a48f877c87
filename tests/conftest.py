"""Shared fixtures: real Heist frames and checkpoints of fresh models, made once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gym_autoencoder import save_checkpoint
from gym_autoencoder.inference import torch_threads
from gym_autoencoder.registration import ENV_ARCHITECTURES
from tests.helpers import fresh_model, heist_frames


@pytest.fixture(scope="session")
def frames() -> np.ndarray:
    """32 real Heist frames."""
    return heist_frames(32)


@pytest.fixture(scope="session")
def env_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A checkpoint of a freshly initialised model for each env id (independent of the shipped ones)."""
    directory = tmp_path_factory.mktemp("env_checkpoints")
    paths = {}
    for env_id, architecture in ENV_ARCHITECTURES.items():
        paths[env_id] = directory / f"{architecture.lower()}.pt"
        save_checkpoint(paths[env_id], fresh_model(architecture))
    return paths


@pytest.fixture(scope="module")
def one_torch_thread():
    """Batch-1 inference on a shared 2-core machine is fastest (by far, under load) on one thread."""
    with torch_threads(1):
        yield
