"""Evaluate a trained run: ``python training/evaluate.py RUN_DIR``.

Reads ``RUN_DIR/RUN.pt`` (the best model) and the test frames it was trained against, and
writes into RUN_DIR: ``summary.txt``, ``reconstruction.mp4``, ``recon_grid.png``,
``loss_curve.png``, ``metrics.json``, ``metrics.npz`` and, for the VAEs,
``vae_samples.png`` and ``latent_walk.png``. The metrics are also stored in the
metadata of ``RUN.pt``. :func:`compute_evaluation` computes the metrics and the artefacts'
contents, :func:`write_evaluation` writes them. Metric definitions: see ``training/metrics.py``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from gym_autoencoder.data_generation.heist_oracle import DIRECTIONS
from gym_autoencoder.data_generation.labels import OBJECT_CLASSES
from gym_autoencoder.atomic import atomic_path, atomic_write_text, check_writable, storage_errors
from gym_autoencoder.autoencoder import resolve_device
from gym_autoencoder.checkpoint import load_checkpoint, save_checkpoint
from gym_autoencoder.errors import CheckpointError, GymAutoencoderError, OneLineParser, report_error
from gym_autoencoder.preprocessing import tensor_to_frames
from gym_autoencoder.model_stubs import BaseAutoencoder, Conv_Unpool
from gym_autoencoder.model_stubs.vae_base import WorldModelsVAE
from gym_autoencoder.training import metrics, report
from gym_autoencoder.training.config import EvaluationSettings, check_device, default_config, stored_recipe
from gym_autoencoder.training.data import DataError, Split, open_split
from gym_autoencoder.training.loop import TrainingState, read_state


@dataclass
class EvaluationPass:
    """Everything one pass over the test frames yields."""

    mse: list[np.ndarray] = field(default_factory=list)
    psnr: list[np.ndarray] = field(default_factory=list)
    ssim: list[np.ndarray] = field(default_factory=list)
    psnr_zeroed_latent: list[np.ndarray] = field(default_factory=list)
    object_errors: list[np.ndarray] = field(default_factory=list)
    encodings: list[np.ndarray] = field(default_factory=list)
    pixels: list[np.ndarray] = field(default_factory=list)
    inputs: list[np.ndarray] = field(default_factory=list)
    recons: list[np.ndarray] = field(default_factory=list)

    def stacked(self, name: str) -> np.ndarray | None:
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else None


def zeroed_latent_reconstruction(model: Conv_Unpool, x: torch.Tensor) -> torch.Tensor:
    """Conv_Unpool's output when its 32x6x6 encoding is zeroed: what the pooling indices alone give."""
    encoding, indices = model.encode_with_indices(x)
    return model.decode_with_indices(torch.zeros_like(encoding), indices)


def evaluation_pass(
    model: BaseAutoencoder, split: Split, device: torch.device, batch_size: int, keep_frames: int,
    labels: dict[str, np.ndarray] | None,
) -> EvaluationPass:
    """Reconstruct every test frame once and collect the per-frame numbers and encodings."""
    result = EvaluationPass()
    with torch.inference_mode():
        starts = range(0, len(split), batch_size)
        for start in tqdm(starts, desc="evaluating", unit="batch", disable=None, leave=False):
            rows = slice(start, start + batch_size)
            x = split.batch(rows, device)
            recon = model.reconstruct(x)
            result.mse.append(metrics.frame_mse(x, recon).cpu().numpy())
            result.psnr.append(metrics.psnr(x, recon).cpu().numpy())
            result.ssim.append(metrics.ssim(x, recon).cpu().numpy())
            result.encodings.append(model.encode(x).flatten(1).float().cpu().numpy())
            result.pixels.append(metrics.downsampled_pixels(x).cpu().numpy())
            if isinstance(model, Conv_Unpool):
                zeroed = zeroed_latent_reconstruction(model, x)
                result.psnr_zeroed_latent.append(metrics.psnr(x, zeroed).cpu().numpy())
            if labels is not None:
                result.object_errors.append(metrics.object_errors(
                    x, recon, labels["object_mask"][rows], labels["pixel_counts"][rows]
                ))
            if start < keep_frames:
                result.inputs.append(tensor_to_frames(x))
                result.recons.append(tensor_to_frames(recon))
    return result


