"""Helpers the tests share: real Heist frames, small data sets, freshly initialised models and runs."""

from __future__ import annotations

from pathlib import Path

import gymnasium
import numpy as np
import torch

from gym_autoencoder import frames_to_tensor, load_checkpoint, save_checkpoint
from gym_autoencoder.data_generation.sample_generator_heist_basic import generate_basic_dataset
from gym_autoencoder.model_stubs import BaseAutoencoder, build_model
from gym_autoencoder.procgen_batch import ProcgenBatch
from gym_autoencoder.procgen_games import NUM_ACTIONS, ProcgenOptions


def heist_frames(count: int, seed: int = 0, steps: int = 10) -> np.ndarray:
    """``count`` uint8 (64, 64, 3) Heist frames (memory mode), each after ``steps`` random actions."""
    games = ProcgenBatch(ProcgenOptions("heist", "memory", start_level=seed), count, rand_seed=seed)
    rng = np.random.default_rng(seed)
    try:
        for _ in range(steps):
            games.act(rng.integers(0, NUM_ACTIONS, count))
        return games.observe().frames.copy()
    finally:
        # Closed here, not by the garbage collector: gym3's __del__ can run inside cffi's lock
        # while another Procgen instance is being made, and deadlock there.
        games.close()


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


# Evaluation settings small enough for tests: a few video frames, samples and timing repeats;
# FAST_EVALUATION for evaluate_run, RUN_EVALUATION for the training runs of the fast_config fixture.
FAST_EVALUATION = {"video_frames": 6, "timing_repeats": 2, "timing_warmup": 0, "vae_samples": 6,
                   "latent_walk_steps": 4}
RUN_EVALUATION = {"video_frames": 12, "timing_repeats": 3, "timing_warmup": 1, "vae_samples": 4,
                  "latent_walk_steps": 3}
FRAME_FILES = ("training_samples.npy", "test_samples.npy")


def write_dataset(directory: Path, train: int, test: int) -> Path:
    """A labelled data set of real Heist frames from the basic generator: ``train`` + ``test`` frames."""
    fraction = test / (train + test)
    generate_basic_dataset(directory, train + test, seed=0, test_fraction=fraction, progress=False)
    return directory


def copy_frames(source: Path, directory: Path) -> Path:
    """The frames of ``source`` without its labels."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in FRAME_FILES:
        (directory / name).write_bytes((source / name).read_bytes())
    return directory


def untrained_run(run_dir: Path, name: str, data_dir: Path, **arch) -> Path:
    """A run directory holding only an untrained checkpoint that names its data."""
    torch.manual_seed(0)
    model = build_model(name, **arch)
    save_checkpoint(run_dir / f"{run_dir.name}.pt", model, {"data": {"dir": str(data_dir)}})
    return run_dir


def training_args(data_dir: Path, save_dir: Path, config: Path, *extra: str) -> list[str]:
    """Command-line arguments of a small, fast training run."""
    return ["--data-dir", str(data_dir), "--save-dir", str(save_dir), "--config", str(config),
            "--batch-size", "16", *extra]


def make_env(env_id: str, checkpoints: dict[str, Path], **kwargs) -> gymnasium.Env:
    """The environment ``env_id`` on CPU with the checkpoint ``checkpoints[env_id]``."""
    return gymnasium.make(f"gym_autoencoder:{env_id}", checkpoint=checkpoints[env_id], device="cpu", **kwargs)


def tree_bytes(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (hidden ones included) by relative path, with its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def one_error_line(err: str, prefix: str = "") -> str:
    """The single line of ``err``, checked to be one line starting with ``PREFIX: error: ``."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prefix + ': ' if prefix else ''}error: "), err
    return lines[0]
