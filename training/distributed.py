"""Data-parallel training over the processes that ``torchrun`` starts: the process group, each
process's part of a batch, batch norms whose statistics are those of the whole batch, and the few
collectives the training loop needs.

``torchrun --nproc-per-node N training/autoencoder_training.py ...`` starts N processes (ranks)
and tells each its place through the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and
where to meet); without torchrun a run is one process and nothing here communicates. Every rank
walks the same batches of (seed, epoch) and takes its contiguous part of each; DDP averages the
gradients, so that a step is the step one process takes on the whole batch, and a run resumes
with any number of processes. Rank 0 alone writes; the others wait for it at each epoch's end.
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from typing import Any, Callable, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

from gym_autoencoder.training.config import ConfigError

# How long a collective waits for the slowest rank before the run fails, e.g. while rank 0
# evaluates a run of --all. A rank that dies ends the run at once: torchrun stops the others.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)
ENVIRONMENT = ("WORLD_SIZE", "RANK", "LOCAL_RANK")

Value = TypeVar("Value", bool, int, float)


class _SumOverRanks(torch.autograd.Function):
    """The sum of a tensor over all ranks; its gradient is the sum of the ranks' gradients.

    ``torch.distributed.nn.functional.all_reduce`` does this but is deprecated (a FutureWarning
    per process) and its successor differs between PyTorch versions."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm(_BatchNorm):
    """Batch norm whose training statistics are those of the whole batch across the ranks, on
    any device (``nn.SyncBatchNorm`` takes GPU tensors only); in eval mode plain batch norm.

    The mean and variance come from two differentiable all-reduces (the sums, then the squared
    deviations from the global mean); the running statistics follow BatchNorm's update with the
    global unbiased variance. Built by :meth:`Processes.wrap` from a BatchNorm sharing its
    parameters and buffers, so that the state dict is the BatchNorm's."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized()):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)
        totals = _SumOverRanks.apply(torch.cat([x.sum(dims), count]))
        count = totals[-1].detach()
        mean = totals[:-1] / count
        centred = x - mean.view(shape)
        var = _SumOverRanks.apply((centred * centred).sum(dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - factor).add_(mean.detach() * factor)
                self.running_var.mul_(1 - factor).add_(var.detach() * (count / (count - 1)) * factor)
        return out

    @classmethod
    def sharing(cls, norm: _BatchNorm) -> "GlobalBatchNorm":
        """A GlobalBatchNorm over ``norm``'s very parameters and buffers (updates reach both)."""
        glob = cls(norm.num_features, norm.eps, norm.momentum, norm.affine, norm.track_running_stats)
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            setattr(glob, name, getattr(norm, name))
        return glob.train(norm.training)


def _global_batch_norms(module: nn.Module) -> None:
    """Replace every batch norm inside ``module`` by a :class:`GlobalBatchNorm` sharing its tensors."""
    for name, child in module.named_children():
        if isinstance(child, _BatchNorm) and not isinstance(child, GlobalBatchNorm):
            setattr(module, name, GlobalBatchNorm.sharing(child))
        else:
            _global_batch_norms(child)


