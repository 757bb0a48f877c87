"""Versioned payloads: plain-data dicts marked with a format name and version.

Checkpoints and training states are both payloads. They are written atomically and read with
``torch.load(weights_only=True)``, so a reader sees a whole file or none and no pickled code runs.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from gym_autoencoder.atomic import atomic_write_bytes
from gym_autoencoder.errors import CheckpointError


def save_payload(path: str | os.PathLike, format_name: str, version: int, body: dict[str, Any]) -> None:
    """Write ``body`` under the marker ``format_name`` / ``version`` to ``path``, atomically."""
    buffer = io.BytesIO()
    torch.save({"format": format_name, "format_version": version, **body}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_payload(
    path: str | os.PathLike, format_name: str, version: int, kind: str, writer: str, fix: str,
    required: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The payload at ``path``, checked; one ``CheckpointError`` line for each way it can be bad.

    ``kind`` names the file in messages ("gym_autoencoder checkpoint"), ``writer`` the code that
    writes it, ``fix`` what to do about a corrupt one.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{kind} not found: {path}; pass the path of a .pt file written by {writer}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{kind} {path} is corrupt or truncated ({first_line}); {fix}") from None
    except Exception as err:  # the unpickler rejects anything but plain data
        raise CheckpointError(
            f"{path} is not a {kind} ({type(err).__name__}); only files written by {writer} load"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != format_name:
        raise CheckpointError(
            f"{path} is not a {kind} (no '{format_name}' marker); only files written by {writer} load"
        )
    missing = [key for key in required if key not in payload]
    if missing or payload.get("format_version") != version:
        raise CheckpointError(
            f"{kind} {path} has format version {payload.get('format_version')} "
            f"(missing {missing or 'nothing'}); this package reads version {version}"
        )
    return payload


def check_weights(payload: dict[str, Any], key: str, path: str | os.PathLike, kind: str, fix: str) -> None:
    """Raise ``CheckpointError`` unless ``payload[key]`` maps parameter names to tensors, all finite:
    NaN or infinite weights would make every output NaN."""
    weights = payload[key]
    if not isinstance(weights, dict) or not all(
        isinstance(name, str) and isinstance(value, torch.Tensor) for name, value in weights.items()
    ):
        raise CheckpointError(
            f"{kind} {path} is damaged: its {key!r} is not a mapping of parameter names to tensors; {fix}"
        )
    bad = [name for name, value in weights.items()
           if value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if bad:
        raise CheckpointError(
            f"{kind} {path} holds NaN or infinite weights ({', '.join(bad[:3])}"
            f"{', ...' if len(bad) > 3 else ''}); {fix}"
        )
