"""The artefacts of an evaluation that people look at: images, video, loss curve, summary.txt.

Every file is written atomically; plots use matplotlib's Agg canvas directly, so importing
this module never changes a user's matplotlib backend.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torchinfo import summary

from gym_autoencoder.atomic import atomic_path
from gym_autoencoder.preprocessing import tensor_to_frames
from gym_autoencoder.model_stubs import BaseAutoencoder

GRID_COLUMNS = 8
GRID_SCALE = 2
TIMING_BATCHES = (1, 64)
CAPTION_HEIGHT = 28
VIDEO_FORMATS = ((".mp4", "mp4v"), (".avi", "MJPG"))


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write a uint8 RGB image as PNG, atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")


def tile(frames: np.ndarray, columns: int, scale: int = GRID_SCALE) -> np.ndarray:
    """uint8 (N, H, W, 3) frames laid out row by row, ``columns`` a row, each enlarged ``scale`` times."""
    rows = -(-len(frames) // columns)
    padded = np.zeros((rows * columns, *frames.shape[1:]), dtype=np.uint8)
    padded[: len(frames)] = frames
    height, width = frames.shape[1:3]
    grid = padded.reshape(rows, columns, height, width, 3).transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(rows * height, columns * width, 3)
    return np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)


def write_recon_grid(path: Path, inputs: np.ndarray, recons: np.ndarray) -> None:
    """Eight inputs above their reconstructions."""
    count = min(GRID_COLUMNS, len(inputs))
    save_png(path, tile(np.concatenate([inputs[:count], recons[:count]]), count))


def _video_frame(original: np.ndarray, recon: np.ndarray, caption: str, scale: int) -> np.ndarray:
    pair = tile(np.stack([original, recon]), 2, scale)
    canvas = np.zeros((pair.shape[0] + CAPTION_HEIGHT, pair.shape[1], 3), dtype=np.uint8)
    canvas[:-CAPTION_HEIGHT] = pair
    bgr = cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)
    cv2.putText(bgr, caption, (6, canvas.shape[0] - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (255, 255, 255), 1, cv2.LINE_AA)
    return bgr


class _NoVideoEncoder(Exception):
    """OpenCV cannot open a writer for this container and codec."""


def write_video(
    run_dir: Path, inputs: np.ndarray, recons: np.ndarray, losses: np.ndarray, fps: int, scale: int
) -> Path:
    """``reconstruction.mp4`` (or ``.avi`` where no MP4 encoder exists): input left,
    reconstruction right, each frame's MSE written below. Returns the path written."""
    height, width = 64 * scale + CAPTION_HEIGHT, 2 * 64 * scale
    for suffix, codec in VIDEO_FORMATS:
        path = run_dir / f"reconstruction{suffix}"
        try:
            with atomic_path(path, suffix=suffix) as tmp:
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
                if not writer.isOpened():
                    raise _NoVideoEncoder
                for index, (original, recon, loss) in enumerate(zip(inputs, recons, losses)):
                    caption = f"test frame {index}   input | reconstruction   MSE {loss:.5f}"
                    writer.write(_video_frame(original, recon, caption, scale))
                writer.release()
        except _NoVideoEncoder:
            continue
        return path
    raise OSError("OpenCV can write neither MP4 (mp4v) nor AVI (MJPG) video on this machine")


def loss_scale(history: dict[str, list[float]]) -> str:
    """"log" for positive losses; "linear" for a frame_log objective, whose losses are already logs."""
    positive = all(value > 0 for key in ("train_loss", "test_loss") for value in history[key])
    return "log" if positive else "linear"


