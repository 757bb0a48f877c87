"""VAE_Paper: the World Models VAE (arXiv 1803.10122) with a 22-float mean encoding."""

from __future__ import annotations

from gym_autoencoder.model_stubs.base import register_model
from gym_autoencoder.model_stubs.vae_base import WorldModelsVAE


@register_model
class VAE_Paper(WorldModelsVAE):
    latent_dim = 22
    encoding_shape = (22,)

    def __init__(self, kl_weight: float = 1e-4, recon_loss: str = "l4") -> None:
        super().__init__(kl_weight=kl_weight, recon_loss=recon_loss)
