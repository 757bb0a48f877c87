import math

import numpy as np
import pytest
import torch
from skimage import metrics as skimage_metrics

from gym_autoencoder import frames_to_tensor
from gym_autoencoder.training import metrics

CLASSES = ("blue_key", "green_key", "red_key", "blue_lock", "green_lock", "red_lock", "gem")


def test_psnr_of_a_known_error_and_of_a_perfect_copy():
    x = torch.full((2, 3, 64, 64), 0.5)
    y = x.clone()
    y[0] += 0.1  # MSE 0.01 -> 20 dB
    values = metrics.psnr(x, y)
    assert values[0].item() == pytest.approx(20.0, abs=1e-4)
    assert values[1].item() == pytest.approx(100.0)  # MSE floored at 1e-10


def test_ssim_is_one_for_a_copy_and_falls_with_noise(frames):
    x = frames_to_tensor(frames[:4])
    generator = torch.Generator().manual_seed(0)
    noisy = (x + 0.1 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    very_noisy = (x + 0.3 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    assert torch.allclose(metrics.ssim(x, x), torch.ones(4))
    assert (metrics.ssim(x, noisy) < 0.99).all()
    assert (metrics.ssim(x, very_noisy) < metrics.ssim(x, noisy)).all()


def test_ssim_matches_scikit_image(frames):
    x = frames_to_tensor(frames[:3])
    y = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    ours = metrics.ssim(x, y).numpy()
    theirs = [
        skimage_metrics.structural_similarity(
            a.permute(1, 2, 0).double().numpy(), b.permute(1, 2, 0).double().numpy(),
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1,
        )
        for a, b in zip(x, y)
    ]
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def synthetic_objects() -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Two grey frames: frame 0 shows a 12-pixel blue key and a 5-pixel gem, frame 1 a 9-pixel red lock."""
    x = torch.full((2, 3, 64, 64), 0.4)
    mask = np.zeros((2, 64, 64), dtype=np.uint8)
    mask[0, 10:13, 20:24] = 1  # blue_key, class 0
    mask[0, 40, 40:45] = 7  # gem, class 6: too few pixels to count
    mask[1, 30:33, 30:33] = 6  # red_lock, class 5
    x[torch.from_numpy(mask > 0).unsqueeze(1).expand_as(x)] = 0.9
    counts = np.stack([np.bincount(m.ravel(), minlength=8)[1:] for m in mask]).astype(np.int32)
    return x, mask, counts


def test_a_perfect_reconstruction_keeps_every_object():
    x, mask, counts = synthetic_objects()
    errors = metrics.object_errors(x, x.clone(), mask, counts)
    summary = metrics.fidelity_summary(errors, CLASSES)
    assert summary["per_class"]["blue_key"] == {"faithful_share": 1.0, "objects": 1}
    assert summary["per_class"]["red_lock"] == {"faithful_share": 1.0, "objects": 1}
    assert summary["per_class"]["gem"] == {"faithful_share": None, "objects": 0}
    assert summary["mean"] == 1.0


def test_objects_painted_over_are_lost_and_the_error_is_the_mean_absolute_rgb_error():
    x, mask, counts = synthetic_objects()
    recon = x.clone()
    recon[0, :, 10:13, 20:24] = 0.4 + 0.1  # blue key: error 0.4 per channel
    recon[1, 0, 30:33, 30:33] -= 0.3  # red lock: 0.3 in one channel of three -> 0.1
    errors = metrics.object_errors(x, recon, mask, counts)
    assert errors[0, 0] == pytest.approx(0.4)
    assert errors[1, 5] == pytest.approx(0.1)
    assert math.isnan(errors[0, 6]) and math.isnan(errors[1, 0])
    summary = metrics.fidelity_summary(errors, CLASSES)
    assert summary["per_class"]["blue_key"]["faithful_share"] == 0.0
    assert summary["per_class"]["red_lock"]["faithful_share"] == 1.0
    assert summary["mean"] == 0.5


def test_balanced_accuracy():
    truth = np.array([1, 1, 0, 0, 0, 0], dtype=bool)
    assert metrics.balanced_accuracy(truth, np.array([1, 0, 0, 0, 0, 1])) == pytest.approx(0.5 * (0.5 + 0.75))
    assert math.isnan(metrics.balanced_accuracy(np.ones(4, bool), np.ones(4, bool)))


@pytest.mark.slow
def test_the_probe_reads_an_encoded_label_and_not_noise():
    rng = np.random.default_rng(0)
    targets = rng.random((600, 7)) < 0.3
    targets[:, 6] = False  # never visible: not measurable
    features = rng.normal(size=(600, 20))
    features[:, 0] += 5.0 * targets[:, 0]  # class 0 is linearly readable from feature 0
    accuracy = metrics.logistic_probe(features, targets)
    assert accuracy[0] > 0.95
    assert np.all(accuracy[1:6] < 0.7)
    assert math.isnan(accuracy[6])
    summary = metrics.probe_summary(accuracy, CLASSES, "test features")
    assert summary["balanced_accuracy"]["gem"] is None
    assert summary["mean"] == pytest.approx(np.nanmean(accuracy))


@pytest.mark.slow
def test_the_probe_penalty_is_chosen_by_cross_validation_for_wide_features(monkeypatch):
    rng = np.random.default_rng(0)
    targets = rng.random((600, 2)) < 0.4
    features = rng.normal(size=(600, 300))  # a weak signal spread over 300 features, 400 training rows:
    features += 0.1 * targets[:, :1]  # a weak penalty fits the noise, a stronger one averages it out
    chosen = metrics.logistic_probe(features, targets)
    monkeypatch.setattr(metrics, "PROBE_L2_GRID", (1.0,))
    weakest = metrics.logistic_probe(features, targets)
    assert chosen[0] > weakest[0] + 0.01
    assert chosen[1] < 0.6  # noise stays unreadable


def test_downsampled_pixels_average_4x4_blocks():
    x = torch.arange(64.0).repeat(64, 1).expand(1, 3, 64, 64)
    pixels = metrics.downsampled_pixels(x)
    assert pixels.shape == (1, 3 * 16 * 16)
    assert pixels[0, :16].tolist() == [4 * i + 1.5 for i in range(16)]
