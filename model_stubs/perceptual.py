"""Perceptual features for VAE_Alex: the first layers of ImageNet AlexNet, or a fixed random stand-in.

The ImageNet source reads torchvision's own AlexNet weight file (only its two
first convolutions are used, so torchvision itself is not needed). Machines
without that file and without internet choose ``"random"`` explicitly: the same
layers with fixed, seeded random weights, a known if weaker perceptual baseline.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from gym_autoencoder.errors import GymAutoencoderError

ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
WEIGHTS_ENV_VAR = "GYM_AUTOENCODER_ALEXNET_WEIGHTS"
FEATURE_SOURCES = ("imagenet", "random")
RANDOM_FEATURES_SEED = 0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PerceptualFeaturesError(GymAutoencoderError, RuntimeError):
    """The configured perceptual feature source cannot be had on this machine."""


class PerceptualFeatures(nn.Module):
    """AlexNet ``features[:5]`` then a Sigmoid, on ImageNet-normalised [0, 1] images; frozen."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 11, 4, 2)
        self.conv2 = nn.Conv2d(64, 192, 5, 1, 2)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 3, 2)
        return torch.sigmoid(torch.relu(self.conv2(x)))


def alexnet_weights_path(weights_path: str | os.PathLike | None = None) -> Path:
    """Where the ImageNet AlexNet file is looked for: the argument, the env var, torch's hub cache."""
    if weights_path is not None:
        return Path(weights_path)
    if os.environ.get(WEIGHTS_ENV_VAR):
        return Path(os.environ[WEIGHTS_ENV_VAR])
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def _download(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(ALEXNET_URL, str(path), progress=False)
    except Exception as err:  # any network failure means the same thing to the user
        raise PerceptualFeaturesError(
            f"ImageNet AlexNet weights are not at {path} and could not be downloaded ({err}); "
            f"place {ALEXNET_FILE} there or set {WEIGHTS_ENV_VAR}, "
            "or choose perceptual_features: random"
        ) from None


def load_perceptual_features(
    source: str, weights_path: str | os.PathLike | None = None, download: bool = True
) -> PerceptualFeatures:
    """Frozen perceptual features from ``source`` ("imagenet" or "random")."""
    if source not in FEATURE_SOURCES:
        raise PerceptualFeaturesError(
            f"unknown perceptual feature source {source!r}; choose one of {FEATURE_SOURCES}"
        )
    features = PerceptualFeatures()
    if source == "random":
        generator = torch.Generator().manual_seed(RANDOM_FEATURES_SEED)
        for conv in (features.conv1, features.conv2):
            fan_in = conv.weight[0].numel()
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) / fan_in**0.5)
            conv.bias.zero_()
        return features.eval()
    path = alexnet_weights_path(weights_path)
    if not path.is_file():
        if not download:
            raise PerceptualFeaturesError(
                f"ImageNet AlexNet weights not found at {path}; place {ALEXNET_FILE} there, "
                f"set {WEIGHTS_ENV_VAR}, or choose perceptual_features: random"
            )
        _download(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        features.conv1.weight.copy_(state["features.0.weight"])
        features.conv1.bias.copy_(state["features.0.bias"])
        features.conv2.weight.copy_(state["features.3.weight"])
        features.conv2.bias.copy_(state["features.3.bias"])
    except Exception as err:
        raise PerceptualFeaturesError(
            f"{path} is not a readable torchvision AlexNet weight file ({err}); "
            f"replace it with {ALEXNET_FILE} or choose perceptual_features: random"
        ) from None
    return features.eval()