def label_arrays(split: Split) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """The label arrays the metrics need, or None and the reason they are absent."""
    if split.labels_path is None:
        return None, f"no test_labels.npz next to the test frames ({split.name} split)"
    arrays = {key: split.label(key) for key in ("object_mask", "pixel_counts", "visible")}
    missing = [key for key, value in arrays.items() if value is None]
    if missing:
        return None, f"{split.labels_path} lacks {', '.join(missing)}"
    arrays["oracle_direction"] = split.label("oracle_direction")  # None in data sets made before it
    return arrays, None


def training_history(
    run_dir: Path, metadata: dict[str, Any]
) -> tuple[dict[str, list[float]] | None, str | None]:
    """Loss history of the run (from its training state, else from the checkpoint) and why it stopped."""
    state_path = run_dir / "checkpoints" / "last.pt"
    if state_path.is_file():
        payload = read_state(state_path)
        recipe = stored_recipe(payload["recipe"], checked=False)
        return payload["state"]["history"], TrainingState(**payload["state"]).stop_reason(recipe)
    return metadata.get("history"), None


def json_ready(value: Any) -> Any:
    """``value`` with NaN and infinities as None, numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _header(
    run_dir: Path, model: BaseAutoencoder, metadata: dict[str, Any], history: dict | None
) -> list[str]:
    shape = " x ".join(map(str, model.encoding_shape))
    floats = int(np.prod(model.encoding_shape))
    data = metadata.get("data", {})
    lines = [
        f"run {run_dir.name}: {type(model).__name__}, encoding {shape} = {floats} floats",
        f"architecture arguments: {dict(model.config)}",
        f"data: {data.get('dir')} ({data.get('train_frames')} training, "
        f"{data.get('test_frames')} test frames)",
    ]
    if history:
        lines.append(
            f"trained {len(history['test_loss'])} epochs; best epoch {metadata.get('epoch')} "
            f"with test loss {metadata.get('test_loss'):.6f}"
        )
    return lines


def reconstruction_metrics(model: BaseAutoencoder, result: EvaluationPass) -> tuple[dict, dict]:
    """Test MSE, PSNR, SSIM (and Conv_Unpool's PSNR from the indices alone), with per-frame arrays."""
    arrays = {"frame_mse": result.stacked("mse"), "frame_psnr": result.stacked("psnr"),
              "frame_ssim": result.stacked("ssim")}
    values = {"mse": float(arrays["frame_mse"].mean()), "psnr_db": float(arrays["frame_psnr"].mean()),
              "ssim": float(arrays["frame_ssim"].mean())}
    if isinstance(model, Conv_Unpool):
        arrays["frame_psnr_zeroed_latent"] = result.stacked("psnr_zeroed_latent")
        values["psnr_zeroed_latent_db"] = float(arrays["frame_psnr_zeroed_latent"].mean())
    return values, arrays


def label_metrics(result: EvaluationPass, labels: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """Object fidelity, the latent and pixel visibility probes and the policy probe, with their arrays."""
    arrays = {"object_errors": result.stacked("object_errors")}
    values = {"object_fidelity": metrics.fidelity_summary(arrays["object_errors"], OBJECT_CLASSES)}
    for key, features, described in (
        ("latent_probe", result.stacked("encodings"), "standardised encodings"),
        ("pixel_probe", result.stacked("pixels"), "standardised 16x16 area-averaged pixels"),
    ):
        arrays[key] = metrics.logistic_probe(features, labels["visible"])
        values[key] = metrics.probe_summary(arrays[key], OBJECT_CLASSES, described)
    values["policy_probe"] = policy_probe(result, labels)
    return values, arrays


def policy_probe(result: EvaluationPass, labels: dict[str, np.ndarray]) -> dict[str, Any]:
    """How well the encoding, and 16x16 pixels for reference, tell the oracle direction."""
    directions = labels["oracle_direction"]
    if directions is None:
        return {"absent": "the test labels hold no oracle_direction (made before it); regenerate the data"}
    return {
        "latent": metrics.policy_probe(result.stacked("encodings"), directions),
        "pixels": metrics.policy_probe(result.stacked("pixels"), directions),
        "frames": int((directions >= 0).sum()),
        "chance": 1 / len(DIRECTIONS),
        "directions": list(DIRECTIONS),
    }


def vae_views(
    model: WorldModelsVAE, split: Split, mu: torch.Tensor, settings: EvaluationSettings, seed: int
) -> dict[str, np.ndarray]:
    """vae_samples.png and latent_walk.png (from test frame 0 to the test frame whose mean is
    farthest), by file name."""
    samples = report.vae_samples(model, mu, settings.vae_samples, seed)
    far = int(torch.linalg.vector_norm(mu - mu[0], dim=1).argmax())
    walk = report.latent_walk(model, mu[0], mu[far], settings.latent_walk_steps)
    strip = np.concatenate([split.frames[[0]], walk, split.frames[[far]]])
    return {"vae_samples.png": report.tile(samples, min(report.GRID_COLUMNS, len(samples))),
            "latent_walk.png": report.tile(strip, len(strip))}


@dataclass
class Evaluation:
    """A model's evaluation, computed and not yet written: its metrics and the artefacts' contents."""

    model: BaseAutoencoder
    metadata: dict[str, Any]  # the checkpoint's
    settings: EvaluationSettings
    values: dict[str, Any]  # the metrics (metrics.json without its list of files), JSON-ready
    arrays: dict[str, np.ndarray]  # metrics.npz
    summary: str  # summary.txt
    inputs: np.ndarray  # the video's test frames and their reconstructions
    recons: np.ndarray
    history: dict[str, list[float]] | None  # the losses per epoch for the loss curve; None without any
    images: dict[str, np.ndarray]  # further pictures by file name: a VAE's samples and latent walk


def compute_evaluation(
    run_dir: Path,
    checkpoint: Path,
    data_dir: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    evaluation: dict[str, Any] | None = None,
) -> Evaluation:
    """Evaluate the model of ``checkpoint`` (of run ``run_dir``) on its test frames; writes nothing.

    ``evaluation`` overrides settings of the recipe's evaluation section.
    """
    model, metadata = load_checkpoint(checkpoint)
    defaults, recipe = default_config(), metadata.get("recipe", {})
    settings = EvaluationSettings.from_dict(
        {**defaults["evaluation"], **recipe.get("evaluation", {}), **(evaluation or {})}, "evaluation."
    )
    data_dir = data_dir or metadata.get("data", {}).get("dir")
    if data_dir is None:
        raise DataError("the checkpoint does not say which data it was trained on; pass --data-dir")
    split = open_split(Path(data_dir), "test")
    device = resolve_device(device)
    model = model.to(device).eval()
    labels, labels_absent = label_arrays(split)
    history, stop_reason = training_history(run_dir, metadata)

    keep = settings.video_frames
    batch_size = recipe.get("eval_batch_size", defaults["eval_batch_size"])
    result = evaluation_pass(model, split, device, batch_size, keep, labels)
    test_values, arrays = reconstruction_metrics(model, result)
    curve = history if history and history["test_loss"] else None
    if curve:
        arrays.update({f"history_{key}": np.asarray(series) for key, series in curve.items()})
    images = {}
    if isinstance(model, WorldModelsVAE):
        mu = torch.as_tensor(result.stacked("encodings"), device=device)
        images = vae_views(model, split, mu, settings, recipe.get("seed", defaults["seed"]))

    values: dict[str, Any] = {
        "run": run_dir.name,
        "architecture": type(model).__name__,
        "encoding_shape": list(model.encoding_shape),
        "checkpoint": str(checkpoint.resolve()),
        "data": {
            "dir": str(Path(data_dir).resolve()), "test_frames": len(split), "labels": labels is not None,
        },
        "training": {
            "epochs_trained": len(history["test_loss"]) if history else None,
            "best_epoch": metadata.get("epoch"),
            "best_test_loss": metadata.get("test_loss"),
            "stop_reason": stop_reason,
            "initialised_from": metadata.get("initialised_from"),
            "history": history,
        },
        "test": test_values,
    }
    if labels is None:
        absent = {"absent": labels_absent}
        values.update(object_fidelity=absent, latent_probe=absent, pixel_probe=absent, policy_probe=absent)
    else:
        label_values, label_array = label_metrics(result, labels)
        values.update(label_values)
        arrays.update(label_array)
    repeats, warmup = settings.timing_repeats, settings.timing_warmup
    values["timing_ms_per_frame"] = report.timing(model, split.batch(slice(0, 64), "cpu"), repeats, warmup)
    values["threads"] = torch.get_num_threads()
    values = json_ready(values)
    summary = report.summary_text(model, _header(run_dir, model, metadata, history),
                                  values["timing_ms_per_frame"], repeats, warmup)
    return Evaluation(model, metadata, settings, values, arrays, summary, result.stacked("inputs")[:keep],
                      result.stacked("recons")[:keep], curve, images)


def write_evaluation(run_dir: Path, evaluation: Evaluation, checkpoint: Path | None = None) -> dict[str, Any]:
    """Write the artefacts of ``evaluation`` into ``run_dir`` and, given ``checkpoint`` (the file
    evaluated), store the metrics in its metadata. Returns the metrics with the files written."""
    run_dir.mkdir(parents=True, exist_ok=True)
    inputs, recons, settings = evaluation.inputs, evaluation.recons, evaluation.settings
    video = report.write_video(run_dir, inputs, recons, evaluation.arrays["frame_mse"], settings.video_fps,
                               settings.video_scale)
    report.write_recon_grid(run_dir / "recon_grid.png", inputs, recons)
    written = [video.name, "recon_grid.png", "summary.txt", "metrics.json", "metrics.npz"]
    if evaluation.history:
        report.plot_loss_curve(run_dir / "loss_curve.png", evaluation.history, evaluation.metadata.get("epoch"))
        written.append("loss_curve.png")
    for name, image in evaluation.images.items():
        report.save_png(run_dir / name, image)
        written.append(name)
    values = {**evaluation.values, "files": sorted(written)}
    atomic_write_text(run_dir / "summary.txt", evaluation.summary)
    atomic_write_text(run_dir / "metrics.json", json.dumps(values, indent=2) + "\n")
    with atomic_path(run_dir / "metrics.npz", suffix=".npz") as tmp:
        np.savez(tmp, class_names=np.array(OBJECT_CLASSES), **evaluation.arrays)
    if checkpoint is not None:
        save_checkpoint(checkpoint, evaluation.model, {**evaluation.metadata, "metrics": values})
    return values


def evaluate_run(
    run_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    checkpoint: str | os.PathLike | None = None,
    evaluation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate the best model of ``run_dir`` (or ``checkpoint``) and write the artefacts there;
    the run's own checkpoint also gets the metrics in its metadata.

    ``evaluation`` overrides settings of the recipe's evaluation section. Returns the metrics.
    """
    run_dir = Path(run_dir)
    own_checkpoint = run_dir / f"{run_dir.name}.pt"
    if checkpoint is None and not own_checkpoint.is_file():
        raise CheckpointError(
            f"{run_dir} holds no run: {own_checkpoint.name} is missing; pass a directory written by "
            "autoencoder_training.py, or a checkpoint with --checkpoint FILE"
        )
    if isinstance(device, str):
        check_device(device)
    check_writable(run_dir, "evaluate a writable copy of the run directory")
    checkpoint = Path(checkpoint or own_checkpoint)
    computed = compute_evaluation(run_dir, checkpoint, data_dir, device, evaluation)
    with storage_errors(run_dir, "evaluate a copy of the run directory on a disk with room"):
        return write_evaluation(run_dir, computed, checkpoint if checkpoint == own_checkpoint else None)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        allow_abbrev=False,
        prog="evaluate.py",
        description="Evaluate a training run and write its reports into the run directory.",
    )
    parser.add_argument("run_dir", help="a directory written by autoencoder_training.py (holds RUN.pt)")
    parser.add_argument("--data-dir", help="test data to use instead of the data the run was trained on")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--checkpoint", help="evaluate this checkpoint instead of RUN_DIR/RUN.pt "
                        "(its metadata is then left unchanged)")
    parser.add_argument("--timing-repeats", type=int, help="timed repetitions per measurement")
    parser.add_argument("--video-frames", type=int, help="test frames in the video")
    args = parser.parse_args(argv)
    overrides = {key: value for key, value in (
        ("timing_repeats", args.timing_repeats), ("video_frames", args.video_frames)) if value is not None}
    if any(value < 1 for value in overrides.values()):
        parser.error("--timing-repeats and --video-frames must be positive")
    try:
        values = evaluate_run(args.run_dir, args.data_dir, args.device, args.checkpoint, overrides)
    except (GymAutoencoderError, OSError) as err:
        return report_error(err, "evaluate.py")
    test = values["test"]
    print(f"{values['run']}: test MSE {test['mse']:.6f}, PSNR {test['psnr_db']:.2f} dB, "
          f"SSIM {test['ssim']:.4f}; reports in {args.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
