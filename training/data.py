"""Training data: uint8 frames, their labels, mini-batches and per-pixel loss weights.

Frames stay on disk (``np.load(mmap_mode="r")``) and only each mini-batch is read and
converted by the package's one data path, so a data set need not fit in memory. A data set that
fits is held on the training device instead (:func:`place_rows`): its uint8 frames, masks and
labels are copied there once and every batch is gathered there, with no copy from the host.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gym_autoencoder.atomic import finish_commit
from gym_autoencoder.data_generation.dataset_files import check_parts
from gym_autoencoder.data_generation.labels import OBJECT_CLASSES
from gym_autoencoder.errors import FrameFormatError, GymAutoencoderError
from gym_autoencoder.preprocessing import check_frames, frames_to_tensor
from gym_autoencoder.training.config import GenerateSettings

SPLIT_FILES = {
    "training": ("training_samples.npy", "training_labels.npz"),
    "test": ("test_samples.npy", "test_labels.npz"),
}


class DataError(GymAutoencoderError, ValueError):
    """The data files are missing, unreadable or inconsistent."""


Indices = np.ndarray | slice
# "auto" holds a data set on the device when it takes at most this share of the free memory there.
DEVICE_SHARE = 0.5


class Rows:
    """An array whose rows are gathered into batches: from the host array (a memory map or in
    memory), or, once :meth:`hold` put a copy on a device, there."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.resident: torch.Tensor | None = None

    def hold(self, device: torch.device) -> None:
        self.resident = torch.from_numpy(np.array(self.array)).to(device)

    def take(self, indices: Indices, device: torch.device) -> torch.Tensor:
        """Rows ``indices`` as a tensor on ``device`` (the resident copy's device, once held)."""
        if self.resident is None:
            return torch.as_tensor(np.array(self.array[indices]), device=device)
        if isinstance(indices, slice):
            return self.resident[indices]
        # index_select: plain tensor indexing is several times slower on CPU
        return self.resident.index_select(0, torch.as_tensor(indices, device=self.resident.device))


@dataclass
class Split:
    """One split of a data set: frames (memory-mapped, or held on a device) and the path of its
    labels, if any."""

    name: str
    frames: np.ndarray
    labels_path: Path | None

    def __post_init__(self) -> None:
        self.rows = Rows(self.frames)

    def __len__(self) -> int:
        return len(self.frames)

    def label(self, key: str) -> np.ndarray | None:
        """The label array ``key`` (row i labels frame i), or None if the split has no such labels."""
        if self.labels_path is None:
            return None
        try:
            with np.load(self.labels_path, allow_pickle=False) as labels:
                if key not in labels.files:
                    return None
                array = labels[key]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DataError(
                f"{self.labels_path} is not a readable label archive ({reason}); regenerate the data set"
            ) from None
        if len(array) != len(self.frames):
            raise DataError(
                f"{self.labels_path} holds {len(array)} rows of {key!r} for {len(self.frames)} frames; "
                "regenerate the data set so that labels and frames match"
            )
        return array

    def batch(
        self, indices: Indices, device: torch.device, memory_format: torch.memory_format = torch.contiguous_format,
    ) -> torch.Tensor:
        """Frames ``indices`` as a float (B, 3, 64, 64) tensor in [0, 1] on ``device``."""
        return frames_to_tensor(self.rows.take(indices, device), device, memory_format)


@dataclass
class Dataset:
    directory: Path
    train: Split
    test: Split

    def describe(self) -> dict[str, Any]:
        """What a checkpoint records about its data: where, how much, which levels."""
        info: dict[str, Any] = {
            "dir": str(self.directory),
            "train_frames": len(self.train),
            "test_frames": len(self.test),
            "labels": self.train.labels_path is not None and self.test.labels_path is not None,
        }
        train_seeds, test_seeds = self.train.label("level_seeds"), self.test.label("level_seeds")
        if train_seeds is not None and test_seeds is not None:
            train_set, test_set = set(train_seeds.tolist()), set(test_seeds.tolist())
            info["levels"] = {
                "train": len(train_set),
                "test": len(test_set),
                "shared": len(train_set & test_set),
            }
        return info


