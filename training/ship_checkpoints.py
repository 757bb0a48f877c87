"""Ship evaluated training runs: copy their best models into checkpoints/ and write the model card.

    python training/ship_checkpoints.py runs/Conv_Unpool runs/VAE_Alex ... [--out checkpoints]

Each RUN_DIR must hold ``RUN.pt`` evaluated by ``training/evaluate.py`` (its metadata then
carries the metrics). The model card ``README.md`` is written from those metadata alone, so
every figure in it comes from the evaluation of exactly the file that is shipped.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from gym_autoencoder.atomic import atomic_path, atomic_write_text
from gym_autoencoder.checkpoint import load_checkpoint
from gym_autoencoder.errors import GymAutoencoderError
from gym_autoencoder.registration import ENV_ARCHITECTURES
from gym_autoencoder.model_stubs import MODEL_NAMES
from gym_autoencoder.training.metrics import PROBE_FOLDS

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
ENV_IDS = {architecture: env_id for env_id, architecture in ENV_ARCHITECTURES.items()}
# The bars a shipped model is held to: PSNR (dB), latent probe mean, object fidelity mean.
PSNR_BAR, PROBE_BAR = 22.0, 0.90
FIDELITY_BARS = {"Conv_Unpool": 0.95, "VAE_Alex": 0.95}
FIDELITY_BAR = 0.80
CONV_UNPOOL_PSNR_BAR = 33.0


class ShipError(GymAutoencoderError):
    """A run cannot be shipped (not evaluated, or not one of the six architectures)."""


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def shipped_entry(run_dir: Path) -> dict[str, Any]:
    """The run's best model, its metadata and metrics, checked to be shippable."""
    path = run_dir / f"{run_dir.name}.pt"
    model, metadata = load_checkpoint(path)
    architecture = type(model).__name__
    metrics = metadata.get("metrics")
    if architecture not in MODEL_NAMES or not metrics:
        raise ShipError(f"{path} has no evaluation metrics; run: python training/evaluate.py {run_dir}")
    if isinstance(metrics.get("latent_probe"), dict) and "absent" in metrics["latent_probe"]:
        raise ShipError(f"{path} was evaluated without labels; evaluate it on a labelled data set")
    return {
        "run_dir": run_dir, "path": path, "architecture": architecture, "metadata": metadata,
        "metrics": metrics, "parameters": sum(p.numel() for p in model.parameters()),
        "encoding_shape": tuple(model.encoding_shape),
    }


def loss_text(recipe: dict[str, Any]) -> str:
    """The loss settings of a recipe, as the card states them."""
    balance = " (class-balanced)" if recipe.get("object_class_balance") else ""
    visibility = recipe.get("visibility_weight", 0.0)
    head = f", visibility head weight {visibility}" if visibility else ""
    return (f"object pixel weight {recipe.get('object_pixel_weight')}{balance}, "
            f"loss reduction {recipe.get('loss_reduction', 'mean')}{head}")


def rates_text(recipe: dict[str, Any], rates: list[float] | None) -> str:
    """The learning rates a run used, from its per-epoch history when there is one: the recipe of a
    run resumed with a new rate holds only that last rate."""
    schedule = recipe.get("lr_schedule")
    if not rates:
        return f"lr {recipe.get('learning_rate')} ({schedule})"
    high, low = max(rates), min(rates)
    return f"lr {high:.2g} ({schedule})" if high == low else f"lr {high:.2g} down to {low:.2g} ({schedule})"


def epochs_text(training: dict[str, Any]) -> str:
    """Epochs trained, as ``before + this run`` when the run started from a checkpoint's weights."""
    lineage = training.get("initialised_from")
    own = training["epochs_trained"]
    return f"{lineage['epochs']} + {own}" if lineage else str(own)


def lineage_text(training: dict[str, Any]) -> str:
    """Where a fine-tuned model's starting weights came from, or "" for a run from scratch."""
    lineage = training.get("initialised_from")
    if not lineage:
        return ""
    prior = lineage.get("recipe") or {}
    measured = "" if lineage.get("psnr_db") is None else f"PSNR {lineage['psnr_db']:.2f} dB; "
    return (
        f" It started from the weights of a model trained {lineage['epochs']} epochs ({measured}"
        f"{rates_text(prior, lineage.get('learning_rates'))}, {loss_text(prior)}), with a fresh optimiser."
    )


