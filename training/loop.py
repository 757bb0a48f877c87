"""The training loop: Adam over memory-mapped mini-batches, early stopping, exact resumption.

After every epoch the full state (model, optimiser, counters, history, RNG) is written
atomically to ``checkpoints/last.pt``, and the best model so far to ``RUN.pt``; a run
killed at any moment resumes from its last completed epoch and then continues exactly
as it would have without the interruption.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from gym_autoencoder.atomic import storage_errors
from gym_autoencoder.checkpoint import save_checkpoint
from gym_autoencoder.errors import GymAutoencoderError
from gym_autoencoder.model_stubs import BaseAutoencoder
from gym_autoencoder.payload import check_weights, load_payload, save_payload
from gym_autoencoder.training.acceleration import StepSettings
from gym_autoencoder.training.config import Recipe
from gym_autoencoder.training.data import (
    Dataset, Indices, PixelWeights, Rows, Split, class_balance, epoch_batches, pixel_weights, place_rows,
)
from gym_autoencoder.training.distributed import ONE_PROCESS, Processes
from gym_autoencoder.training.heads import LabelHead, head_accuracy, state_labels, visibility_labels, warm_start

STATE_FORMAT = "gym_autoencoder.training_state"
STATE_VERSION = 1
SAVE_DIR_FIX = "choose a --save-dir with room for the run's checkpoints"
# A run keeps the best checkpoint (the weights) and the training state (the weights and Adam's two
# moments), and writes a new copy of each beside the old one: room for 8 times the weights.
WEIGHT_COPIES = 8


def checkpoint_room(modules: nn.Module) -> int:
    """Bytes a run of ``modules`` needs free in its directory to save its checkpoints."""
    return WEIGHT_COPIES * sum(value.numel() * value.element_size() for value in modules.state_dict().values())


class NonFiniteLossError(GymAutoencoderError, RuntimeError):
    """The loss became NaN or infinite; training stopped and the last good state was kept."""

    exit_status = 1  # the settings were valid; training diverged


@dataclass
class TrainingState:
    """Counters and history of a run; ``epoch`` is the number of completed epochs."""

    epoch: int = 0
    train_seconds: float = 0.0  # wall time of the completed epochs (training, test loss, saving)
    best_loss: float = math.inf
    best_epoch: int = 0
    stale_epochs: int = 0
    lr_scale: float = 1.0
    plateau_wait: int = 0
    history: dict[str, list[float]] = field(
        default_factory=lambda: {"train_loss": [], "test_loss": [], "lr": [], "seconds": []}
    )

    def stop_reason(self, recipe: Recipe) -> str | None:
        """Why training is over ("early stopping", "epochs", "time budget"), or None while it goes on.

        Under a time budget a run stops when one more epoch, as long as the last one, would
        exceed it, so it ends within one epoch's time of the budget, and never past it by more
        than an epoch's variation.
        """
        if self.stale_epochs >= recipe.early_stopping_patience:
            return "early stopping"
        if self.epoch >= recipe.epochs:
            return "epochs"
        last = self.history.get("seconds") or [0.0]
        if recipe.time_budget and self.train_seconds + last[-1] > 60.0 * recipe.time_budget:
            return "time budget"
        return None

    def progress(self, recipe: Recipe) -> float:
        """The share of the run done: of its epochs, or of its time budget if that ends it sooner."""
        done = self.epoch / recipe.epochs
        if recipe.time_budget:
            done = max(done, self.train_seconds / (60.0 * recipe.time_budget))
        return min(done, 1.0)


def say(message: str) -> None:
    """Print a line without breaking a progress bar, flushed so that logs of background runs keep up."""
    tqdm.write(message)
    sys.stdout.flush()


def learning_rate(recipe: Recipe, state: TrainingState) -> float:
    """The learning rate of the next epoch under the recipe's schedule."""
    base = recipe.learning_rate * state.lr_scale
    if recipe.lr_schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * state.progress(recipe)))
    return base


def _record_epoch(state: TrainingState, recipe: Recipe, improved: bool) -> None:
    state.epoch += 1
    state.stale_epochs = 0 if improved else state.stale_epochs + 1
    if recipe.lr_schedule == "plateau":
        state.plateau_wait = 0 if improved else state.plateau_wait + 1
        if state.plateau_wait >= recipe.lr_plateau_patience:
            state.lr_scale *= recipe.lr_plateau_factor
            state.plateau_wait = 0


