"""How a training step runs on its device: numeric precision, memory layout, where data is held.

The recipe's ``precision`` and ``memory_format`` settings say ``auto`` by default, which this
module turns into what is fastest on the device: channels-last everywhere, bfloat16 autocast on
CUDA and float32 on CPU, where bfloat16 speeds some models and slows others and is slow on CPUs
without bfloat16 instructions (``benchmarks/bench_training.py``; docs/training.md gives the
figures). Weights, optimiser state and the loss stay float32 either way; autocast only runs the
convolutions in bfloat16.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

PRECISIONS = ("auto", "float32", "bfloat16")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
# Where the frames are read from: held on the training device ("auto": when they fit) or memory-mapped.
PLACEMENTS = ("auto", "device", "memory_map")


@dataclass(frozen=True)
class StepSettings:
    """The resolved precision and layout of a run's training steps on ``device``."""

    device: torch.device
    precision: str  # float32 or bfloat16
    memory_format: str  # channels_last or contiguous

    @classmethod
    def resolve(cls, device: torch.device, precision: str = "auto", memory_format: str = "auto") -> "StepSettings":
        """``auto`` settings made concrete for ``device``: channels-last; bfloat16 on CUDA where supported."""
        if precision == "auto":
            precision = "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
        if memory_format == "auto":
            memory_format = "channels_last"
        return cls(device, precision, memory_format)

    @property
    def layout(self) -> torch.memory_format:
        return torch.channels_last if self.memory_format == "channels_last" else torch.contiguous_format

    def prepare(self, modules: nn.Module) -> nn.Module:
        """``modules`` on the device in the run's layout (parameters stay float32)."""
        return modules.to(self.device, memory_format=self.layout)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context a forward pass and its loss run in."""
        if self.precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def describe(self) -> dict[str, str]:
        """What a checkpoint records about how its steps ran."""
        return {"device": str(self.device), "precision": self.precision, "memory_format": self.memory_format}
