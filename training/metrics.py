"""Reconstruction and encoding metrics: PSNR, SSIM, object fidelity and linear probes.

Definitions (the numbers in ``metrics.json`` follow them):

* PSNR: per frame, ``10 log10(1 / MSE)`` over [0, 1] RGB pixels (MSE floored at 1e-10), then
  the mean over frames.
* SSIM: per frame, the mean SSIM map of the three RGB channels (11 x 11 Gaussian window,
  sigma 1.5, K1 0.01, K2 0.03, data range 1, only windows inside the frame), then the mean.
* Object fidelity: every key, lock or gem with at least 8 visible sprite pixels (from the
  emulator labels) is one object; its error is the mean absolute RGB error (in [0, 1]) over
  its sprite pixels; it is *faithful* when that error is below 0.15. Per class the share of
  faithful objects; overall the unweighted mean of those shares over the classes present.
* Probe: a logistic regression per object class on standardised features, trained on the
  first 2/3 of the test frames and scored on the rest by balanced accuracy (mean of the
  true-positive and true-negative rates) of "this class is visible"; classes weighted to
  balance in training. The L2 penalty is chosen per class from PROBE_L2_GRID (times 1 / the
  number of training frames) by 3-fold cross-validation on the training rows alone: wide
  encodings (1152 floats) need a stronger penalty than 32-float ones, and the scored third
  never takes part in the choice.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from gym_autoencoder.model_stubs.base import ERROR_FLOOR

FIDELITY_THRESHOLD = 0.15
FIDELITY_MIN_PIXELS = 8
PROBE_TRAIN_FRACTION = 2 / 3
PROBE_PIXELS = 16
PROBE_L2_GRID = (1.0, 10.0, 100.0, 1000.0)
PROBE_FOLDS = 3
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def frame_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-frame mean squared error of (N, C, H, W) images."""
    return ((x - y) ** 2).flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR in dB of images in [0, 1]."""
    return -10.0 * torch.log10(frame_mse(x, y).clamp_min(ERROR_FLOOR))


def _gaussian_kernel(device: torch.device) -> torch.Tensor:
    offsets = torch.arange(SSIM_WINDOW, dtype=torch.float32, device=device) - SSIM_WINDOW // 2
    kernel = torch.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    return kernel / kernel.sum()


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-frame SSIM of (N, C, H, W) images in [0, 1].

    The five local statistics are blurred together by one separable Gaussian filter.
    """
    channels = x.shape[1]
    stats = torch.cat([x, y, x * x, y * y, x * y], dim=1).float()
    kernel = _gaussian_kernel(x.device)
    groups = stats.shape[1]
    stats = F.conv2d(stats, kernel.view(1, 1, 1, -1).expand(groups, 1, 1, SSIM_WINDOW), groups=groups)
    stats = F.conv2d(stats, kernel.view(1, 1, -1, 1).expand(groups, 1, SSIM_WINDOW, 1), groups=groups)
    mu_x, mu_y, xx, yy, xy = stats.split(channels, dim=1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    )
    return ssim_map.flatten(1).mean(1)


def object_errors(
    x: torch.Tensor, recon: torch.Tensor, object_mask: np.ndarray, pixel_counts: np.ndarray
) -> np.ndarray:
    """(N, K) mean absolute RGB error over each object's sprite pixels; NaN where not counted.

    ``object_mask`` (N, 64, 64) holds k+1 on sprite pixels of class k; an object counts when
    ``pixel_counts`` says at least FIDELITY_MIN_PIXELS of its pixels are visible.
    """
    num_classes = pixel_counts.shape[1]
    error = (recon - x).abs().mean(1, keepdim=True)
    mask = torch.as_tensor(object_mask, device=x.device).unsqueeze(1)
    classes = torch.arange(1, num_classes + 1, device=x.device, dtype=mask.dtype).view(1, -1, 1, 1)
    member = (mask == classes).float()
    pixels = member.sum((2, 3))
    errors = ((member * error).sum((2, 3)) / pixels.clamp_min(1)).cpu().numpy().astype(np.float64)
    counted = (pixel_counts >= FIDELITY_MIN_PIXELS) & (pixels.cpu().numpy() > 0)
    return np.where(counted, errors, np.nan)


def _mean_or_none(values: np.ndarray) -> float | None:
    present = values[~np.isnan(values)]
    return float(present.mean()) if len(present) else None


