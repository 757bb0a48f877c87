import numpy as np
import pytest
import torch

from gym_autoencoder import FrameFormatError, frames_to_tensor, tensor_to_frames


def test_round_trip_is_exact(frames):
    assert np.array_equal(tensor_to_frames(frames_to_tensor(frames)), frames)


def test_layout_range_and_dtype(frames):
    x = frames_to_tensor(frames)
    assert x.dtype == torch.float32 and x.shape == (len(frames), 3, 64, 64)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    # channel c, row r, column k of the tensor is pixel (r, k) channel c of the frame
    assert x[3, 0, 10, 50] == pytest.approx(frames[3, 10, 50, 0] / 255.0)
    assert x[3, 2, 50, 10] == pytest.approx(frames[3, 50, 10, 2] / 255.0)


def test_accepts_uint8_torch_tensors(frames):
    assert torch.equal(frames_to_tensor(torch.from_numpy(frames)), frames_to_tensor(frames))


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 64, 64, 3), np.float32), "uint8"),
        (np.zeros((64, 64, 3), np.uint8), "frames\\[None\\]"),
        (np.zeros((2, 3, 64, 64), np.uint8), "shape"),
    ],
)
def test_bad_frames_get_one_clear_error(bad, message):
    with pytest.raises(FrameFormatError, match=message):
        frames_to_tensor(bad)


def test_display_clamps_out_of_range_values():
    images = torch.tensor([-0.5, 0.5, 1.5]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert tensor_to_frames(images)[0, 0, 0].tolist() == [0, 128, 255]
