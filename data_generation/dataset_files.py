"""Writing a dataset directory: frames, labels and a report, all or nothing and byte-reproducibly.

Frames go straight into memory-mapped ``.npy`` temporaries whose space is allocated up front (a
full disk is then an error at the start, not a crash mid-way), so a run of 50,000+ frames holds
little in memory. Frames, labels and ``generation_report.json`` replace the old ones in one step
(``atomic.commit_together``): a reader sees the old data set or the new one, never a mix, and the
report records the size and SHA-256 of every part, so a directory whose parts do not belong
together is refused (``check_parts``). Label archives carry fixed timestamps, so the same run
writes the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gym_autoencoder.atomic import commit_together, finish_commit, reserve_space, storage_errors, temporary_path
from gym_autoencoder.data_generation.arguments import check_output_dir

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


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed``, but with fixed timestamps (same arrays, same bytes)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)


def fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """The size and SHA-256 of the file ``path``, as the report records each part."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return {"bytes": os.path.getsize(path), "sha256": digest.hexdigest()}


def check_parts(directory: str | os.PathLike, names: tuple[str, ...], error: Callable[[str], Exception]) -> None:
    """Raise ``error`` unless each existing file of ``names`` in ``directory`` is the one its
    ``generation_report.json`` recorded. A directory without a report (a data set made by hand),
    or with a report that records no parts, has nothing to check against."""
    directory = Path(directory)
    report_path = directory / REPORT_NAME
    if not report_path.is_file():
        return
    try:
        parts = json.loads(report_path.read_text(encoding="utf-8")).get("parts") or {}
    except (ValueError, AttributeError):
        raise error(f"{report_path} is not a generation report; regenerate the data set") from None
    for name in names:
        path = directory / name
        if path.is_file() and name in parts and fingerprint(path) != parts[name]:
            raise error(
                f"{path} is not the file {REPORT_NAME} records: the parts of the data set in {directory} "
                "do not belong together; regenerate the data set"
            )


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
        self._parts: dict[str, Path] = {}  # final name: temporary, in the order they are committed
        self._files = contextlib.ExitStack()

    def __enter__(self) -> DatasetWriter:
        check_output_dir(self.output_dir)
        try:
            with self._storage():
                finish_commit(self.output_dir)  # an interrupted run's new data set first takes its place
                for split in SPLITS:
                    path = samples_path(self.output_dir, split)
                    tmp = self._files.enter_context(temporary_path(path, suffix=".npy"))
                    self._frames[split] = np.lib.format.open_memmap(
                        tmp, mode="w+", dtype=np.uint8, shape=(self.counts[split], *FRAME_SHAPE)
                    )
                    reserve_space(tmp, tmp.stat().st_size)
                    self._parts[path.name] = tmp
        except BaseException:
            self._frames.clear()
            self._files.close()
            raise
        return self

    def _storage(self) -> contextlib.AbstractContextManager:
        return storage_errors(self.output_dir, "free some space or choose another --output-dir")

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
        try:
            if exc_type is None:
                with self._storage():
                    self._finish()
        finally:
            self._frames.clear()
            self._files.close()  # removes whatever was not committed
        return None

    def _finish(self) -> None:
        if not self.complete:
            raise RuntimeError(f"dataset incomplete: {self.filled} of {self.counts} frames")
        for split in SPLITS:
            self._frames[split].flush()
        self._frames.clear()
        for split in SPLITS:
            path = labels_path(self.output_dir, split)
            self._parts[path.name] = self._files.enter_context(temporary_path(path, suffix=".npz"))
            write_npz(self._parts[path.name], self._labels[split])
        self.report["parts"] = {name: fingerprint(tmp) for name, tmp in self._parts.items()}
        report = self._files.enter_context(temporary_path(self.output_dir / REPORT_NAME))
        report.write_text(json.dumps(self.report, indent=2) + "\n", encoding="utf-8")
        commit_together(self.output_dir, {**self._parts, REPORT_NAME: report})
