"""Gymnasium environments over Procgen whose observations are autoencoder encodings."""

from gym_autoencoder.envs.encoded_env import EncodedProcgenEnv
from gym_autoencoder.envs.errors import EnvOptionError, EnvUsageError, HeadlessRenderWarning, InvalidActionError
from gym_autoencoder.registration import ENV_ARCHITECTURES, GENERIC_ENV_ID, register_envs
from gym_autoencoder.envs.vector_env import EncodedProcgenVectorEnv

__all__ = [
    "ENV_ARCHITECTURES",
    "GENERIC_ENV_ID",
    "EncodedProcgenEnv",
    "EncodedProcgenVectorEnv",
    "EnvOptionError",
    "EnvUsageError",
    "HeadlessRenderWarning",
    "InvalidActionError",
    "register_envs",
]
