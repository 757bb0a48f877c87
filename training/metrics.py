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
* Probes (scikit-learn's logistic regression): standardised features, trained on the first 2/3
  of the test frames and scored on the rest by balanced accuracy (the mean recall over the
  classes), classes weighted to balance in training. The L2 penalty (C = 1 / l2 for l2 in
  PROBE_L2_GRID) is chosen by 3-fold stratified cross-validation on the training rows alone:
  wide encodings (1152 floats) need a stronger penalty than 32-float ones, and the scored third
  never takes part in the choice. The visibility probe fits one such probe per object class
  ("this class is visible"); the policy probe one over the four oracle directions (the first
  step towards the agent's goal, data_generation/heist_oracle.py; chance 0.25), on the frames
  that have one.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gym_autoencoder.model_stubs.base import ERROR_FLOOR

FIDELITY_THRESHOLD = 0.15
FIDELITY_MIN_PIXELS = 8
PROBE_TRAIN_FRACTION = 2 / 3
PROBE_PIXELS = 16
PROBE_L2_GRID = (1.0, 10.0, 100.0, 1000.0)
PROBE_FOLDS = 3
PROBE_MAX_ITER = 500
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
    """The mean recall over the classes of ``truth``; NaN unless it holds at least two classes."""
    if len(np.unique(truth)) < 2:
        return math.nan
    return float(balanced_accuracy_score(truth, predicted))


def probe_accuracy(features: np.ndarray, target: np.ndarray) -> float:
    """Balanced accuracy of a logistic probe from ``features`` to the classes of ``target``.

    Fitted on the first PROBE_TRAIN_FRACTION of the rows (standardised, classes weighted to
    balance, the penalty chosen by PROBE_FOLDS-fold cross-validation on those rows alone) and
    scored on the rest; NaN where a class has fewer fitted rows than folds or the scored rows
    hold fewer than two classes.
    """
    x = np.asarray(features, np.float32).reshape(len(features), -1)
    cut = int(round(len(x) * PROBE_TRAIN_FRACTION))
    classes, counts = np.unique(target[:cut], return_counts=True)
    if len(classes) < 2 or counts.min() < PROBE_FOLDS or len(np.unique(target[cut:])) < 2:
        return math.nan
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=PROBE_MAX_ITER)),
        {"logisticregression__C": [1.0 / l2 for l2 in PROBE_L2_GRID]},
        cv=PROBE_FOLDS,
        scoring="balanced_accuracy",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(x[:cut], target[:cut])
    return balanced_accuracy(target[cut:], search.predict(x[cut:]))


def logistic_probe(features: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(K,) :func:`probe_accuracy` of each column of the (N, K) bool ``targets``."""
    return np.array([probe_accuracy(features, targets[:, k]) for k in range(targets.shape[1])])


def policy_probe(features: np.ndarray, directions: np.ndarray) -> float:
    """:func:`probe_accuracy` of the oracle direction (4 classes, chance 0.25) on the frames that have one."""
    known = directions >= 0
    return probe_accuracy(np.asarray(features)[known], directions[known])


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
