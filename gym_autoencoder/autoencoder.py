"""``load_model``: a trained autoencoder that takes and returns frames as Procgen emits them."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from gym_autoencoder.checkpoint import load_checkpoint, resolve_checkpoint
from gym_autoencoder.errors import DeviceError
from gym_autoencoder.inference import build_frame_encoder
from gym_autoencoder.preprocessing import frames_to_tensor, tensor_to_frames
from gym_autoencoder.model_stubs import BaseAutoencoder

def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` means CUDA when present, else CPU; a CUDA device that is absent is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise DeviceError(f"unknown device {str(device)!r}; pass device='auto', 'cpu' or 'cuda'")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device={str(device)!r} but CUDA is not available here; pass device='auto' or 'cpu'")
    return resolved


class FrameAutoencoder(nn.Module):
    """A trained model in eval mode, with numpy helpers over uint8 (N, 64, 64, 3) RGB frames.

    ``model`` is the plain architecture module; ``encode`` runs ``frame_encoder``, the fast
    inference path built from it (``frame_encoder.path`` names which one). ``checkpoint``, the
    file the model was loaded from, keys the cache of its exported graph; ``threads`` fixes the
    CPU encoder's thread count (None: ``torch.get_num_threads()`` at each call).
    """

    def __init__(
        self,
        model: BaseAutoencoder,
        metadata: dict[str, Any],
        device: str | torch.device = "cpu",
        checkpoint: str | os.PathLike | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.metadata = metadata
        self.architecture = type(model).__name__
        self.encoding_shape: tuple[int, ...] = tuple(model.encoding_shape)
        self.frame_encoder = build_frame_encoder(self.model, self.device, checkpoint, threads)
        self.eval()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(x)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """float32 (N, *encoding_shape) encodings of uint8 RGB frames."""
        return self.frame_encoder(frames)

    def reconstruct(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB reconstructions of uint8 RGB frames."""
        with torch.inference_mode():
            return tensor_to_frames(self.model.reconstruct(frames_to_tensor(frames, self.device)))


def load_model(
    name_or_path: str | os.PathLike, device: str | torch.device = "cpu", threads: int | None = None
) -> FrameAutoencoder:
    """A shipped model by architecture name (``"Conv_Unpool"``, ...) or a checkpoint path.

    ``threads``: the CPU encoder's thread count (default: follow ``torch.get_num_threads()``).

    >>> model = load_model("Conv_Unpool")  # doctest: +SKIP
    >>> model.encode(frames).shape  # doctest: +SKIP
    (N, 32, 6, 6)
    """
    path = resolve_checkpoint(name_or_path)
    model, metadata = load_checkpoint(path)
    return FrameAutoencoder(model, metadata, device, path, threads)
