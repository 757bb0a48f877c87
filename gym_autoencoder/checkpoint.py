"""The checkpoint format: weights plus the metadata needed to rebuild and judge a model.

A checkpoint is a versioned payload (``gym_autoencoder.payload``) of tensors, strings and
numbers, so it loads with ``torch.load(weights_only=True)`` and no pickled code ever runs.
``resolve_checkpoint`` is the one place that turns "a shipped model's name or a path" into a file.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from gym_autoencoder._version import __version__
from gym_autoencoder.errors import CheckpointError, UnknownModelError
from gym_autoencoder.model_stubs import MODEL_NAMES, BaseAutoencoder, build_model
from gym_autoencoder.payload import check_weights, load_payload, save_payload

FORMAT_NAME = "gym_autoencoder.checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("architecture", "arch_kwargs", "encoding_shape", "state_dict", "metadata")
SHIPPED_PACKAGE = "gym_autoencoder.checkpoints"


class UnknownCheckpointError(CheckpointError, UnknownModelError):
    """A bare name that is neither a shipped model nor a checkpoint file."""


def shipped_checkpoint_path(architecture: str) -> Path:
    """The path of the checkpoint shipped for ``architecture`` inside the installed package."""
    if architecture not in MODEL_NAMES:
        raise CheckpointError(
            f"no shipped model called {architecture!r}; choose one of {', '.join(MODEL_NAMES)} "
            "or pass a checkpoint path"
        )
    path = Path(str(resources.files(SHIPPED_PACKAGE) / f"{architecture.lower()}.pt"))
    if not path.is_file():
        raise CheckpointError(
            f"the shipped {architecture} checkpoint is missing from {path.parent}; "
            "reinstall gym_autoencoder or pass a checkpoint path"
        )
    return path


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """The file behind a shipped model's name (``"Conv_Unpool"``) or a checkpoint path.

    A bare word that is neither is refused here, naming the shipped models; a path that does
    not exist is left for the loader to report.
    """
    name = str(name_or_path)
    if name in MODEL_NAMES:
        return shipped_checkpoint_path(name)
    path = Path(name_or_path)
    if not path.exists() and path.suffix == "" and len(path.parts) == 1:
        raise UnknownCheckpointError(
            f"checkpoint not found: {name!r} is no file and no shipped model (unknown model {name!r}); "
            f"pass a checkpoint path or one of {', '.join(MODEL_NAMES)}"
        )
    return path


def save_checkpoint(
    path: str | os.PathLike, model: BaseAutoencoder, metadata: dict[str, Any] | None = None
) -> None:
    """Write ``model`` and ``metadata`` (data, recipe, metrics, ...) to ``path`` atomically."""
    save_payload(path, FORMAT_NAME, FORMAT_VERSION, {
        "architecture": type(model).__name__,
        "arch_kwargs": dict(model.config),
        "encoding_shape": list(model.encoding_shape),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": {"package_version": __version__, **(metadata or {})},
    })


def read_checkpoint(path: str | os.PathLike, expected_architecture: str | None = None) -> dict:
    """The checkpoint dict at ``path``, validated; one clear error for each way it can be bad."""
    kind, fix = "gym_autoencoder checkpoint", "retrain it or restore the file from the package"
    payload = load_payload(
        path, FORMAT_NAME, FORMAT_VERSION, kind=kind, writer="save_checkpoint", fix=fix, required=REQUIRED_KEYS,
    )
    check_weights(payload, "state_dict", path, kind, fix)
    for key, kind_of in (("architecture", str), ("arch_kwargs", dict), ("metadata", dict)):
        if not isinstance(payload[key], kind_of):
            raise CheckpointError(f"{kind} {path} is damaged: its {key!r} is not a {kind_of.__name__}; {fix}")
    if expected_architecture is not None and payload["architecture"] != expected_architecture:
        raise CheckpointError(
            f"checkpoint {path} holds a {payload['architecture']} model, expected "
            f"{expected_architecture}; pass a {expected_architecture} checkpoint"
        )
    return payload


def load_checkpoint(
    path: str | os.PathLike, expected_architecture: str | None = None
) -> tuple[BaseAutoencoder, dict[str, Any]]:
    """Rebuild the model stored at ``path`` (in eval mode, on CPU) and return it with its metadata."""
    payload = read_checkpoint(path, expected_architecture)
    model = build_model(payload["architecture"], **payload["arch_kwargs"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"checkpoint {path} does not fit {payload['architecture']} ({first_line}); "
            "it was written by another version of the architecture"
        ) from None
    return model.eval(), payload["metadata"]