def generator_command(data_dir: str | os.PathLike, generate: GenerateSettings, seed: int) -> str:
    """The command line of the balanced generator that makes the data set ``--generate-data`` would."""
    return (
        f"python -m gym_autoencoder.data_generation.sample_generator_heist --output-dir {data_dir} "
        f"--num-samples {generate.num_samples} --test-fraction {generate.test_fraction} "
        f"--random-actions {generate.random_actions} "
        f"--distribution-mode {generate.distribution_mode} --seed {seed}"
    )


def missing_data_error(data_dir: str | os.PathLike, generate: GenerateSettings, seed: int) -> DataError:
    missing = [name for name, _ in SPLIT_FILES.values() if not (Path(data_dir) / name).is_file()]
    return DataError(
        f"training data not found: {', '.join(missing)} missing in {data_dir}; create the data set with "
        f"`{generator_command(data_dir, generate, seed)}`, or add --generate-data to this command, "
        "or point --data-dir at an existing data set"
    )


def complete_generation(data_dir: Path) -> None:
    """Put in place the data set of a generator run that was interrupted after it had written it."""
    try:
        finish_commit(data_dir)
    except OSError as err:
        raise DataError(
            f"a generator run in {data_dir} was interrupted while putting its data set in place, and "
            f"this process cannot finish that ({err.strerror or err}); rerun the generator there"
        ) from None


def open_split(data_dir: Path, name: str) -> Split:
    """The split ``name`` ("training" or "test") of the data set in ``data_dir``."""
    frames_name, labels_name = SPLIT_FILES[name]
    complete_generation(data_dir)
    check_parts(data_dir, SPLIT_FILES[name], DataError)
    path = data_dir / frames_name
    if not path.is_file():
        raise DataError(
            f"data not found: {path} does not exist; point --data-dir at a data set holding "
            f"{' and '.join(frames for frames, _ in SPLIT_FILES.values())}"
        )
    try:
        frames = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as err:
        raise DataError(f"{path} is not a readable .npy file ({err}); regenerate the data set") from None
    try:
        check_frames(frames)
    except FrameFormatError as err:
        raise DataError(f"{path}: {err}") from None
    if len(frames) == 0:
        raise DataError(f"{path} holds no frames; regenerate the data set with more samples")
    labels = data_dir / labels_name
    return Split(name, frames, labels if labels.is_file() else None)


def open_dataset(data_dir: str | os.PathLike) -> Dataset:
    """The data set in ``data_dir``, checked: both frame files present, uint8 (N, 64, 64, 3)."""
    directory = Path(data_dir)
    return Dataset(directory, open_split(directory, "training"), open_split(directory, "test"))


def data_present(data_dir: str | os.PathLike) -> bool:
    if Path(data_dir).is_dir():
        complete_generation(Path(data_dir))
    return all((Path(data_dir) / frames).is_file() for frames, _ in SPLIT_FILES.values())


def generate_data(
    data_dir: str | os.PathLike, generate: GenerateSettings, seed: int, workers: int | None = None
) -> None:
    """Write a balanced, labelled Heist data set into ``data_dir`` (settings: the ``generate`` section),
    labelled by ``workers`` processes (default: one per core; the files are the same for any number)."""
    from gym_autoencoder.data_generation.arguments import available_cores
    from gym_autoencoder.data_generation.sample_generator_heist import generate_balanced_dataset

    generate_balanced_dataset(
        output_dir=data_dir,
        num_samples=generate.num_samples,
        seed=seed,
        test_fraction=generate.test_fraction,
        random_actions=generate.random_actions,
        distribution_mode=generate.distribution_mode,
        workers=available_cores() if workers is None else workers,
    )


