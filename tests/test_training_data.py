"""training/data.py: memory-mapped splits, batches, labels and pixel weights on small real data sets."""

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import copy_frames, write_dataset
from gym_autoencoder.training.data import DataError, PixelWeights, class_balance, epoch_batches, open_dataset, pixel_weights

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"), 40, 12)


def test_batches_cover_every_frame_once_are_sorted_and_depend_on_seed_and_epoch():
    batches = epoch_batches(103, 16, seed=3, epoch=2)
    assert [len(b) for b in batches] == [16] * 6 + [7]
    assert sorted(np.concatenate(batches).tolist()) == list(range(103))
    assert all(np.all(np.diff(b) > 0) for b in batches)
    again = epoch_batches(103, 16, seed=3, epoch=2)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    assert not np.array_equal(batches[0], epoch_batches(103, 16, seed=3, epoch=3)[0])
    assert not np.array_equal(batches[0], epoch_batches(103, 16, seed=4, epoch=2)[0])


def test_frames_are_memory_mapped_and_batches_use_the_one_data_path(data_dir):
    dataset = open_dataset(data_dir)
    assert isinstance(dataset.train.frames, np.memmap)
    assert (len(dataset.train), len(dataset.test)) == (40, 12)
    batch = dataset.train.batch(np.array([3, 7]), torch.device("cpu"))
    expected = torch.from_numpy(np.load(data_dir / "training_samples.npy")[[3, 7]]).permute(0, 3, 1, 2) / 255
    assert torch.equal(batch, expected)
    description = dataset.describe()
    assert description["train_frames"] == 40 and description["test_frames"] == 12 and description["labels"]
    assert description["levels"]["shared"] == 0 and description["levels"]["train"] > 1


def test_missing_data_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"training_samples\.npy does not exist; point --data-dir at"):
        open_dataset(tmp_path)


def test_frames_of_the_wrong_type_are_refused(tmp_path):
    np.save(tmp_path / "training_samples.npy", np.zeros((4, 64, 64, 3), dtype=np.float32))
    np.save(tmp_path / "test_samples.npy", np.zeros((4, 64, 64, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="training_samples.npy: frames must be uint8"):
        open_dataset(tmp_path)


def test_labels_of_another_length_are_refused(data_dir, tmp_path):
    copy_frames(data_dir, tmp_path)
    np.savez(tmp_path / "training_labels.npz", object_mask=np.zeros((39, 64, 64), np.uint8))
    with pytest.raises(DataError, match="39 rows of 'object_mask' for 40 frames"):
        open_dataset(tmp_path).train.label("object_mask")


def test_object_pixels_are_weighted_up(data_dir):
    dataset = open_dataset(data_dir)
    assert pixel_weights(dataset.train, 1.0) is None
    weights = PixelWeights(dataset.train, 10.0).batch(np.arange(40), torch.device("cpu"))
    objects = np.load(data_dir / "training_labels.npz")["object_mask"] > 0
    assert objects.any() and not objects.all()
    assert weights.shape == (40, 1, 64, 64)
    assert np.array_equal(weights[:, 0].numpy(), np.where(objects, 10.0, 1.0))


def test_class_balance_gives_every_class_present_the_same_total_weight(data_dir):
    split = open_dataset(data_dir).train
    mask = np.load(data_dir / "training_labels.npz")["object_mask"]
    present = [k for k in range(7) if (mask == k + 1).any()]
    assert len(present) >= 2
    scale = class_balance(split, 10.0)
    weights = PixelWeights(split, 10.0, scale).batch(np.arange(40), torch.device("cpu"))[:, 0].numpy()
    extra = [float((weights[mask == k + 1] - 1.0).sum()) for k in present]
    assert extra == pytest.approx([extra[0]] * len(present), rel=1e-5)
    # the objects' total weight is that of the plain factor, only spread differently
    assert sum(extra) == pytest.approx(9.0 * float((mask > 0).sum()), rel=1e-5)
    assert np.array_equal(weights[mask == 0], np.ones(int((mask == 0).sum()), np.float32))
    assert all(scale[k] == 0 for k in range(7) if k not in present)
    assert class_balance(split, 1.0) is None  # plain MSE: no extra weight to spread


def test_weighting_without_labels_says_what_is_missing(data_dir, tmp_path):
    with pytest.raises(DataError, match="object_pixel_weight 5.0 needs object_mask labels"):
        pixel_weights(open_dataset(copy_frames(data_dir, tmp_path)).train, 5.0)
