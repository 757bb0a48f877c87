"""The autoencoder an environment encodes with: a shipped model or a checkpoint, checked."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from gymnasium import spaces

from gym_autoencoder.autoencoder import FrameAutoencoder, resolve_device
from gym_autoencoder.checkpoint import load_checkpoint, resolve_checkpoint, shipped_checkpoint_path
from gym_autoencoder.envs.errors import EnvOptionError
from gym_autoencoder.model_stubs import MODEL_NAMES


def checkpoint_path(architecture: str | None, checkpoint: str | os.PathLike | None) -> Path:
    """The file to load: ``checkpoint`` (a path or a shipped model's name), else ``architecture``'s shipped one."""
    if checkpoint is not None:
        return resolve_checkpoint(checkpoint)
    if architecture is None:
        raise EnvOptionError(
            "this environment needs checkpoint=PATH (a .pt file from save_checkpoint) "
            f"or the name of a shipped model ({', '.join(MODEL_NAMES)})"
        )
    return shipped_checkpoint_path(architecture)


def load_env_autoencoder(
    architecture: str | None, checkpoint: str | os.PathLike | None, device: str
) -> FrameAutoencoder:
    """The autoencoder, in eval mode on ``device``; a checkpoint of another architecture is refused."""
    resolved = resolve_device(device)
    path = checkpoint_path(architecture, checkpoint)
    model, metadata = load_checkpoint(path, architecture)
    return FrameAutoencoder(model, metadata, resolved, path)  # the path keys the cache of its exported graph


def encoding_space(autoencoder: FrameAutoencoder) -> spaces.Box:
    """The observation space of one environment: float32 encodings of the model's shape."""
    return spaces.Box(-np.inf, np.inf, shape=autoencoder.encoding_shape, dtype=np.float32)
