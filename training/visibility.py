"""An auxiliary training objective: object visibility read linearly from the encoding.

Reconstruction alone lets a 22- to 128-float encoding spend itself on the maze and keep which
keys, locks and gem are in view only in a form no linear read-out finds (the latent probe of
the evaluation scored 0.62-0.84 on such encodings). A linear head trained beside the
autoencoder on the frames' ``visible`` labels asks the encoding to carry them the way a small
policy, and the probe, read them. The head is not part of the model: checkpoints hold the
plain architecture, and the evaluation's probe is fitted afresh on held-out levels.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from gym_autoencoder.data_generation.labels import OBJECT_CLASSES
from gym_autoencoder.model_stubs import BaseAutoencoder
from gym_autoencoder.training.data import Split, epoch_batches, required_label
from gym_autoencoder.training.metrics import balanced_accuracy


def visibility_labels(split: Split, weight: float) -> np.ndarray:
    """The split's (N, 7) ``visible`` labels as float32, required by the objective."""
    return required_label(split, "visible", "visibility_weight", weight, 0).astype(np.float32)


class VisibilityHead(nn.Module):
    """Standardisation (batch statistics, as the probe standardises) and one linear layer from
    the flattened encoding to a logit per object class; its loss is ``weight`` times the binary
    cross-entropy with each class's positives weighted by its negatives-to-positives ratio in the
    training labels, so that rare classes count as the probe's balanced accuracy counts them."""

    def __init__(self, encoding_shape: tuple[int, ...], train_visible: np.ndarray, weight: float) -> None:
        super().__init__()
        size = math.prod(encoding_shape)
        self.norm = nn.BatchNorm1d(size, affine=False)
        self.linear = nn.Linear(size, len(OBJECT_CLASSES))
        positives = train_visible.sum(axis=0)
        ratio = (len(train_visible) - positives) / np.maximum(positives, 1.0)
        self.register_buffer("pos_weight", torch.tensor(ratio, dtype=torch.float32))
        self.weight = float(weight)

    def forward(self, encoding: torch.Tensor) -> torch.Tensor:
        """Logits (N, 7) of each class's visibility (a batch of one frame, which has no batch
        statistics, is standardised by the running ones)."""
        flat = encoding.flatten(1)
        norm = self.norm
        standardised = nn.functional.batch_norm(
            flat, norm.running_mean, norm.running_var, training=self.training and len(flat) > 1,
            momentum=norm.momentum, eps=norm.eps,
        )
        return self.linear(standardised)

    def loss(self, logits: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """``weight`` times the class-balanced binary cross-entropy of ``logits`` against ``visible``."""
        return self.weight * nn.functional.binary_cross_entropy_with_logits(
            logits, visible, pos_weight=self.pos_weight
        )


def warm_start(
    head: VisibilityHead, model: BaseAutoencoder, split: Split, visible: np.ndarray,
    device: torch.device, frames: int = 4096, epochs: int = 20, batch_size: int = 64, seed: int = 0,
) -> float:
    """Fit a new head to the frozen encodings of up to ``frames`` frames of ``split`` before a run
    from trained weights starts: a random head's gradient would otherwise pull the trained encoding
    about for its first epoch. Returns the head's loss on those frames afterwards."""
    rows = np.sort(np.random.default_rng(seed).permutation(len(split))[:frames])
    model.eval()
    with torch.no_grad():
        encodings = torch.cat([
            model.encode(split.batch(rows[start:start + 256], device)).flatten(1)
            for start in range(0, len(rows), 256)
        ])
    targets = torch.as_tensor(visible[rows], device=device)
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    head.train()
    for epoch in range(epochs):
        for batch in epoch_batches(len(rows), batch_size, seed, epoch):
            loss = head.loss(head(encodings[batch]), targets[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    head.eval()
    with torch.no_grad():
        return float(head.loss(head(encodings), targets))


def head_accuracy(logits: torch.Tensor, visible: np.ndarray) -> float:
    """Mean over classes of the balanced accuracy of the logits' signs, as the probe scores."""
    predicted = (logits > 0).numpy()
    scores = [balanced_accuracy(visible[:, k], predicted[:, k]) for k in range(visible.shape[1])]
    measured = [score for score in scores if not math.isnan(score)]
    return float(np.mean(measured)) if measured else math.nan
