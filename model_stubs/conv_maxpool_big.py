"""Conv_Maxpool_Big: strided convolutions and a two-layer 6400->100->32 bottleneck."""

from __future__ import annotations

import torch
from torch import nn

from gym_autoencoder.model_stubs.base import BaseAutoencoder, register_model


@register_model
class Conv_Maxpool_Big(BaseAutoencoder):
    encoding_shape = (32,)

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 7, 1, 0), nn.ReLU(inplace=True),
            nn.Flatten(), nn.Linear(6400, 100), nn.ReLU(inplace=True),
            nn.Linear(100, 32), nn.ReLU(inplace=True),
        )
        self.decoder = nn.Sequential(
            nn.Linear(32, 100), nn.ReLU(inplace=True),
            nn.Linear(100, 6400), nn.ReLU(inplace=True), nn.Unflatten(1, (64, 10, 10)),
            nn.ConvTranspose2d(64, 32, 7, 1, 0), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(32, 16, 3, 2, 1, output_padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(16, 3, 3, 2, 1, output_padding=1), nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)