def bars(entry: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(bar, measured, met) for each bar the model is held to."""
    metrics, architecture = entry["metrics"], entry["architecture"]
    psnr = metrics["test"]["psnr_db"]
    probe = metrics["latent_probe"]["mean"] or 0.0
    fidelity = metrics["object_fidelity"]["mean"] or 0.0
    fidelity_bar = FIDELITY_BARS.get(architecture, FIDELITY_BAR)
    rows = [
        (f"PSNR >= {PSNR_BAR:g} dB", f"{psnr:.2f}", psnr >= PSNR_BAR),
        (f"latent probe >= {PROBE_BAR:.2f}", f"{probe:.3f}", probe >= PROBE_BAR),
        (f"object fidelity >= {fidelity_bar:.2f}", f"{fidelity:.3f}", fidelity >= fidelity_bar),
    ]
    if architecture == "Conv_Unpool":
        rows.append((f"PSNR >= {CONV_UNPOOL_PSNR_BAR:g} dB", f"{psnr:.2f}", psnr >= CONV_UNPOOL_PSNR_BAR))
    return rows


def model_section(entry: dict[str, Any]) -> str:
    """The model card's section for one shipped model."""
    architecture, metrics, metadata = entry["architecture"], entry["metrics"], entry["metadata"]
    recipe = metadata.get("recipe", {})
    training = metrics["training"]
    test = metrics["test"]
    shape = " x ".join(map(str, entry["encoding_shape"]))
    floats = int(np.prod(entry["encoding_shape"]))
    fidelity = metrics["object_fidelity"]
    latent, pixel = metrics["latent_probe"], metrics["pixel_probe"]
    lines = [
        f"## {architecture} (`{ENV_IDS[architecture]}`)",
        "",
        f"![{architecture} reconstructions]({architecture.lower()}_recon_grid.png)",
        "",
        f"- Encoding: {shape} = {floats} floats; parameters: {entry['parameters']:,}.",
        f"- Architecture arguments: `{metadata.get('arch_kwargs', recipe.get('arch', {}))}`.",
        f"- Data: {metrics['data']['test_frames']} held-out test frames of levels no training run saw "
        f"(level-disjoint split of `{Path(metrics['data']['dir']).name}`); "
        f"training frames: {metadata.get('data', {}).get('train_frames')}.",
        f"- Recipe: Adam, {rates_text(recipe, (training.get('history') or {}).get('lr'))}, batch "
        f"{recipe.get('batch_size')}, weight decay {recipe.get('weight_decay')}, "
        f"{loss_text(recipe)}, seed {recipe.get('seed')}.",
        f"- Epochs: {training['epochs_trained']} trained (limit {recipe.get('epochs')}), best epoch "
        f"{training['best_epoch']}, test loss {_fmt(training['best_test_loss'], 6)}; "
        f"stopped: {training['stop_reason'] or 'not recorded (evaluated apart from its training state)'}."
        f"{lineage_text(training)}",
        f"- Test: MSE {test['mse']:.5f}, PSNR {test['psnr_db']:.2f} dB, SSIM {test['ssim']:.4f}"
        + (f"; PSNR with the latent zeroed (pooling indices only): {test['psnr_zeroed_latent_db']:.2f} dB"
           if "psnr_zeroed_latent_db" in test else "") + ".",
        "",
        "| class | objects | faithful share | latent probe | pixel probe |",
        "|---|---|---|---|---|",
    ]
    for name, per_class in fidelity["per_class"].items():
        lines.append(
            f"| {name} | {per_class['objects']} | {_fmt(per_class['faithful_share'], 3)} | "
            f"{_fmt(latent['balanced_accuracy'][name], 3)} | {_fmt(pixel['balanced_accuracy'][name], 3)} |"
        )
    lines.append(
        f"| **mean** | | **{_fmt(fidelity['mean'], 3)}** | **{_fmt(latent['mean'], 3)}** | "
        f"{_fmt(pixel['mean'], 3)} |"
    )
    lines += ["", "| bar | measured | met |", "|---|---|---|"]
    lines += [f"| {bar} | {value} | {'yes' if met else '**no**'} |" for bar, value, met in bars(entry)]
    return "\n".join(lines) + "\n"


def model_card(entries: list[dict[str, Any]], notes: str) -> str:
    """The whole model card: how to read it, a summary table, one section per model."""
    header = [
        "# Shipped checkpoints: model card",
        "",
        "Loaded by `gymnasium.make(\"gym_autoencoder:<id>\")` and `gym_autoencoder.load_model(\"<name>\")`.",
        "Every figure below was computed by `training/evaluate.py` on the shipped file itself, on the",
        "held-out test split (levels that no training run saw), and written here by",
        "`training/ship_checkpoints.py` from the checkpoint's metadata.",
        "",
        "Metrics: PSNR on [0, 1] pixels; object fidelity = share of keys, locks and gems (with at least",
        "8 visible sprite pixels) whose sprite pixels are reconstructed with a mean absolute RGB error",
        "below 0.15, per class and the unweighted mean over the 7 classes; latent probe = balanced",
        "accuracy of a logistic regression on standardised encodings (2/3 of the test frames to fit,",
        f"its L2 penalty chosen by {PROBE_FOLDS}-fold cross-validation within them, 1/3 to score)",
        "predicting each class's visibility; pixel probe = the same on 16x16 pixels.",
        "",
        "| model | env id | encoding | parameters | epochs | PSNR dB | fidelity | latent probe | pixel probe |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in entries:
        m = entry["metrics"]
        header.append(
            f"| {entry['architecture']} | `{ENV_IDS[entry['architecture']]}` | "
            f"{int(np.prod(entry['encoding_shape']))} | {entry['parameters']:,} | "
            f"{epochs_text(m['training'])} | {m['test']['psnr_db']:.2f} | "
            f"{_fmt(m['object_fidelity']['mean'], 3)} | {_fmt(m['latent_probe']['mean'], 3)} | "
            f"{_fmt(m['pixel_probe']['mean'], 3)} |"
        )
    body = [model_section(entry) for entry in entries]
    notes_part = ["## Notes", "", notes.strip(), ""] if notes.strip() else []
    return "\n".join(header + [""] + notes_part) + "\n" + "\n".join(body)


def ship(run_dirs: list[Path], out_dir: Path, notes: str = "") -> list[dict[str, Any]]:
    """Copy each run's best model and grid into ``out_dir`` and write ``out_dir/README.md``."""
    entries = [shipped_entry(Path(run_dir)) for run_dir in run_dirs]
    entries.sort(key=lambda e: MODEL_NAMES.index(e["architecture"]))
    for entry in entries:
        stem = entry["architecture"].lower()
        for source, name in ((entry["path"], f"{stem}.pt"),
                             (entry["run_dir"] / "recon_grid.png", f"{stem}_recon_grid.png")):
            with atomic_path(out_dir / name) as tmp:
                shutil.copyfile(source, tmp)
    atomic_write_text(out_dir / "README.md", model_card(entries, notes))
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ship_checkpoints.py", description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="evaluated run directories")
    parser.add_argument("--out", type=Path, default=PACKAGE_ROOT / "checkpoints",
                        help="where to ship (default: the package's checkpoints/ folder)")
    parser.add_argument("--notes", type=Path, help="a markdown file added to the card's Notes section")
    args = parser.parse_args(argv)
    try:
        notes = args.notes.read_text() if args.notes else ""
        entries = ship(args.run_dirs, args.out, notes)
    except (GymAutoencoderError, OSError) as err:
        print(f"ship_checkpoints.py: error: {err}", file=sys.stderr)
        return 1
    for entry in entries:
        print(f"shipped {entry['architecture']}: " + ", ".join(
            f"{bar} {value} ({'met' if met else 'NOT met'})" for bar, value, met in bars(entry)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
