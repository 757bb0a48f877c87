"""The six autoencoder architectures (docs/architectures.md), by name."""

from gym_autoencoder.model_stubs.base import MODEL_REGISTRY, BaseAutoencoder, build_model, model_class
from gym_autoencoder.model_stubs.conv_maxpool import Conv_Maxpool
from gym_autoencoder.model_stubs.conv_maxpool_big import Conv_Maxpool_Big
from gym_autoencoder.model_stubs.conv_no_bottleneck import Conv_No_Bottleneck
from gym_autoencoder.model_stubs.conv_unpool import Conv_Unpool
from gym_autoencoder.model_stubs.vae_alex import VAE_Alex
from gym_autoencoder.model_stubs.vae_paper import VAE_Paper

MODEL_NAMES = (
    "Conv_Unpool",
    "Conv_Maxpool",
    "Conv_Maxpool_Big",
    "Conv_No_Bottleneck",
    "VAE_Paper",
    "VAE_Alex",
)

__all__ = [
    "MODEL_REGISTRY",
    "MODEL_NAMES",
    "BaseAutoencoder",
    "build_model",
    "model_class",
    "Conv_Unpool",
    "Conv_Maxpool",
    "Conv_Maxpool_Big",
    "Conv_No_Bottleneck",
    "VAE_Paper",
    "VAE_Alex",
]
