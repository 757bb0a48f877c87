"""Writing a dataset directory: frames, labels and a report, atomically and byte-reproducibly.

Frames go straight into memory-mapped ``.npy`` files beside their final names, so a run of
50,000+ frames holds little in memory; every file appears under its final name only once it
is complete (``gym_autoencoder.atomic``). Label archives carry fixed timestamps, so the same
run writes the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gym_autoencoder.data_generation.arguments import check_output_dir
from gym_autoencoder.atomic import atomic_path, atomic_write_text

SPLITS = ("training", "test")
FRAME_SHAPE = (64, 64, 3)
REPORT_NAME = "generation_report.json"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def samples_path(output_dir: str | os.PathLike, split: str) -> Path:
    return Path(output_dir) / f"{split}_samples.npy"


def labels_path(output_dir: str | os.PathLike, split: str) -> Path:
    return Path(output_dir) / f"{split}_labels.npz"


def is_test_level(level_seeds: np.ndarray, test_fraction: float) -> np.ndarray:
    """Whether each level belongs to the test split: a fixed hash of the seed below ``test_fraction``.

    The hash (splitmix64) depends on the level seed alone, so every frame of a level, in any
    run and any dataset made with the same fraction, lands in the same split.
    """
    z = np.asarray(level_seeds).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53) < test_fraction


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed``, but atomic and with fixed timestamps (same arrays, same bytes)."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)


class DatasetWriter:
    """Collects frames and labels for both splits; writes everything on a clean exit, nothing otherwise.

    >>> with DatasetWriter(out, {"training": 90, "test": 10}) as writer:  # doctest: +SKIP
    ...     writer.add("test", frames, labels)
    ...     writer.report = {...}
    """

    def __init__(self, output_dir: str | os.PathLike, counts: dict[str, int]) -> None:
        self.output_dir = Path(output_dir)
        self.counts = dict(counts)
        self.filled = dict.fromkeys(SPLITS, 0)
        self.report: dict[str, Any] = {}
        self._labels: dict[str, dict[str, np.ndarray]] = {split: {} for split in SPLITS}
        self._frames: dict[str, np.ndarray] = {}
        self._files = contextlib.ExitStack()

    def __enter__(self) -> DatasetWriter:
        check_output_dir(self.output_dir)
        for split in SPLITS:
            tmp = self._files.enter_context(atomic_path(samples_path(self.output_dir, split), suffix=".npy"))
            self._frames[split] = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.uint8, shape=(self.counts[split], *FRAME_SHAPE)
            )
        return self

    def room(self, split: str) -> int:
        """How many more frames ``split`` takes."""
        return self.counts[split] - self.filled[split]

    @property
    def complete(self) -> bool:
        return all(self.room(split) == 0 for split in SPLITS)

    def add(self, split: str, frames: np.ndarray, labels: Mapping[str, np.ndarray]) -> int:
        """Append frames (and their label rows) to ``split`` up to its size; return how many were taken."""
        take = min(len(frames), self.room(split))
        start = self.filled[split]
        self._frames[split][start : start + take] = frames[:take]
        store = self._labels[split]
        for name, rows in labels.items():
            if name not in store:
                store[name] = np.zeros((self.counts[split], *rows.shape[1:]), rows.dtype)
            store[name][start : start + take] = rows[:take]
        self.filled[split] += take
        return take

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        if exc_type is None:
            try:
                self._finish()
            except BaseException as err:
                self._files.__exit__(type(err), err, err.__traceback__)
                raise
        return self._files.__exit__(exc_type, exc, tb)  # renames on success, deletes on error

    def _finish(self) -> None:
        if not self.complete:
            raise RuntimeError(f"dataset incomplete: {self.filled} of {self.counts} frames")
        for split in SPLITS:
            self._frames[split].flush()
            save_npz(labels_path(self.output_dir, split), self._labels[split])
        self._frames.clear()
        atomic_write_text(self.output_dir / REPORT_NAME, json.dumps(self.report, indent=2) + "\n")
