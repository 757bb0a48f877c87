"""What the environments show: each frame beside its reconstruction, in a window or a video."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator

import cv2
import numpy as np

from gym_autoencoder.atomic import atomic_path
from gym_autoencoder.autoencoder import FrameAutoencoder
from gym_autoencoder.envs.errors import EnvOptionError, HeadlessRenderWarning

RENDER_FPS = 15
RENDER_SCALE = 4  # 64 x 128 side-by-side pair -> 256 x 512
NON_INTERACTIVE_BACKENDS = ("agg", "cairo", "pdf", "pgf", "ps", "svg", "template")


def side_by_side(autoencoder: FrameAutoencoder, frames: np.ndarray, scale: int = RENDER_SCALE) -> np.ndarray:
    """uint8 (N, 64 * scale, 128 * scale, 3): each frame left, its reconstruction right, nearest-upscaled."""
    pairs = np.concatenate([frames, autoencoder.reconstruct(frames)], axis=2)
    return pairs.repeat(scale, axis=1).repeat(scale, axis=2)


def check_render_mode(render_mode: str | None, modes: list[str]) -> None:
    """Refuse a render mode the environment does not declare."""
    if render_mode is not None and render_mode not in modes:
        raise EnvOptionError(f"render_mode={render_mode!r} is not supported; choose one of {modes} or None")


def open_human_window(title: str) -> HumanWindow | None:
    """A window for ``render_mode="human"``; None, with one warning, where there is no display.

    Without a display matplotlib falls back to a non-interactive backend; the environment then
    keeps running and shows nothing (as Gymnasium's ``check_env`` and headless CI need), and the
    warning names ``rgb_array`` and how to get a window.
    """
    import matplotlib.pyplot as plt

    backend = plt.get_backend().lower()
    if backend in NON_INTERACTIVE_BACKENDS:
        warnings.warn(
            f"render_mode='human' shows nothing here: matplotlib has no display and runs the "
            f"non-interactive backend {backend!r}; use render_mode='rgb_array' to get the images, "
            "or for a window run on a desktop with MPLBACKEND set to an interactive backend such as TkAgg",
            HeadlessRenderWarning,
            stacklevel=2,
        )
        return None
    return HumanWindow(title)


class HumanWindow:
    """A matplotlib window that shows rendered images at the environment's frame rate.

    matplotlib is the GUI that every desktop install has (opencv-python-headless has none).
    """

    def __init__(self, title: str, fps: int = RENDER_FPS) -> None:
        import matplotlib.pyplot as plt

        self._plt = plt
        self._title = title
        self._pause = 1.0 / fps
        self._image = None

    def show(self, image: np.ndarray) -> None:
        if self._image is None or not self._plt.fignum_exists(self._image.figure.number):
            figure = self._plt.figure(self._title, figsize=(image.shape[1] / 100, image.shape[0] / 100))
            axes = figure.add_axes((0, 0, 1, 1))
            axes.set_axis_off()
            self._image = axes.imshow(image)
        else:
            self._image.set_data(image)
        self._plt.pause(self._pause)

    def close(self) -> None:
        if self._image is not None:
            self._plt.close(self._image.figure)
            self._image = None


@contextlib.contextmanager
def video_writer(path: str | os.PathLike, fps: int = RENDER_FPS) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield ``write(image_rgb_uint8)``; the .mp4 (codec mp4v) appears at ``path`` only when complete."""
    with atomic_path(path, suffix=".mp4") as tmp:
        writer: cv2.VideoWriter | None = None

        def write(image: np.ndarray) -> None:
            nonlocal writer
            if writer is None:
                height, width = image.shape[:2]
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                if not writer.isOpened():
                    raise EnvOptionError(f"OpenCV cannot write an mp4v video to {path}; check the folder")
            writer.write(np.ascontiguousarray(image[..., ::-1]))  # OpenCV wants BGR

        try:
            yield write
        finally:
            if writer is not None:
                writer.release()