# The auxiliary heads by name: the recipe setting that weighs each, its labels, whether balanced.
HEADS = {"visibility": ("visibility_weight", visibility_labels, True), "state": ("state_weight", state_labels, False)}


@dataclass
class Objective:
    """What the loss needs beside the model and the frames: per split (by name), the pixel weights,
    and the auxiliary heads whose weight is not 0, with their labels per split."""

    reduction: str
    weights: dict[str, PixelWeights | None]
    heads: dict[str, LabelHead]
    labels: dict[str, dict[str, np.ndarray]]  # head name -> split name -> (N, columns) float32
    steps: StepSettings

    def __post_init__(self) -> None:
        self.label_rows = {name: {split: Rows(array) for split, array in by_split.items()}
                           for name, by_split in self.labels.items()}

    @classmethod
    def for_recipe(cls, model: BaseAutoencoder, recipe: Recipe, dataset: Dataset, steps: StepSettings) -> "Objective":
        factor = recipe.object_pixel_weight
        scale = class_balance(dataset.train, factor) if recipe.object_class_balance else None
        splits = (dataset.train, dataset.test)
        weights = {split.name: pixel_weights(split, factor, scale) for split in splits}
        heads, labels = {}, {}
        for name, (setting, read, balanced) in HEADS.items():
            strength = getattr(recipe, setting)
            if strength:
                labels[name] = {split.name: read(split, strength) for split in splits}
                heads[name] = LabelHead(model.encoding_shape, labels[name][dataset.train.name], strength, balanced)
        return cls(recipe.loss_reduction, weights, heads, labels, steps)

    def rows(self) -> list[Rows]:
        """The per-frame arrays the loss reads beside the frames: pixel-weight masks and head labels."""
        masks = [weights.mask for weights in self.weights.values() if weights is not None]
        return masks + [rows for by_split in self.label_rows.values() for rows in by_split.values()]

    def modules(self, model: BaseAutoencoder) -> nn.ModuleList:
        """The model and the heads: what trains, switches mode and is saved together."""
        return nn.ModuleList([model, *self.heads.values()])

    def batch(self, split: Split, rows: Indices) -> torch.Tensor:
        """Frames ``rows`` of ``split``, on the device and in the layout the steps run in."""
        return split.batch(rows, self.steps.device, self.steps.layout)

    def loss(
        self, model: BaseAutoencoder, split: Split, x: torch.Tensor, rows: Indices,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The loss of the batch ``x`` (frames ``rows`` of ``split``): the model's plus the heads';
        and the visibility head's logits (None without it). Runs in the steps' precision."""
        device, weights = self.steps.device, self.weights[split.name]
        with self.steps.autocast():
            output = model(x)
            loss = model.loss_function(x, output, weights.batch(rows, device) if weights else None,
                                       self.reduction)["loss"]
            logits = {}
            for name, head in self.heads.items():
                logits[name] = head(output["encoding"])
                labels = self.label_rows[name][split.name].take(rows, device)
                loss = loss + head.loss(logits[name], labels)
        return loss.float(), logits.get("visibility")


class TrainingLoss(nn.Module):
    """The model and the heads as one module whose forward is the objective's loss: what DDP
    wraps, so that the gradients of all their parameters are averaged over the processes."""

    def __init__(self, objective: Objective, model: BaseAutoencoder) -> None:
        super().__init__()
        self.parts = objective.modules(model)
        self.objective = objective

    def forward(self, split: Split, x: torch.Tensor, rows: Indices) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.objective.loss(self.parts[0], split, x, rows)


def make_optimiser(modules: nn.Module, recipe: Recipe) -> torch.optim.Adam:
    return torch.optim.Adam(
        modules.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay
    )


def save_state(
    path: Path, model: BaseAutoencoder, optimiser: torch.optim.Optimizer,
    state: TrainingState, recipe: dict[str, Any], heads: dict[str, LabelHead] | None = None,
    distributed: dict[str, Any] | None = None,
) -> None:
    """Write everything a resumed run needs to ``path``, atomically, as plain data; the RNG
    state is this process's (rank 0's); ``distributed`` says how the run was trained."""
    heads = heads or {}
    save_payload(path, STATE_FORMAT, STATE_VERSION, {
        "architecture": type(model).__name__,
        "recipe": recipe,
        "state": asdict(state),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **{f"{name}_head": heads[name].state_dict() if name in heads else {} for name in HEADS},
        "optimiser": optimiser.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "distributed": distributed or {},
    })


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """The training state saved at ``path``, checked."""
    kind, fix = "training state", "delete the run directory's checkpoints/ folder to start over"
    payload = load_payload(
        path, STATE_FORMAT, STATE_VERSION, kind=kind, writer="gym-autoencoder-train", fix=fix,
        required=("architecture", "recipe", "state", "model"),
    )
    check_weights(payload, "model", path, kind, fix)
    return payload


def restore_state(
    payload: dict[str, Any], model: BaseAutoencoder, optimiser: torch.optim.Optimizer,
    heads: dict[str, LabelHead] | None = None,
) -> TrainingState:
    """Load the saved model, heads, optimiser and RNG into place and return the run's counters."""
    model.load_state_dict(payload["model"])
    for name, head in (heads or {}).items():
        head.load_state_dict(payload[f"{name}_head"])
    optimiser.load_state_dict(payload["optimiser"])
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    return TrainingState(**payload["state"])


