"""Conv_Unpool: a small SegNet whose decoder unpools with the encoder's pooling indices.

Its 32x6x6 encoding does not carry the pooling indices, so reconstructions do
not come from the encoding alone: ``decode`` therefore takes the indices too.
"""

from __future__ import annotations

import torch
from torch import nn

from gym_autoencoder.model_stubs.base import BaseAutoencoder, conv_bn_relu, register_model

DOWN_CHANNELS = ((3, 16, 16), (16, 16, 16), (16, 32, 32))
UP_CHANNELS = ((32, 32, 16), (16, 16, 16), (16, 16, 3))
OUTPUT_ACTIVATIONS = ("sigmoid", "bn_relu")


class PoolState:
    """Pooling indices and pre-pool sizes of one encoding, innermost last."""

    def __init__(self) -> None:
        self.indices: list[torch.Tensor] = []
        self.sizes: list[torch.Size] = []


@register_model
class Conv_Unpool(BaseAutoencoder):
    encoding_shape = (32, 6, 6)
    can_decode = False

    def __init__(self, output_activation: str = "sigmoid") -> None:
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}")
        super().__init__(output_activation=output_activation)
        self.down = nn.ModuleList(
            nn.Sequential(*conv_bn_relu(a, b), *conv_bn_relu(b, c)) for a, b, c in DOWN_CHANNELS
        )
        self.pool = nn.MaxPool2d(4, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(4, 2)
        up_blocks = [
            nn.Sequential(*conv_bn_relu(a, b), *conv_bn_relu(b, c)) for a, b, c in UP_CHANNELS
        ]
        if output_activation == "sigmoid":
            last = up_blocks[-1]
            up_blocks[-1] = nn.Sequential(*list(last)[:3], nn.Conv2d(16, 3, 3, 1, 1), nn.Sigmoid())
        self.up = nn.ModuleList(up_blocks)

    def encode_with_indices(self, x: torch.Tensor) -> tuple[torch.Tensor, PoolState]:
        state = PoolState()
        for block in self.down:
            x = block(x)
            state.sizes.append(x.shape)
            x, idx = self.pool(x)
            state.indices.append(idx)
        return x, state

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.down:
            x = self.pool(block(x))[0]
        return x

    def decode_with_indices(self, z: torch.Tensor, state: PoolState) -> torch.Tensor:
        for block, idx, size in zip(self.up, reversed(state.indices), reversed(state.sizes)):
            z = block(self.unpool(z, idx, output_size=size))
        return z

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z, state = self.encode_with_indices(x)
        return {"recon": self.decode_with_indices(z, state), "encoding": z}