class Processes:
    """This process's place in a training run: ``world_size`` processes, this one ``rank`` (0
    writes), ``local_rank`` on its machine. One process (the default) communicates nothing."""

    def __init__(self, world_size: int = 1, rank: int = 0, local_rank: int = 0, nodes: int = 1) -> None:
        self.world_size, self.rank, self.local_rank, self.nodes = world_size, rank, local_rank, nodes
        self.devices: list[str] = []

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> "Processes":
        """The place torchrun gave this process in its environment; one process without torchrun."""
        environ = os.environ if environ is None else environ
        if "WORLD_SIZE" not in environ:
            return cls()
        try:
            world_size, rank, local_rank = (int(environ[key]) for key in ENVIRONMENT)
            nodes = int(environ.get("GROUP_WORLD_SIZE", "1"))
        except (KeyError, ValueError):
            values = ", ".join(f"{key}={environ.get(key)!r}" for key in ENVIRONMENT)
            raise ConfigError(f"the environment holds no valid torchrun launch ({values}); start the "
                              "command with torchrun, or without WORLD_SIZE set") from None
        if not 0 <= rank < world_size or not 0 <= local_rank <= rank:
            raise ConfigError(f"torchrun's RANK {rank}, LOCAL_RANK {local_rank} do not fit WORLD_SIZE "
                              f"{world_size}; start the command with torchrun")
        return cls(world_size, rank, local_rank, nodes)

    @property
    def is_main(self) -> bool:
        """Whether this process writes (checkpoints, logs, reports) and evaluates."""
        return self.rank == 0

    @property
    def label(self) -> str:
        """`` (rank R of N)`` for the messages of a run of several processes, else ``""``."""
        return f" (rank {self.rank} of {self.world_size})" if self.world_size > 1 else ""

    # -- the process group ------------------------------------------------------------------

    def __enter__(self) -> "Processes":
        """Join the other processes (gloo, with NCCL for CUDA tensors where CUDA is present) and
        silence this process's standard output unless it is rank 0."""
        self._quiet = contextlib.ExitStack()
        if self.world_size == 1:
            return self
        cuda = torch.cuda.is_available() and dist.is_nccl_available()
        if cuda and self.local_rank < torch.cuda.device_count():
            torch.cuda.set_device(self.local_rank)
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
        if not self.is_main:
            self._quiet.enter_context(contextlib.redirect_stdout(self._quiet.enter_context(open(os.devnull, "w"))))
        return self

    def __exit__(self, *exc: object) -> None:
        self._quiet.close()
        if dist.is_initialized():
            dist.destroy_process_group()

    def device(self, device: torch.device) -> torch.device:
        """This process's device for a run on ``device``: under torchrun the GPU of its local
        rank. Records the devices of all ranks for :meth:`describe`."""
        if self.world_size > 1 and device.type == "cuda":
            if device.index is not None:
                raise ConfigError(f"device {device} names one GPU, but under torchrun each process uses "
                                  "the GPU of its local rank; pass --device cuda (or auto)")
            if self.local_rank >= torch.cuda.device_count():
                raise ConfigError(f"local rank {self.local_rank} has no GPU: this machine has "
                                  f"{torch.cuda.device_count()}; start torchrun with --nproc-per-node "
                                  f"{torch.cuda.device_count()} or fewer")
            device = torch.device("cuda", self.local_rank)
        name = str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        self.devices = [name] * self.world_size
        if self.world_size > 1:
            dist.all_gather_object(self.devices, name)
        return device

    def summary(self, device: torch.device) -> str:
        """Where a run trains, for its log: the device, or the processes, machines and devices."""
        if self.world_size == 1:
            return str(device)
        machines = f" on {self.nodes} machines" if self.nodes > 1 else ""
        return f"{self.world_size} processes{machines} ({self.describe(device)['backend']}: {', '.join(self.devices)})"

    def describe(self, device: torch.device) -> dict[str, Any]:
        """How a run is trained, for its checkpoints: processes, machines, backend, devices."""
        return {"world_size": self.world_size, "nodes": self.nodes,
                "backend": None if self.world_size == 1 else "nccl" if device.type == "cuda" else "gloo",
                "devices": list(self.devices)}

    # -- the model ---------------------------------------------------------------------------

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """``module`` (on ``device``) for training: itself in one process, else in DDP, which
        averages the gradients of its parameters over the ranks, with every batch norm computing
        the statistics of the whole batch (``nn.SyncBatchNorm`` on CUDA, :class:`GlobalBatchNorm`
        elsewhere; both share the original's tensors, so state dicts are unchanged)."""
        if self.world_size == 1:
            return module
        if device.type == "cuda":
            nn.SyncBatchNorm.convert_sync_batchnorm(module)
        else:
            _global_batch_norms(module)
        return DistributedDataParallel(module)

    def seed_noise(self, seed: int, epoch: int) -> None:
        """Give this rank's sampling noise (VAEs) its own stream for the epoch; rank 0 keeps the
        one-process stream, which checkpoints save."""
        if self.rank:
            torch.manual_seed(int(np.random.SeedSequence([seed, epoch, self.rank]).generate_state(1)[0]))

    # -- batches ------------------------------------------------------------------------------

    def check_batches(self, num_frames: int, batch_size: int) -> None:
        """Every batch must give each rank a frame: refuse, clearly, a run whose smallest batch is smaller."""
        smallest = num_frames % batch_size or batch_size
        if smallest < self.world_size:
            raise ConfigError(
                f"{self.world_size} processes need at least {self.world_size} frames in every batch, but "
                f"the last batch of an epoch holds {smallest} ({num_frames} training frames in batches of "
                f"{batch_size}); start at most {smallest} process{'es' if smallest > 1 else ''}, or train with "
                "another batch_size"
            )

    def part(self, rows: np.ndarray) -> np.ndarray:
        """This rank's contiguous part of a batch's ``rows`` (``np.array_split`` into ranks)."""
        return rows if self.world_size == 1 else np.array_split(rows, self.world_size)[self.rank]

    def shard(self, count: int) -> slice:
        """This rank's contiguous part of ``count`` items, split as :meth:`part` splits."""
        size, extra = divmod(count, self.world_size)
        start = self.rank * size + min(self.rank, extra)
        return slice(start, start + size + (self.rank < extra))

    def share(self, loss: torch.Tensor, rows: int, batch: int) -> torch.Tensor:
        """``loss``, a mean over this rank's ``rows`` of a ``batch``, scaled so that DDP's average
        of the ranks' gradients is the gradient of the mean over the whole batch."""
        return loss if self.world_size == 1 else loss * (rows * self.world_size / batch)

    # -- collectives on small values (on the CPU, through gloo) -------------------------------

    def sum(self, values: list[float]) -> list[float]:
        """Each of ``values`` summed over the ranks (identical on every rank)."""
        if self.world_size == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def agree(self, value: Value) -> Value:
        """Rank 0's ``value`` (bool, int or float) on every rank: decisions that depend on what
        the processes see differently, such as elapsed time, must be taken alike."""
        if self.world_size == 1:
            return value
        tensor = torch.tensor([float(value)], dtype=torch.float64)
        dist.broadcast(tensor, src=0)
        return type(value)(tensor.item())

    def barrier(self) -> None:
        """Wait until every rank gets here (e.g. until rank 0 has saved an epoch)."""
        self.sum([0.0])

    def from_main(self, read: Callable[[], Any]) -> Any:
        """What ``read()`` returns on rank 0, on every rank: files that rank 0 wrote may be on its
        machine only."""
        if self.world_size == 1:
            return read()
        box = [read() if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
        return box[0]

    def concat(self, rows: torch.Tensor, count: int) -> torch.Tensor:
        """The ranks' ``rows`` (CPU tensors, this rank's :meth:`shard` of ``count``) concatenated in
        rank order: the rows of all ``count`` items."""
        if self.world_size == 1:
            return rows
        sizes = [len(range(count)[Processes(self.world_size, rank).shard(count)])
                 for rank in range(self.world_size)]
        padded = torch.zeros((max(sizes), *rows.shape[1:]), dtype=rows.dtype)
        padded[: len(rows)] = rows
        gathered = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(gathered, padded)
        return torch.cat([part[:size] for part, size in zip(gathered, sizes)])


ONE_PROCESS = Processes()
