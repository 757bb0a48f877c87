"""Auxiliary training objectives: the game's state read linearly from the encoding.

Reconstruction alone lets a 22- to 128-float encoding spend itself on pixels and keep what an
agent needs only in a form no linear read-out finds. A linear head trained beside the
autoencoder on labels of the frames asks the encoding to carry them the way a small policy,
and the evaluation's probes, read them:

* the visibility head (``visibility_weight``): which keys, locks and gem are in view (the
  latent probe of the evaluation scored 0.62-0.84 on encodings trained without it);
* the state head (``state_weight``): the maze and the objects around the agent, as maps of the
  9 x 9 cells centred on it (walls, and each object class's cell), and the held keys: where
  the agent can step and where its goal lies, what the policy probe asks for.

The heads are not part of the model: checkpoints hold the plain architecture, and the
evaluation's probes are fitted afresh on held-out levels.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from gym_autoencoder.data_generation.labels import OBJECT_CLASSES, WALLS_RADIUS
from gym_autoencoder.model_stubs import BaseAutoencoder
from gym_autoencoder.training.data import Split, epoch_batches, required_label
from gym_autoencoder.training.metrics import balanced_accuracy


def visibility_labels(split: Split, weight: float) -> np.ndarray:
    """The split's (N, 7) ``visible`` labels as float32, required by the objective."""
    return required_label(split, "visible", "visibility_weight", weight, 0).astype(np.float32)


def state_labels(split: Split, weight: float) -> np.ndarray:
    """The split's (N, 81 + 7 * 81 + 3) state targets as float32, required by the objective: the
    9 x 9 wall map around the agent, a 9 x 9 map per object class marking its cell, the held keys."""
    walls, held, objects, agent = (required_label(split, key, "state_weight", weight, 0)
                                   for key in ("walls", "held_keys", "object_xy", "agent_xy"))
    size = 2 * WALLS_RADIUS + 1
    offset = np.floor(objects) - np.floor(agent)[:, None, :]  # (N, 7, 2) cells east and north of the agent
    inside = (np.abs(offset) <= WALLS_RADIUS).all(-1)  # an absent object's NaN compares False
    maps = np.zeros((len(walls), len(OBJECT_CLASSES), size, size), np.float32)
    frame, kind = np.nonzero(inside)
    cells = offset[frame, kind].astype(np.int64)
    maps[frame, kind, WALLS_RADIUS - cells[:, 1], WALLS_RADIUS + cells[:, 0]] = 1.0  # north row first, as walls
    return np.concatenate([walls.reshape(len(walls), -1), maps.reshape(len(walls), -1), held], axis=1, dtype=np.float32)


class Standardise(nn.BatchNorm1d):
    """Batch norm without scale and shift whose batch of one frame, which has no batch
    statistics, is standardised by the running ones."""

    def __init__(self, size: int) -> None:
        super().__init__(size, affine=False)

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        if self.training and len(flat) == 1:
            return nn.functional.batch_norm(flat, self.running_mean, self.running_var, eps=self.eps)
        return super().forward(flat)


class LabelHead(nn.Module):
    """Standardisation (batch statistics, as the probes standardise) and one linear layer from
    the flattened encoding to a logit per label column; its loss is ``weight`` times the binary
    cross-entropy. With ``balanced`` each column's positives are weighted by its
    negatives-to-positives ratio in the training labels, so that rare classes count as the
    probe's balanced accuracy counts them."""

    def __init__(self, encoding_shape: tuple[int, ...], train_labels: np.ndarray, weight: float,
                 balanced: bool = True) -> None:
        super().__init__()
        size = math.prod(encoding_shape)
        self.norm = Standardise(size)
        self.linear = nn.Linear(size, train_labels.shape[1])
        positives = train_labels.sum(axis=0)
        ratio = (len(train_labels) - positives) / np.maximum(positives, 1.0) if balanced else np.ones_like(positives)
        self.register_buffer("pos_weight", torch.tensor(ratio, dtype=torch.float32))
        self.weight = float(weight)

    def forward(self, encoding: torch.Tensor) -> torch.Tensor:
        """Logits (N, columns)."""
        return self.linear(self.norm(encoding.flatten(1)))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``weight`` times the binary cross-entropy of ``logits`` against ``labels``."""
        return self.weight * nn.functional.binary_cross_entropy_with_logits(
            logits, labels, pos_weight=self.pos_weight
        )


def warm_start(
    head: LabelHead, model: BaseAutoencoder, split: Split, labels: np.ndarray,
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
    targets = torch.as_tensor(labels[rows], device=device)
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
