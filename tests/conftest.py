"""Shared fixtures: real Heist frames, small labelled data sets and checkpoints of fresh models, each made
once per test run."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from gym_autoencoder import save_checkpoint
from gym_autoencoder.inference import torch_threads
from gym_autoencoder.registration import ENV_ARCHITECTURES
from tests.helpers import RUN_EVALUATION, fresh_model, heist_frames, write_dataset


@pytest.fixture(scope="session")
def frames() -> np.ndarray:
    """32 real Heist frames."""
    return heist_frames(32)


@pytest.fixture(scope="session")
def env_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A checkpoint of a freshly initialised model for each env id (independent of the shipped ones)."""
    directory = tmp_path_factory.mktemp("env_checkpoints")
    paths = {}
    for env_id, architecture in ENV_ARCHITECTURES.items():
        paths[env_id] = directory / f"{architecture.lower()}.pt"
        save_checkpoint(paths[env_id], fresh_model(architecture))
    return paths


@pytest.fixture(scope="module")
def one_torch_thread():
    """Batch-1 inference on a shared 2-core machine is fastest (by far, under load) on one thread."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A few hundred real, labelled frames: 256 for training, 64 for testing (modules may override it)."""
    return write_dataset(tmp_path_factory.mktemp("data"), 256, 64)


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory) -> Path:
    """48 real, labelled frames: 32 for training, 16 for testing."""
    return write_dataset(tmp_path_factory.mktemp("small"), 32, 16)


@pytest.fixture(scope="session")
def fast_config(tmp_path_factory) -> Path:
    """A training config file with a fast evaluation and rare log lines."""
    path = tmp_path_factory.mktemp("config") / "fast.yaml"
    path.write_text(yaml.safe_dump({"evaluation": RUN_EVALUATION, "log_interval": 1000}))
    return path


def _mount(*arguments: str) -> None:
    subprocess.run(["mount", *arguments], check=True, capture_output=True)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A directory on a 3 MB tmpfs: a disk that fills up at once. Mounting needs root."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a small tmpfs, which only root can mount")
    mount = tmp_path / "small_disk"
    mount.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount))
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"cannot mount a tmpfs here ({err})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.fixture
def make_read_only() -> Iterator[Callable[[Path], Path]]:
    """Makes a directory read-only: a read-only bind mount for root (whom permissions do not
    stop), its mode otherwise; undone after the test."""
    undo = []

    def read_only(path: Path) -> Path:
        if os.geteuid() == 0:
            _mount("--bind", str(path), str(path))
            undo.append(lambda: subprocess.run(["umount", str(path)], check=False))
            _mount("-o", "remount,bind,ro", str(path))
        else:
            mode = path.stat().st_mode
            path.chmod(0o555)
            undo.append(lambda: path.chmod(mode))
        return path

    yield read_only
    for step in reversed(undo):
        step()
