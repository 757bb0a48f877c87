"""The Gymnasium ids of the environments, registered when ``gym_autoencoder`` is imported.

``gymnasium.make("gym_autoencoder:auto-unpool-v0")`` imports this package and finds the id;
``gymnasium.make_vec(..., num_envs=64)`` builds the batched environment through the vector
entry point.
"""

from __future__ import annotations

import gymnasium

SCALAR_ENTRY_POINT = "gym_autoencoder.envs.encoded_env:EncodedProcgenEnv"
VECTOR_ENTRY_POINT = "gym_autoencoder.envs.vector_env:EncodedProcgenVectorEnv"
ENV_ARCHITECTURES = {
    "auto-unpool-v0": "Conv_Unpool",
    "auto-maxpool-v0": "Conv_Maxpool",
    "auto-maxpool-big-v0": "Conv_Maxpool_Big",
    "auto-no-bottleneck-v0": "Conv_No_Bottleneck",
    "vae-alex-v0": "VAE_Alex",
    "vae-paper-v0": "VAE_Paper",
}
GENERIC_ENV_ID = "encoded-procgen-v0"  # any checkpoint=..., any Procgen options


def register_envs() -> None:
    """Register the six model ids and the generic one (once per process)."""
    specs = {env_id: {"architecture": arch} for env_id, arch in ENV_ARCHITECTURES.items()}
    specs[GENERIC_ENV_ID] = {}
    for env_id, kwargs in specs.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(
                id=env_id, entry_point=SCALAR_ENTRY_POINT, vector_entry_point=VECTOR_ENTRY_POINT,
                kwargs=kwargs,
            )
