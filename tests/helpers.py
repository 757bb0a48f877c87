"""Helpers the tests share: real Heist frames and small, freshly initialised models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gym_autoencoder import frames_to_tensor, load_checkpoint
from gym_autoencoder.model_stubs import BaseAutoencoder, build_model
from gym_autoencoder.procgen_batch import ProcgenBatch
from gym_autoencoder.procgen_games import NUM_ACTIONS, ProcgenOptions


def heist_frames(count: int, seed: int = 0, steps: int = 10) -> np.ndarray:
    """``count`` uint8 (64, 64, 3) Heist frames (memory mode), each after ``steps`` random actions."""
    games = ProcgenBatch(ProcgenOptions("heist", "memory", start_level=seed), count, rand_seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        games.act(rng.integers(0, NUM_ACTIONS, count))
    return games.observe().frames.copy()


def fresh_model(name: str, seed: int = 0) -> BaseAutoencoder:
    """A seeded, untrained ``name`` model; VAE_Alex uses the random features (no ImageNet file here)."""
    torch.manual_seed(seed)
    kwargs = {"perceptual_features": "random"} if name == "VAE_Alex" else {}
    return build_model(name, **kwargs)


def training_encoding(checkpoint: Path, frames: np.ndarray) -> np.ndarray:
    """The encoding the training pipeline computes: the checkpoint's model on ``frames_to_tensor``."""
    model, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        return model.encode(frames_to_tensor(frames)).numpy()