def fidelity_summary(errors: np.ndarray, class_names: tuple[str, ...]) -> dict:
    """Share of faithful objects per class and their unweighted mean (None where no objects)."""
    counted = ~np.isnan(errors)
    shares = np.array([
        float((errors[counted[:, k], k] < FIDELITY_THRESHOLD).mean()) if counted[:, k].any() else np.nan
        for k in range(errors.shape[1])
    ])
    return {
        "per_class": {
            name: {
                "faithful_share": None if math.isnan(share) else share,
                "objects": int(counted[:, k].sum()),
            }
            for k, (name, share) in enumerate(zip(class_names, shares))
        },
        "mean": _mean_or_none(shares),
        "threshold": FIDELITY_THRESHOLD,
        "min_pixels": FIDELITY_MIN_PIXELS,
    }


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean of the true-positive and true-negative rates; NaN unless both classes occur."""
    truth, predicted = truth.astype(bool), predicted.astype(bool)
    if truth.all() or not truth.any():
        return math.nan
    return float(0.5 * (predicted[truth].mean() + (~predicted[~truth]).mean()))


def _fit_logistic(
    x: torch.Tensor, y: torch.Tensor, l2: torch.Tensor, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One class-balanced logistic regression per column of ``y`` on standardised ``x``.

    Column j gets the L2 penalty ``l2[j] / len(x)``. All columns are fitted together,
    in one pass over ``x`` per step. Returns the weights, biases and the
    standardisation's mean and scale.
    """
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    x = (x - mean) / std
    positives = y.mean(0)
    sample_weight = torch.where(
        y > 0, 0.5 / positives.clamp_min(1e-12), 0.5 / (1 - positives).clamp_min(1e-12)
    )
    weight = torch.zeros(x.shape[1], y.shape[1], dtype=x.dtype, requires_grad=True)
    bias = torch.zeros(y.shape[1], dtype=x.dtype, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")
    penalty = l2 / len(x)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ weight + bias, y, reduction="none")
        total = (sample_weight * loss).mean(0).sum() + 0.5 * (penalty * weight**2).sum()
        total.backward()
        return total

    optimiser.step(closure)
    return weight.detach(), bias.detach(), mean, std


def _probe_accuracy(
    x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: np.ndarray, max_iter: int
) -> np.ndarray:
    """(G, K) balanced accuracy on the test rows of probes fitted on the training rows, one per
    L2 penalty in PROBE_L2_GRID (G) and target column (K)."""
    grid, columns = len(PROBE_L2_GRID), y_train.shape[1]
    l2 = torch.tensor(PROBE_L2_GRID, dtype=x_train.dtype).repeat_interleave(columns)
    weight, bias, mean, std = _fit_logistic(x_train, y_train.repeat(1, grid), l2, max_iter)
    predicted = ((((x_test - mean) / std) @ weight + bias) > 0).numpy().reshape(len(x_test), grid, columns)
    return np.array([
        [balanced_accuracy(y_test[:, k], predicted[:, g, k]) for k in range(columns)] for g in range(grid)
    ])


def logistic_probe(features: np.ndarray, targets: np.ndarray, max_iter: int = 200) -> np.ndarray:
    """(K,) balanced accuracy of a logistic probe per target column; NaN where not measurable.

    Trained on the first PROBE_TRAIN_FRACTION of the rows, with its L2 penalty chosen by
    cross-validation on those rows, and scored on the rest (see module doc).
    """
    cut = int(round(len(features) * PROBE_TRAIN_FRACTION))
    x = torch.as_tensor(np.asarray(features).reshape(len(features), -1), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.float32)
    positives = y[:cut].mean(0)
    fit = ((positives > 0) & (positives < 1)).numpy()
    result = np.full(y.shape[1], np.nan)
    if not fit.any():
        return result
    x_train, y_train = x[:cut], y[:cut][:, fit]
    rows = np.arange(cut)
    fold_scores = []
    for held in np.array_split(rows, PROBE_FOLDS):
        kept = np.setdiff1d(rows, held)
        fold_scores.append(
            _probe_accuracy(x_train[kept], y_train[kept], x_train[held], y_train[held].numpy(), max_iter)
        )
    per_fold = np.array(fold_scores)
    measured = np.isfinite(per_fold)
    cv_accuracy = np.where(measured, per_fold, 0).sum(0) / np.maximum(measured.sum(0), 1)
    chosen = cv_accuracy.argmax(0)
    accuracy = _probe_accuracy(x_train, y_train, x[cut:], y[cut:][:, fit].numpy(), max_iter)
    result[fit] = accuracy[chosen, np.arange(len(chosen))]
    return result


def probe_summary(accuracy: np.ndarray, class_names: tuple[str, ...], features: str) -> dict:
    """Balanced accuracy per class and their mean (None where not measurable)."""
    return {
        "features": features,
        "balanced_accuracy": {
            name: None if math.isnan(value) else float(value) for name, value in zip(class_names, accuracy)
        },
        "mean": _mean_or_none(accuracy),
        "train_fraction": PROBE_TRAIN_FRACTION,
    }


def downsampled_pixels(x: torch.Tensor) -> torch.Tensor:
    """(N, 3 * 16 * 16) area-averaged pixels: the probe's reference features."""
    return F.avg_pool2d(x, x.shape[-1] // PROBE_PIXELS).flatten(1)