def epoch_batches(num_frames: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The mini-batches of one epoch: a permutation drawn from (seed, epoch), each batch sorted.

    Drawing from (seed, epoch) alone makes a resumed run see exactly the batches it would
    have seen; sorting a batch reads the memory-mapped file front to back.
    """
    order = np.random.default_rng([seed, epoch]).permutation(num_frames)
    return [np.sort(order[i : i + batch_size]) for i in range(0, num_frames, batch_size)]


def required_label(split: Split, key: str, setting: str, value: float, off: float) -> np.ndarray:
    """The label array ``key`` of ``split``, which ``setting`` at ``value`` needs (at ``off`` it
    would not), or a clear error."""
    array = split.label(key)
    if array is None:
        raise DataError(
            f"{setting} {value} needs {key} labels for {split.name} frames, but "
            f"{SPLIT_FILES[split.name][1]} is missing or lacks them; set {setting}: {off:g} "
            "or generate a labelled data set"
        )
    return array


def object_mask(split: Split, factor: float) -> np.ndarray:
    """The split's (N, 64, 64) object mask (0 background, k + 1 on pixels of class k), required by weighting."""
    return required_label(split, "object_mask", "object_pixel_weight", factor, 1)


def class_balance(split: Split, factor: float) -> np.ndarray | None:
    """Per object class, the scale that gives every class present in ``split`` the same total weight.

    The scales average to 1 over the split's object pixels, so the objects' total weight is that of
    plain ``factor``; a rare class (red keys) then weighs as much as a common one (blue keys), as
    the fidelity metric, which averages classes, counts it. None for ``factor`` 1 (plain MSE: no
    extra weight to spread).
    """
    if factor == 1.0:
        return None
    mask = object_mask(split, factor)
    pixels = np.bincount(mask.ravel(), minlength=len(OBJECT_CLASSES) + 1)[1:].astype(np.float64)
    present = pixels > 0
    share = pixels.sum() / present.sum()
    return np.where(present, share / np.maximum(pixels, 1.0), 0.0)


class PixelWeights:
    """Per-pixel loss weights: 1 elsewhere, on key, lock and gem pixels ``factor``, or with
    ``class_scale`` (see :func:`class_balance`) ``1 + (factor - 1) * class_scale[k]`` for class k."""

    def __init__(self, split: Split, factor: float, class_scale: np.ndarray | None = None) -> None:
        self.mask = Rows(object_mask(split, factor))
        scale = np.ones(len(OBJECT_CLASSES)) if class_scale is None else class_scale
        self.table = torch.tensor([1.0, *(1.0 + (factor - 1.0) * scale)], dtype=torch.float32)

    def batch(self, indices: Indices, device: torch.device) -> torch.Tensor:
        """(B, 1, 64, 64) weights of frames ``indices``."""
        classes = self.mask.take(indices, device).long()
        if self.table.device != classes.device:
            self.table = self.table.to(classes.device)  # once, not for every batch
        return self.table[classes].unsqueeze(1)


def pixel_weights(split: Split, factor: float, class_scale: np.ndarray | None = None) -> PixelWeights | None:
    """Loss weights for ``split``, or None for plain MSE (``factor`` 1)."""
    return None if factor == 1.0 else PixelWeights(split, factor, class_scale)


def fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether ``nbytes`` take at most :data:`DEVICE_SHARE` of the memory free on ``device``."""
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return nbytes <= DEVICE_SHARE * free


def place_rows(rows: Sequence[Rows], device: torch.device, placement: str) -> str:
    """Hold all of ``rows`` (frames, masks, labels) on ``device`` (``placement`` "device", or
    "auto" when together they fit) or leave them on the host; returns where they are: "device"
    or "memory_map"."""
    if placement == "memory_map" or (
        placement == "auto" and not fits_on(device, sum(part.array.nbytes for part in rows))
    ):
        return "memory_map"
    for part in rows:
        part.hold(device)
    return "device"
