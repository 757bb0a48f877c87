"""Conv_No_Bottleneck: a fully convolutional autoencoder with a 128x1x1 encoding."""

from __future__ import annotations

import torch
from torch import nn

from gym_autoencoder.model_stubs.base import BaseAutoencoder, register_model


@register_model
class Conv_No_Bottleneck(BaseAutoencoder):
    encoding_shape = (128, 1, 1)

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 16, 3, 1, 0), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, 1, 0), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 7, 2, 0), nn.ReLU(inplace=True),
            nn.Conv2d(64, 128, 3, 2, 0),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 3, 2, 0), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(64, 32, 7, 3, 1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(32, 16, 3, 3, 1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(16, 3, 3, 2, 0, output_padding=1), nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)
