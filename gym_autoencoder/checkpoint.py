"""The checkpoint format: weights plus the metadata needed to rebuild and judge a model.

A checkpoint is a plain dict of tensors, strings and numbers, so it loads with
``torch.load(weights_only=True)`` and no pickled code ever runs.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from gym_autoencoder._version import __version__
from gym_autoencoder.atomic import atomic_write_bytes
from gym_autoencoder.errors import CheckpointError
from gym_autoencoder.model_stubs import BaseAutoencoder, build_model

FORMAT_NAME = "gym_autoencoder.checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("architecture", "arch_kwargs", "encoding_shape", "state_dict", "metadata")


def save_checkpoint(
    path: str | os.PathLike, model: BaseAutoencoder, metadata: dict[str, Any] | None = None
) -> None:
    """Write ``model`` and ``metadata`` (data, recipe, metrics, ...) to ``path`` atomically."""
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "architecture": type(model).__name__,
        "arch_kwargs": dict(model.config),
        "encoding_shape": list(model.encoding_shape),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": {"package_version": __version__, **(metadata or {})},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path: str | os.PathLike, expected_architecture: str | None = None) -> dict:
    """The checkpoint dict at ``path``, validated; one clear error for each way it can be bad."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path}; pass the path of a .pt file written by "
            "gym_autoencoder or the name of a shipped model"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({first_line}); "
            "retrain it or restore the file from the package"
        ) from None
    except Exception as err:  # the unpickler rejects anything but plain data
        raise CheckpointError(
            f"{path} is not a gym_autoencoder checkpoint ({type(err).__name__}); "
            "only files written by save_checkpoint load"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{path} is not a gym_autoencoder checkpoint (no '{FORMAT_NAME}' marker); "
            "only files written by save_checkpoint load"
        )
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {payload.get('format_version')} "
            f"(missing {missing or 'nothing'}); this package reads version {FORMAT_VERSION}"
        )
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
