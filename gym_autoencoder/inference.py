"""The inference path that turns uint8 frames into encodings for the environments."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from gym_autoencoder.preprocessing import frames_to_tensor
from model_stubs import BaseAutoencoder

FrameEncoder = Callable[[np.ndarray], np.ndarray]


def build_frame_encoder(model: BaseAutoencoder, device: torch.device) -> FrameEncoder:
    """A function from uint8 (N, 64, 64, 3) frames to float32 (N, *encoding_shape) encodings."""
    model = model.eval()

    def encode(frames: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model.encode(frames_to_tensor(frames, device)).float().cpu().numpy()

    return encode
