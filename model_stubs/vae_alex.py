"""VAE_Alex: the World Models VAE with 64 latents and a perceptual loss (arXiv 2001.03444).

The perceptual features are only needed by ``loss_function``; they are loaded
on its first call, so encoding and decoding a trained checkpoint never needs them.
"""

from __future__ import annotations

import torch

from gym_autoencoder.model_stubs.base import register_model, weighted_mean
from gym_autoencoder.model_stubs.perceptual import FEATURE_SOURCES, PerceptualFeatures, load_perceptual_features
from gym_autoencoder.model_stubs.vae_base import WorldModelsVAE


@register_model
class VAE_Alex(WorldModelsVAE):
    latent_dim = 64
    encoding_shape = (64,)

    def __init__(
        self,
        perceptual_features: str = "imagenet",
        perceptual_weight: float = 1.0,
        kl_weight: float = 0.0,
        recon_loss: str = "mse",
    ) -> None:
        if perceptual_features not in FEATURE_SOURCES:
            raise ValueError(f"perceptual_features must be one of {FEATURE_SOURCES}")
        super().__init__(
            kl_weight=kl_weight,
            recon_loss=recon_loss,
            perceptual_features=perceptual_features,
            perceptual_weight=perceptual_weight,
        )
        self.perceptual_source = perceptual_features
        self.perceptual_weight = float(perceptual_weight)
        self._features: list[PerceptualFeatures] = []  # a list keeps it out of the state dict

    def features(self, device: torch.device) -> PerceptualFeatures:
        """The frozen perceptual features on ``device``, loaded on first use. They are made outside
        inference mode even when first needed inside it (an evaluation's loss), so that training
        can differentiate through them afterwards."""
        with torch.inference_mode(False):
            if not self._features:
                self._features.append(load_perceptual_features(self.perceptual_source))
            if self._features[0].mean.device != device:
                self._features[0] = self._features[0].to(device)
        return self._features[0]

    def loss_function(
        self,
        x: torch.Tensor,
        output: dict[str, torch.Tensor],
        pixel_weight: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> dict[str, torch.Tensor]:
        """Pixel loss + perceptual_weight * feature MSE (+ kl_weight * KL), both reduced by ``reduction``."""
        losses = super().loss_function(x, output, pixel_weight, reduction)
        features = self.features(x.device)
        perceptual = weighted_mean((features(output["recon"]) - features(x)) ** 2, None, reduction)
        losses["perceptual"] = perceptual
        losses["loss"] = losses["loss"] + self.perceptual_weight * perceptual
        return losses
