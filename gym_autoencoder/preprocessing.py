"""The one data path: uint8 RGB frames as Procgen emits them <-> model tensors.

Training, evaluation and the environments all call these two functions, so an
encoder always sees frames laid out exactly as it was trained on them.

>>> import numpy as np
>>> frames = np.zeros((2, 64, 64, 3), dtype=np.uint8)
>>> frames_to_tensor(frames).shape
torch.Size([2, 3, 64, 64])
>>> tensor_to_frames(frames_to_tensor(frames)).shape
(2, 64, 64, 3)
"""

from __future__ import annotations

import numpy as np
import torch

from gym_autoencoder.errors import FrameFormatError

FRAME_SHAPE = (64, 64, 3)


def check_frames(frames: np.ndarray | torch.Tensor) -> None:
    """Raise FrameFormatError unless ``frames`` is uint8 of shape (N, 64, 64, 3)."""
    if not isinstance(frames, (np.ndarray, torch.Tensor)):
        raise FrameFormatError(
            f"frames must be a uint8 numpy array of shape (N, 64, 64, 3), got {type(frames).__name__}; "
            "stack a list of frames with np.stack(frames)"
        )
    shape = tuple(frames.shape)
    if frames.dtype not in (np.uint8, torch.uint8):
        raise FrameFormatError(
            f"frames must be uint8 RGB (as Procgen emits them), got dtype {frames.dtype}; "
            "convert with frames.astype(np.uint8) if they hold 0..255 values"
        )
    if len(shape) != 4 or shape[1:] != FRAME_SHAPE:
        raise FrameFormatError(
            f"frames must have shape (N, 64, 64, 3), got {shape}; "
            "add a batch axis with frames[None] for a single frame"
        )


def frames_to_tensor(
    frames: np.ndarray | torch.Tensor, device: torch.device | str | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """uint8 (N, 64, 64, 3) RGB frames -> float32 (N, 3, 64, 64) in [0, 1] on ``device``, laid out
    in ``memory_format`` (channels-last is the frames' own layout: no reordering copy)."""
    check_frames(frames)
    tensor = torch.as_tensor(frames, device=device)
    return tensor.permute(0, 3, 1, 2).float().div_(255.0).contiguous(memory_format=memory_format)


def tensor_to_frames(images: torch.Tensor) -> np.ndarray:
    """float (N, 3, 64, 64) images in [0, 1] -> uint8 (N, 64, 64, 3) RGB frames, for display."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise FrameFormatError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
    scaled = images.detach().clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()
