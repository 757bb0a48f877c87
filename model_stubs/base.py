"""The common base class of the six autoencoders and the registry that names them."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from gym_autoencoder.errors import UnknownModelError

MODEL_REGISTRY: dict[str, type["BaseAutoencoder"]] = {}
# How per-pixel errors become a loss: their (weighted) mean over the batch, or the mean over
# frames of the log of each frame's weighted mean, which is the negative mean PSNR up to a
# constant factor: it counts every frame's relative error alike, where the plain mean is led by
# the frames with the largest errors.
LOSS_REDUCTIONS = ("mean", "frame_log")
# The smallest per-frame error taken, by frame_log and by the PSNR of gym_autoencoder.training.metrics alike.
ERROR_FLOOR = 1e-10


def register_model(cls: type["BaseAutoencoder"]) -> type["BaseAutoencoder"]:
    """Class decorator: make ``cls`` constructible by its class name."""
    MODEL_REGISTRY[cls.__name__] = cls
    return cls


def model_class(name: str) -> type["BaseAutoencoder"]:
    """The registered class called ``name``, or a clear error listing the known names."""
    try:
        return MODEL_REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(MODEL_REGISTRY))
        raise UnknownModelError(f"unknown model {name!r}; choose one of: {known}") from None


def build_model(name: str, **kwargs: Any) -> "BaseAutoencoder":
    """Construct the registered model ``name`` with constructor arguments ``kwargs``."""
    cls = model_class(name)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise UnknownModelError(f"bad arguments for {name}: {err}") from None


def weighted_mean(
    errors: torch.Tensor, pixel_weight: torch.Tensor | None, reduction: str = "mean"
) -> torch.Tensor:
    """Per-element ``errors`` (N, C, H, W), optionally weighted per pixel (N, 1, H, W), reduced
    to one number as ``reduction`` (one of LOSS_REDUCTIONS) says."""
    if reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"reduction must be one of {LOSS_REDUCTIONS}, got {reduction!r}")
    dims = tuple(range(1, errors.dim())) if reduction == "frame_log" else None
    if pixel_weight is None:
        means = errors.mean(dims)
    else:
        weight = pixel_weight.expand_as(errors)
        means = (errors * weight).sum(dims) / weight.sum(dims)
    return means.clamp_min(ERROR_FLOOR).log().mean() if reduction == "frame_log" else means


class BaseAutoencoder(nn.Module):
    """An autoencoder of 64x64 RGB frames in [0, 1].

    ``encode`` returns the encoding the environments hand to agents, of shape
    ``(N, *encoding_shape)``; ``forward`` returns a dict with at least ``"recon"`` and
    ``"encoding"`` (what ``encode`` returns, so that training can read it without a second pass);
    ``loss_function`` turns a batch and that dict into a dict with ``"loss"``.
    """

    encoding_shape: ClassVar[tuple[int, ...]]
    can_decode: ClassVar[bool] = True

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self.config = dict(config)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} cannot decode from its encoding alone")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encode(x)
        return {"recon": self.decode(z), "encoding": z}

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic reconstruction of ``x`` (VAEs decode their mean)."""
        return self.forward(x)["recon"]

    def loss_function(
        self,
        x: torch.Tensor,
        output: dict[str, torch.Tensor],
        pixel_weight: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> dict[str, torch.Tensor]:
        """Pixel MSE, optionally weighted per pixel (object pixels weighted up), reduced by ``reduction``."""
        mse = weighted_mean((output["recon"] - x) ** 2, pixel_weight, reduction)
        return {"loss": mse, "recon_loss": mse}


def conv_bn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    """Conv 3/1/1 + BatchNorm + ReLU, the unit of Conv_Unpool's blocks."""
    return [nn.Conv2d(in_ch, out_ch, 3, 1, 1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
