"""gym-autoencoder: Procgen environments whose observations are learned autoencoder encodings.

Importing the package registers the Gymnasium ids and nothing heavier: torch,
the models and Procgen load on first use of the names below.
"""

from __future__ import annotations

import importlib
from typing import Any

from gym_autoencoder._version import __version__
from gym_autoencoder.errors import CheckpointError, FrameFormatError, GymAutoencoderError
from gym_autoencoder.registration import register_envs

_LAZY = {
    "FrameAutoencoder": "gym_autoencoder.autoencoder",
    "load_model": "gym_autoencoder.autoencoder",
    "load_checkpoint": "gym_autoencoder.checkpoint",
    "save_checkpoint": "gym_autoencoder.checkpoint",
    "frames_to_tensor": "gym_autoencoder.preprocessing",
    "tensor_to_frames": "gym_autoencoder.preprocessing",
}

__all__ = ["__version__", "CheckpointError", "FrameFormatError", "GymAutoencoderError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gym_autoencoder' has no attribute {name!r}")


register_envs()