def held_out_loss(
    model: BaseAutoencoder, split: Split, objective: Objective, batch_size: int, dist: Processes = ONE_PROCESS,
) -> tuple[float, float | None]:
    """The training objective on every frame of ``split``, in eval mode, and the visibility
    head's balanced accuracy there (None without a head). Each process takes its shard of the
    frames; all get the same results."""
    objective.modules(model).eval()
    shard = dist.shard(len(split))
    total, logits = torch.zeros((), device=objective.steps.device), []
    with torch.inference_mode():
        for start in range(shard.start, shard.stop, batch_size):
            rows = slice(start, min(start + batch_size, shard.stop))
            loss, batch_logits = objective.loss(model, split, objective.batch(split, rows), rows)
            total += loss * (rows.stop - rows.start)
            if batch_logits is not None:
                logits.append(batch_logits.float().cpu())
    [total] = dist.sum([total.item()])
    if "visibility" not in objective.heads:
        return total / len(split), None
    visible = objective.labels["visibility"][split.name]
    shard_logits = torch.cat(logits) if logits else torch.zeros((0, visible.shape[1]))
    return total / len(split), head_accuracy(dist.concat(shard_logits, len(split)), visible)


def _non_finite(what: str, value: float, state: TrainingState, state_path: Path) -> NonFiniteLossError:
    kept = (
        f"the last good state (epoch {state.epoch}) is kept in {state_path}"
        if state.epoch else "no epoch had completed, so nothing was saved"
    )
    return NonFiniteLossError(
        f"the {what} loss became {value} in epoch {state.epoch + 1}; training stopped and {kept}; "
        "lower the learning rate (resume with --resume --lr X)"
    )


def train_epoch(
    training_loss: nn.Module, optimiser: torch.optim.Optimizer, split: Split, objective: Objective,
    recipe: Recipe, state: TrainingState, desc: str, state_path: Path, dist: Processes = ONE_PROCESS,
) -> float:
    """One pass over the training frames in the batches of (seed, epoch), each process taking its
    part of every batch; the mean training loss. ``training_loss``: a :class:`TrainingLoss`,
    wrapped by ``dist``.

    The running loss stays on the device and is read (and checked for NaN) every
    ``log_interval`` batches, so a GPU is not made to wait for the host after each step.
    """
    batches = epoch_batches(len(split), recipe.batch_size, recipe.seed, state.epoch)
    progress = tqdm(batches, desc=desc, unit="batch", disable=None if dist.is_main else True, leave=False)
    training_loss.train()
    total, seen = torch.zeros((), device=objective.steps.device), 0
    for step, batch in enumerate(progress, start=1):
        rows = dist.part(batch)
        loss = training_loss(split, objective.batch(split, rows), rows)[0]
        optimiser.zero_grad(set_to_none=True)
        dist.share(loss, len(rows), len(batch)).backward()
        optimiser.step()
        total += loss.detach() * len(rows)
        seen += len(rows)
        if step % recipe.log_interval == 0 or step == len(batches):
            summed, count = dist.sum([total.item(), seen])  # every process checks the same figure
            running = summed / count
            if not math.isfinite(running):
                raise _non_finite("training", running, state, state_path)
            if progress.disable:
                say(f"{desc} batch {step}/{len(batches)} loss {running:.5f}")
            else:
                progress.set_postfix(loss=f"{running:.5f}")
    progress.close()
    return running


