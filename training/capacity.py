"""Capacity references: how far an architecture can go at its fixed encoding size.

The encoder's view (the input pixels its encoding depends on), a linear (PCA) baseline with as
many floats as the encoding, a model memorising a few training frames, and scores of any
reconstruction on chosen frames. ``benchmarks/bench_capacity.py`` prints them for the shipped models.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from gym_autoencoder.checkpoint import load_checkpoint, shipped_checkpoint_path
from gym_autoencoder.data_generation.labels import OBJECT_CLASSES
from gym_autoencoder.model_stubs import BaseAutoencoder, build_model
from gym_autoencoder.training.data import Split, class_balance, pixel_weights
from gym_autoencoder.training.metrics import FIDELITY_MIN_PIXELS, fidelity_summary, object_errors, psnr


Reconstruct = Callable[[torch.Tensor], torch.Tensor]
CPU = torch.device("cpu")


@dataclass
class Score:
    """One reference's figures for one model."""

    reference: str
    model: str
    floats: int
    frames: int
    psnr_db: float | None
    fidelity: float


def score(reconstruct: Reconstruct, split: Split, rows: np.ndarray, batch: int = 250) -> tuple[float, float]:
    """Mean PSNR and object fidelity mean of ``reconstruct`` on the frames ``rows`` of ``split``."""
    mask, counts = split.label("object_mask"), split.label("pixel_counts")
    values, errors = [], []
    with torch.inference_mode():
        for start in range(0, len(rows), batch):
            part = rows[start:start + batch]
            x = split.batch(part, CPU)
            recon = reconstruct(x)
            values.append(psnr(x, recon))
            errors.append(object_errors(x, recon, mask[part], counts[part]))
    fidelity = fidelity_summary(np.concatenate(errors), tuple(OBJECT_CLASSES))["mean"]
    return float(torch.cat(values).mean()), float(fidelity) if fidelity is not None else math.nan


def pixels_seen(model: BaseAutoencoder, frames: int = 16, seed: int = 0) -> np.ndarray:
    """(64, 64) bool: the input pixels the encoding depends on, i.e. those where the gradient of
    the summed encoding is non-zero for some of ``frames`` random inputs (several inputs, so that
    no pixel is missed for an inactive ReLU or an unselected max-pool position)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(frames, 3, 64, 64, generator=generator, requires_grad=True)
    model.eval().encode(x).sum().backward()
    return (x.grad.abs().sum((0, 1)) > 0).numpy()


def fidelity_ceiling(seen: np.ndarray, split: Split) -> float:
    """Mean over classes of the share of counted objects (FIDELITY_MIN_PIXELS visible pixels) with
    at least one sprite pixel in ``seen``: an upper bound on the object fidelity mean."""
    mask, counts = split.label("object_mask"), split.label("pixel_counts")
    shares = []
    for k in range(len(OBJECT_CLASSES)):
        counted = counts[:, k] >= FIDELITY_MIN_PIXELS
        if counted.any():
            inside = ((mask[counted] == k + 1) & seen).any((1, 2))
            shares.append(inside.mean())
    return float(np.mean(shares)) if shares else math.nan


def linear_reconstruction(split: Split, rows: np.ndarray, components: int) -> Reconstruct:
    """Projection onto the first ``components`` principal components of the frames ``rows``."""
    flat = split.batch(rows, CPU).reshape(len(rows), -1)
    mean = flat.mean(0)
    rank = min(components, len(rows) - 1)
    _, _, basis = torch.svd_lowrank(flat - mean, q=min(rank + 10, len(rows)), niter=3)
    basis = basis[:, :rank]

    def reconstruct(x: torch.Tensor) -> torch.Tensor:
        centred = x.reshape(len(x), -1) - mean
        return ((centred @ basis) @ basis.T + mean).clamp(0, 1).reshape(x.shape)

    return reconstruct


def memorise(
    model: BaseAutoencoder, split: Split, rows: np.ndarray, steps: int, lr: float,
    object_weight: float, batch: int = 64, seed: int = 0, progress: bool = True,
) -> BaseAutoencoder:
    """Fit ``model`` to the frames ``rows`` of ``split`` by Adam (cosine schedule) with the class-balanced object weight."""
    weights = pixel_weights(split, object_weight, class_balance(split, object_weight))
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in tqdm(range(steps), desc=f"memorise {type(model).__name__}", disable=not progress, leave=False):
        part = np.sort(rng.choice(rows, min(batch, len(rows)), replace=False))
        x = split.batch(part, CPU)
        pixel_weight = weights.batch(part, CPU) if weights else None
        loss = model.loss_function(x, model(x), pixel_weight)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    return model.eval()


def starting_model(name: str, fresh: bool, seed: int = 0) -> BaseAutoencoder:
    """The shipped model, or a seeded fresh one with the shipped architecture arguments."""
    shipped, _ = load_checkpoint(shipped_checkpoint_path(name))
    if not fresh:
        return shipped
    torch.manual_seed(seed)
    return build_model(name, **shipped.config)