def plot_loss_curve(path: Path, history: dict[str, list[float]], best_epoch: int | None) -> None:
    """Train and test loss per epoch (on a log scale when positive), the best epoch marked."""
    figure = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    axes.plot(epochs, history["train_loss"], marker="o", markersize=3, label="train (train mode)")
    axes.plot(epochs, history["test_loss"], marker="o", markersize=3, label="test (eval mode)")
    if best_epoch:
        axes.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch {best_epoch}")
    axes.set(xlabel="epoch", ylabel="loss (training objective)", yscale=loss_scale(history),
             title="Loss per epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms_per_frame(
    call: Callable[[torch.Tensor], Any], x: torch.Tensor, repeats: int, warmup: int
) -> float:
    """Median wall time of ``call(x)`` over ``repeats`` runs after ``warmup`` runs, per frame, in ms."""
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            call(x)
        _synchronise(x.device)
        for _ in range(repeats):
            start = time.perf_counter()
            call(x)
            _synchronise(x.device)
            times.append(time.perf_counter() - start)
    return statistics.median(times) / len(x) * 1000.0


def timing(model: BaseAutoencoder, frames: torch.Tensor, repeats: int, warmup: int) -> dict[str, Any]:
    """ms per frame of the encoder and the full model at batch 1 and 64, on CPU and CUDA if present.

    ``frames`` are real test frames, repeated when there are fewer than 64."""
    frames = frames.repeat(-(-max(TIMING_BATCHES) // len(frames)), 1, 1, 1)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results: dict[str, Any] = {}
    for device in devices:
        timed = copy.deepcopy(model).to(device).eval()
        parts = {"encoder": timed.encode, "full": timed}
        results[device.type] = {
            part: {
                str(batch): median_ms_per_frame(call, frames[:batch].to(device), repeats, warmup)
                for batch in TIMING_BATCHES
            }
            for part, call in parts.items()
        }
    return results


def summary_text(
    model: BaseAutoencoder, header: list[str], times: dict[str, Any], repeats: int, warmup: int
) -> str:
    """summary.txt: a header, the torchinfo summary and the timing lines."""
    info = summary(copy.deepcopy(model).eval(), input_size=(1, 3, 64, 64), device="cpu", verbose=0)
    lines = [*header, "", str(info), "", (
        f"Time per frame in ms: median of {repeats} timed repetitions after {warmup} untimed "
        "warm-up runs, each call timed with time.perf_counter under torch.inference_mode, model in "
        f"eval mode, input: real test frames as float tensors already on the device; CPU with "
        f"{torch.get_num_threads()} torch threads; CUDA calls followed by torch.cuda.synchronize. "
        "encoder = model.encode, full = model forward (encode and decode)."
    )]
    for device in ("cpu", "cuda"):
        if device not in times:
            lines.append(f"{device}: not available on this machine")
            continue
        for part, batches in times[device].items():
            for batch, ms in batches.items():
                lines.append(f"{device:<4} {part:<7} batch {batch:>2}: {ms:10.4f} ms/frame")
    return "\n".join(lines) + "\n"


def decode_frames(model: BaseAutoencoder, latents: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return tensor_to_frames(model.decode(latents))


def vae_samples(model: BaseAutoencoder, mu: torch.Tensor, count: int, seed: int) -> np.ndarray:
    """Frames decoded from random latents: the first half from the prior N(0, I), the second
    from a diagonal Gaussian fitted to the test set's means (closer to what the decoder saw)."""
    generator = torch.Generator().manual_seed(seed)
    half = count // 2
    prior = torch.randn(half, mu.shape[1], generator=generator)
    fitted = mu.mean(0) + mu.std(0) * torch.randn(count - half, mu.shape[1], generator=generator)
    return decode_frames(model, torch.cat([prior, fitted]).to(mu.device))


def latent_walk(model: BaseAutoencoder, mu_a: torch.Tensor, mu_b: torch.Tensor, steps: int) -> np.ndarray:
    """Frames decoded along the straight line from latent ``mu_a`` to ``mu_b``."""
    weights = torch.linspace(0.0, 1.0, steps, device=mu_a.device).unsqueeze(1)
    return decode_frames(model, (1 - weights) * mu_a + weights * mu_b)
