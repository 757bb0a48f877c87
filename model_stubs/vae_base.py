"""The World-Models VAE shared by VAE_Paper and VAE_Alex: encoder, decoder, KL."""

from __future__ import annotations

import torch
from torch import nn

from gym_autoencoder.model_stubs.base import BaseAutoencoder, weighted_mean

RECON_LOSSES = ("mse", "l4")


def _down(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 4, 2, 0), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2, True)]


def _up(in_ch: int, out_ch: int, kernel: int) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(in_ch, out_ch, kernel, 2, 0),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(0.2, True),
    ]


class WorldModelsVAE(BaseAutoencoder):
    """Conv 4/2 encoder to mu and log-variance, ConvT decoder; the encoding is mu."""

    latent_dim: int

    def __init__(self, kl_weight: float, recon_loss: str, **config: object) -> None:
        if recon_loss not in RECON_LOSSES:
            raise ValueError(f"recon_loss must be one of {RECON_LOSSES}, got {recon_loss!r}")
        super().__init__(kl_weight=kl_weight, recon_loss=recon_loss, **config)
        self.kl_weight = float(kl_weight)
        self.recon_loss = recon_loss
        self.encoder = nn.Sequential(
            *_down(3, 32), *_down(32, 64), *_down(64, 128), *_down(128, 256), nn.Flatten()
        )
        self.fc_mu = nn.Linear(1024, self.latent_dim)
        self.fc_logvar = nn.Linear(1024, self.latent_dim)
        self.fc_decode = nn.Linear(self.latent_dim, 1024)
        self.decoder = nn.Sequential(
            nn.Unflatten(1, (1024, 1, 1)),
            *_up(1024, 128, 5), *_up(128, 64, 5), *_up(64, 32, 6),
            nn.ConvTranspose2d(32, 3, 6, 2, 0), nn.Sigmoid(),
        )

    def encode_distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_mu(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.fc_decode(z))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode_distribution(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu
        return {"recon": self.decode(z), "encoding": mu, "mu": mu, "logvar": logvar}

    def pixel_loss(
        self, x: torch.Tensor, recon: torch.Tensor, pixel_weight: torch.Tensor | None, reduction: str
    ) -> torch.Tensor:
        diff = recon - x
        errors = diff**2 if self.recon_loss == "mse" else diff**4
        return weighted_mean(errors, pixel_weight, reduction)

    def loss_function(
        self,
        x: torch.Tensor,
        output: dict[str, torch.Tensor],
        pixel_weight: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> dict[str, torch.Tensor]:
        """Reconstruction loss (reduced by ``reduction``) plus ``kl_weight`` times the KL divergence
        (mean per sample)."""
        mu, logvar = output["mu"], output["logvar"]
        kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)).mean()
        recon = self.pixel_loss(x, output["recon"], pixel_weight, reduction)
        return {"loss": recon + self.kl_weight * kl, "recon_loss": recon, "kl": kl}