def train(
    model: BaseAutoencoder,
    recipe: Recipe,
    dataset: Dataset,
    run_dir: Path,
    metadata: dict[str, Any],
    device: torch.device,
    resume_from: dict[str, Any] | None = None,
    dist: Processes = ONE_PROCESS,
) -> TrainingState:
    """Train ``model`` on ``device`` under ``recipe`` until early stopping, the epoch limit or
    the time budget.

    ``metadata`` goes into the best checkpoint ``RUN.pt`` with the epoch, the history and how
    the steps ran (``training``: device, precision, layout, where the data was held);
    ``resume_from`` is a payload of :func:`read_state` to continue from. ``dist``: this
    process's place among the processes that train together; only rank 0 writes.
    """
    steps = StepSettings.resolve(device, recipe.precision, recipe.memory_format)
    objective = Objective.for_recipe(model, recipe, dataset, steps)
    modules = steps.prepare(objective.modules(model))
    held = [dataset.train.rows, dataset.test.rows, *objective.rows()]
    placement = place_rows(held, device, recipe.data_placement)
    metadata = {**metadata, "training": {**steps.describe(), "data": placement}}
    say(f"{run_dir.name}: steps in {steps.precision}, {steps.memory_format}; data "
        + ("held on the device" if placement == "device" else "memory-mapped"))
    optimiser = make_optimiser(modules, recipe)
    state = (
        restore_state(resume_from, model, optimiser, objective.heads) if resume_from else TrainingState()
    )
    state_path = run_dir / "checkpoints" / "last.pt"
    best_path = run_dir / f"{run_dir.name}.pt"
    if recipe.init_from and not resume_from:
        for name, head in objective.heads.items():
            head_loss = warm_start(head, model, dataset.train, objective.labels[name][dataset.train.name],
                                   device, seed=recipe.seed)
            say(f"{run_dir.name}: {name} head fitted to the initial encoding (loss {head_loss:.4f})")
        initial = held_out_loss(model, dataset.test, objective, recipe.eval_batch_size, dist)[0]
        say(f"{run_dir.name}: test loss of the initial weights {initial:.5f}")
    dist.check_batches(len(dataset.train), recipe.batch_size)
    training_loss = dist.wrap(TrainingLoss(objective, model), device)

    while state.stop_reason(recipe) is None:
        started = time.monotonic()
        lr = learning_rate(recipe, state)
        for group in optimiser.param_groups:
            group["lr"] = lr
        desc = f"{run_dir.name} epoch {state.epoch + 1}/{recipe.epochs}"
        dist.seed_noise(recipe.seed, state.epoch)
        train_loss = train_epoch(
            training_loss, optimiser, dataset.train, objective, recipe, state, desc, state_path, dist
        )
        loss_on_test, visibility = held_out_loss(model, dataset.test, objective, recipe.eval_batch_size, dist)
        if not math.isfinite(loss_on_test):
            raise _non_finite("test", loss_on_test, state, state_path)
        seconds = dist.agree(time.monotonic() - started)  # rank 0's clock decides for all
        for key, value in (("train_loss", train_loss), ("test_loss", loss_on_test), ("lr", lr), ("seconds", seconds)):
            state.history.setdefault(key, []).append(value)
        if visibility is not None:
            state.history.setdefault("test_visibility_accuracy", []).append(visibility)
        state.train_seconds += seconds
        improved = loss_on_test < state.best_loss
        _record_epoch(state, recipe, improved)
        if improved:
            state.best_loss, state.best_epoch = loss_on_test, state.epoch
        if dist.is_main:
            with storage_errors(run_dir, SAVE_DIR_FIX):
                if improved:
                    save_checkpoint(best_path, model, {
                        **metadata, "epoch": state.epoch, "test_loss": loss_on_test, "history": state.history,
                    })
                save_state(state_path, model, optimiser, state, recipe.to_dict(), objective.heads,
                           metadata.get("distributed"))
        dist.barrier()  # no process goes on (or ends) before the epoch is saved
        say(
            f"{desc}: train {train_loss:.5f}  test {loss_on_test:.5f}  lr {lr:.3g}  {seconds:.1f} s"
            + ("" if visibility is None else f"  visibility head {visibility:.3f}")
            + ("  (best, saved)" if improved else f"  ({state.stale_epochs} without improvement)")
        )
    return state
