"""Conv_Maxpool: two conv/pool stages and a 32-float linear bottleneck."""

from __future__ import annotations

import torch
from torch import nn

from gym_autoencoder.model_stubs.base import BaseAutoencoder, register_model


@register_model
class Conv_Maxpool(BaseAutoencoder):
    encoding_shape = (32,)

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 16, 3, 1, 1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 4, 3, 1, 1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(4 * 16 * 16, 32), nn.ReLU(inplace=True),
        )
        self.decoder = nn.Sequential(
            nn.Linear(32, 4 * 16 * 16), nn.ReLU(inplace=True), nn.Unflatten(1, (4, 16, 16)),
            nn.ConvTranspose2d(4, 16, 2, 2), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(16, 3, 2, 2), nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)
