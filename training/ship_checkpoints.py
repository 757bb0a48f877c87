"""Ship evaluated training runs into checkpoints/ and render the model card from what is shipped.

    python training/ship_checkpoints.py runs/Conv_Unpool runs/VAE_Alex ... [--out checkpoints]
    python training/ship_checkpoints.py --card-only [--out checkpoints]

Each RUN_DIR must hold ``RUN.pt`` evaluated by ``training/evaluate.py`` (its metadata then
carries the metrics); shipping copies it and its reconstruction grid into the output folder.
Either way the model card ``README.md`` is then rendered from every checkpoint in that folder
(their metadata: data, recipe, lineage, metrics) and from the notes file beside them
(``model_card_notes.md``, kept in the repository, not installed), so the card can be
regenerated from the repository alone and every figure in it either comes from the evaluation
of exactly the file that is shipped or is a measurement the notes state with its command.

The notes file: text before its first ``## `` heading describes the file and is not rendered; a
``## <architecture>`` section becomes that model's "Intended use and limitations"; every other
``## `` section is rendered after the summary table, in the file's order.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from gym_autoencoder.atomic import atomic_path, atomic_write_text
from gym_autoencoder.checkpoint import load_checkpoint
from gym_autoencoder.errors import GymAutoencoderError, OneLineParser, report_error
from gym_autoencoder.model_stubs import MODEL_NAMES
from gym_autoencoder.registration import ENV_ARCHITECTURES
from gym_autoencoder.training.metrics import (
    FIDELITY_MIN_PIXELS, FIDELITY_THRESHOLD, PROBE_FOLDS, PROBE_PIXELS,
)

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_DIR = PACKAGE_ROOT / "checkpoints"
CARD_NAME = "README.md"
NOTES_NAME = "model_card_notes.md"
ENV_IDS = {architecture: env_id for env_id, architecture in ENV_ARCHITECTURES.items()}
# Quality thresholds each model is compared with: PSNR (dB), latent probe mean, object fidelity mean.
PSNR_THRESHOLD, PROBE_THRESHOLD = 22.0, 0.90
FIDELITY_THRESHOLDS = {"Conv_Unpool": 0.95, "VAE_Alex": 0.95}
FIDELITY_DEFAULT_THRESHOLD = 0.80
CONV_UNPOOL_PSNR_THRESHOLD = 33.0
FRONT_MATTER_TAGS = ("autoencoder", "variational-autoencoder", "procgen", "heist", "gymnasium",
                     "reinforcement-learning", "representation-learning")
FRONT_MATTER_METRICS = ("mse", "psnr", "ssim", "object_fidelity", "balanced_accuracy")


class ShipError(GymAutoencoderError):
    """A run cannot be shipped (not evaluated, or not one of the six architectures)."""


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _folder(path: str | None) -> str:
    """A data folder's name only: the card holds no path of the machine that trained the model."""
    return f"`{PurePath(path).name}`" if path else "not recorded"


def checkpoint_entry(path: Path) -> dict[str, Any]:
    """An evaluated checkpoint's model facts, metadata and metrics, checked to be shippable."""
    model, metadata = load_checkpoint(path)
    architecture = type(model).__name__
    metrics = metadata.get("metrics")
    if architecture not in MODEL_NAMES or not metrics:
        raise ShipError(f"{path} has no evaluation metrics; run: python training/evaluate.py {path.parent}")
    if isinstance(metrics.get("latent_probe"), dict) and "absent" in metrics["latent_probe"]:
        raise ShipError(f"{path} was evaluated without labels; evaluate it on a labelled data set")
    return {
        "path": path, "architecture": architecture, "metadata": metadata, "metrics": metrics,
        "parameters": sum(p.numel() for p in model.parameters()),
        "encoding_shape": tuple(model.encoding_shape),
    }


def shipped_entries(directory: Path) -> list[dict[str, Any]]:
    """Every checkpoint in ``directory``, in the registry's order of architectures."""
    entries = [checkpoint_entry(path) for path in sorted(Path(directory).glob("*.pt"))]
    for entry in entries:
        if entry["path"].name != f"{entry['architecture'].lower()}.pt":
            raise ShipError(f"{entry['path']} holds a {entry['architecture']} model; a shipped checkpoint is "
                            f"named after its architecture ({entry['architecture'].lower()}.pt): rename or remove it")
    return sorted(entries, key=lambda e: MODEL_NAMES.index(e["architecture"]))


def loss_text(recipe: dict[str, Any]) -> str:
    """The loss settings of a recipe, as the card states them."""
    balance = " (class-balanced)" if recipe.get("object_class_balance") else ""
    heads = "".join(f", {name} head weight {recipe[f'{name}_weight']}"
                    for name in ("visibility", "state") if recipe.get(f"{name}_weight"))
    return (f"object pixel weight {recipe.get('object_pixel_weight')}{balance}, "
            f"loss reduction {recipe.get('loss_reduction', 'mean')}{heads}")


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


def weights_name(source: str | None) -> str:
    """How the lineage table names a set of weights: a run's name (``runs/NAME/NAME.pt``), a shipped
    model's name, or a checkpoint's file name; never a path of the machine that trained them."""
    if not source:
        return "random initialisation"
    if source in MODEL_NAMES:
        return f"`{source}` (the checkpoint shipped under that name at the time)"
    path = PurePath(source)
    return f"`{path.stem if path.parent.name == path.stem else path.name}`"


def lineage_rows(training: dict[str, Any], recipe: dict[str, Any], run: str, psnr_db: float) -> list[str]:
    """The lineage table, oldest first: each row's weights were trained from the row above's. The
    first row names where the chain starts (the metadata records no more of it); then the weights
    this run started from, when it did (their epochs count everything behind them); then this file."""
    lineage = training.get("initialised_from")
    prior = (lineage.get("recipe") or {}) if lineage else recipe
    rows = [
        "| weights | data | learning rate | loss | epochs | test PSNR dB |",
        "|---|---|---|---|---|---|",
        f"| {weights_name(prior.get('init_from'))} | | | | | |",
    ]
    if lineage:
        psnr = lineage.get("psnr_db")
        rows.append(
            f"| {weights_name(lineage.get('checkpoint'))} | {_folder(prior.get('data_dir'))} | "
            f"{rates_text(prior, lineage.get('learning_rates'))} | {loss_text(prior)} | {lineage['epochs']} | "
            f"{'not recorded' if psnr is None else f'{psnr:.2f}'} |"
        )
    rows.append(
        f"| `{run}` (this file) | {_folder(recipe.get('data_dir'))} | "
        f"{rates_text(recipe, (training.get('history') or {}).get('lr'))} | {loss_text(recipe)} | "
        f"{epochs_text(training)} | {psnr_db:.2f} |"
    )
    return rows


def thresholds(entry: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(threshold, measured, met) for each quality threshold the model is compared with."""
    metrics, architecture = entry["metrics"], entry["architecture"]
    psnr = metrics["test"]["psnr_db"]
    probe = metrics["latent_probe"]["mean"] or 0.0
    fidelity = metrics["object_fidelity"]["mean"] or 0.0
    fidelity_threshold = FIDELITY_THRESHOLDS.get(architecture, FIDELITY_DEFAULT_THRESHOLD)
    rows = [
        (f"PSNR >= {PSNR_THRESHOLD:g} dB", f"{psnr:.2f}", psnr >= PSNR_THRESHOLD),
        (f"latent probe >= {PROBE_THRESHOLD:.2f}", f"{probe:.3f}", probe >= PROBE_THRESHOLD),
        (f"object fidelity >= {fidelity_threshold:.2f}", f"{fidelity:.3f}", fidelity >= fidelity_threshold),
    ]
    if architecture == "Conv_Unpool":
        rows.append((f"PSNR >= {CONV_UNPOOL_PSNR_THRESHOLD:g} dB", f"{psnr:.2f}",
                     psnr >= CONV_UNPOOL_PSNR_THRESHOLD))
    return rows


def data_lines(metadata: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    """Where the training frames came from and which held-out frames the metrics were computed on."""
    data = metadata.get("data") or {}
    levels = data.get("levels") or {}
    frames = data.get("train_frames")
    trained = f"- Trained on {_folder(data.get('dir'))}: {'n/a' if frames is None else f'{frames:,}'} frames"
    if levels:
        trained += (f" of {levels['train']:,} levels; its own test split: {data['test_frames']:,} frames of "
                    f"{levels['test']:,} levels, {levels['shared']} levels shared with training")
    return [
        trained + ".",
        f"- Evaluated on the test split of {_folder(metrics['data']['dir'])}: "
        f"{metrics['data']['test_frames']:,} frames of levels that no frame of that data set's "
        "training split came from.",
    ]


def policy(metrics: dict[str, Any]) -> dict[str, Any]:
    """The policy probe's figures of an evaluation; None each (0 frames) where it was not measured."""
    probe = metrics.get("policy_probe") or {}
    return {"latent": probe.get("latent"), "pixels": probe.get("pixels"), "frames": probe.get("frames", 0)}


def model_section(entry: dict[str, Any], notes: str = "") -> str:
    """The model card's section for one shipped model."""
    architecture, metrics, metadata = entry["architecture"], entry["metrics"], entry["metadata"]
    recipe = metadata.get("recipe", {})
    training, test = metrics["training"], metrics["test"]
    shape = " x ".join(map(str, entry["encoding_shape"]))
    floats = int(np.prod(entry["encoding_shape"]))
    fidelity = metrics["object_fidelity"]
    latent, pixel = metrics["latent_probe"], metrics["pixel_probe"]
    history = training.get("history") or {}
    lines = [
        f"## {architecture} (`{ENV_IDS[architecture]}`)",
        "",
        f"![{architecture} reconstructions]({architecture.lower()}_recon_grid.png)",
        "",
        f"- Encoding: {shape} = {floats} floats; parameters: {entry['parameters']:,}.",
        f"- Architecture arguments: `{metadata.get('arch_kwargs', recipe.get('arch', {}))}`.",
        f"- Load: `gym_autoencoder.load_model(\"{architecture}\")`; environment "
        f"`gymnasium.make(\"gym_autoencoder:{ENV_IDS[architecture]}\")`.",
        "",
    ]
    if notes:
        lines += ["### Intended use and limitations", "", notes, ""]
    lines += ["### Data", "", *data_lines(metadata, metrics), "", "### Recipe", ""]
    lines += [
        f"- Adam, {rates_text(recipe, history.get('lr'))}, batch "
        f"{recipe.get('batch_size')}, weight decay {recipe.get('weight_decay')}, "
        f"{loss_text(recipe)}, seed {recipe.get('seed')}.",
        f"- Epochs: {training['epochs_trained']} trained (limit {recipe.get('epochs')}), best epoch "
        f"{training['best_epoch']}, test loss {_fmt(training['best_test_loss'], 6)}; "
        f"stopped: {training['stop_reason'] or 'not recorded (evaluated apart from its training state)'}.",
    ]
    if history.get("test_loss"):
        lines.append("- Loss by epoch, training / test: " + ", ".join(
            f"{train:.4g} / {test_loss:.4g}" for train, test_loss in zip(history["train_loss"], history["test_loss"])
        ) + ".")
    if history.get("test_visibility_accuracy"):
        lines.append("- Visibility head's test accuracy by epoch: "
                     + ", ".join(f"{accuracy:.3f}" for accuracy in history["test_visibility_accuracy"]) + ".")
    lines += [
        "",
        "### Lineage",
        "",
        "Oldest first: each row's weights were trained from those of the row above, on the data and with",
        "the learning rate and loss shown. The first row is where the recorded chain starts; a row is",
        "named by its run, or by the checkpoint file or shipped name the next run started from.",
        "",
        *lineage_rows(training, recipe, metadata.get("run", architecture), test["psnr_db"]),
        "",
        "### Metrics on held-out levels",
        "",
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
    measured = policy(metrics)
    lines += ["", (
        f"Policy probe: {_fmt(measured['latent'], 3)} from the encoding, {_fmt(measured['pixels'], 3)} from "
        f"{PROBE_PIXELS}x{PROBE_PIXELS} pixels, on the {measured['frames']} test frames with an oracle direction."
        if measured["frames"] else "Policy probe: not measured (evaluated on data made before the oracle labels)."
    )]
    lines += ["", "| threshold | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'yes' if met else '**no**'} |" for name, value, met in thresholds(entry)]
    return "\n".join(lines) + "\n"


def split_notes(notes: str) -> tuple[list[str], dict[str, str]]:
    """The notes file's general sections (each with its ``## `` heading) and its per-model texts."""
    general: list[str] = []
    per_model: dict[str, str] = {}
    for section in ("\n" + notes).split("\n## ")[1:]:  # the part before the first heading is not rendered
        heading, _, text = section.partition("\n")
        if heading.strip() in MODEL_NAMES:
            per_model[heading.strip()] = text.strip()
        else:
            general.append(f"## {heading.strip()}\n\n{text.strip()}\n")
    return general, per_model


def front_matter(entries: list[dict[str, Any]]) -> list[str]:
    """Hugging Face model-card metadata: license, library, tags, the data sets and the metrics."""
    folders: list[str] = []
    for entry in entries:
        metadata, training = entry["metadata"], entry["metrics"]["training"]
        prior = (training.get("initialised_from") or {}).get("recipe") or {}
        for path in (prior.get("data_dir"), (metadata.get("data") or {}).get("dir"),
                     entry["metrics"]["data"]["dir"]):
            if path and PurePath(path).name not in folders:
                folders.append(PurePath(path).name)
    return [
        "---",
        "license: other  # the repository states no license",
        "library_name: pytorch",
        "tags:", *(f"- {tag}" for tag in FRONT_MATTER_TAGS),
        "datasets:  # frames generated by gym-autoencoder-generate into these data/ folders (see Data)",
        *(f"- {folder}" for folder in folders),
        "metrics:", *(f"- {metric}" for metric in FRONT_MATTER_METRICS),
        "---",
    ]


def model_card(entries: list[dict[str, Any]], notes: str = "") -> str:
    """The whole model card: front matter, how to read it, a summary table, the notes' general
    sections, one section per model."""
    general, per_model = split_notes(notes)
    by_threshold: dict[float, list[str]] = {}
    for name, threshold in FIDELITY_THRESHOLDS.items():
        by_threshold.setdefault(threshold, []).append(name)
    fidelity_exceptions = "; ".join(f"{value:.2f} for {' and '.join(names)}" for value, names in by_threshold.items())
    header = [
        *front_matter(entries),
        "",
        "# Shipped checkpoints: model card",
        "",
        "Loaded by `gymnasium.make(\"gym_autoencoder:<id>\")` and `gym_autoencoder.load_model(\"<name>\")`.",
        "`training/ship_checkpoints.py` renders this card (`python training/ship_checkpoints.py --card-only`).",
        "The summary table and each model's Data, Recipe, Lineage and Metrics parts come from the shipped",
        "file's own metadata: its training history and its evaluation by `training/evaluate.py` on the",
        "held-out test split (levels that no training frame came from). The other sections come from",
        f"`checkpoints/{NOTES_NAME}`: measurements made apart from that evaluation, with their commands.",
        "",
        "Metrics: PSNR on [0, 1] pixels; object fidelity = share of keys, locks and gems (with at least",
        f"{FIDELITY_MIN_PIXELS} visible sprite pixels) whose sprite pixels are reconstructed with a mean "
        f"absolute RGB error",
        f"below {FIDELITY_THRESHOLD}, per class and the unweighted mean over the 7 classes; latent probe = balanced",
        "accuracy of a logistic regression on standardised encodings (2/3 of the test frames to fit,",
        f"its L2 penalty chosen by {PROBE_FOLDS}-fold cross-validation within them, 1/3 to score)",
        f"predicting each class's visibility; pixel probe = the same on {PROBE_PIXELS}x{PROBE_PIXELS} pixels;",
        "policy probe = the same kind of probe predicting the oracle direction (the first step of a shortest",
        "path to the gem, or to the nearest reachable key first; 4 classes, chance 0.25), on the encoding and",
        f"on {PROBE_PIXELS}x{PROBE_PIXELS} pixels (n/a: evaluated on data made before the oracle labels).",
        f"Quality thresholds each model is compared with: PSNR >= {PSNR_THRESHOLD:g} dB, latent probe >= "
        f"{PROBE_THRESHOLD:.2f},",
        f"object fidelity >= {FIDELITY_DEFAULT_THRESHOLD:.2f} ({fidelity_exceptions}), and PSNR >= "
        f"{CONV_UNPOOL_PSNR_THRESHOLD:g} dB for Conv_Unpool.",
        "Epochs: those behind the weights a model's last run started from, plus that run's own.",
        "",
        "| model | env id | encoding | parameters | epochs | PSNR dB | fidelity | latent probe | pixel probe "
        "| policy probe | policy, pixels |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in entries:
        m = entry["metrics"]
        header.append(
            f"| {entry['architecture']} | `{ENV_IDS[entry['architecture']]}` | "
            f"{int(np.prod(entry['encoding_shape']))} | {entry['parameters']:,} | "
            f"{epochs_text(m['training'])} | {m['test']['psnr_db']:.2f} | "
            f"{_fmt(m['object_fidelity']['mean'], 3)} | {_fmt(m['latent_probe']['mean'], 3)} | "
            f"{_fmt(m['pixel_probe']['mean'], 3)} | {_fmt(policy(m)['latent'], 3)} | "
            f"{_fmt(policy(m)['pixels'], 3)} |"
        )
    body = [model_section(entry, per_model.get(entry["architecture"], "")) for entry in entries]
    return "\n".join(header) + "\n\n" + "\n".join(general + body)


def notes_text(directory: Path, notes_path: Path | None = None) -> str:
    """The card's notes: ``notes_path``, or else the notes file in ``directory``; "" when there is none."""
    path = Path(directory) / NOTES_NAME if notes_path is None else Path(notes_path)
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def render_card(directory: Path = CHECKPOINT_DIR, notes_path: Path | None = None) -> str:
    """The model card of the checkpoints in ``directory`` and their notes."""
    return model_card(shipped_entries(Path(directory)), notes_text(directory, notes_path))


def write_card(directory: Path = CHECKPOINT_DIR, notes_path: Path | None = None) -> list[dict[str, Any]]:
    """Render the card of ``directory`` into ``directory/README.md``; return the shipped entries."""
    entries = shipped_entries(Path(directory))
    atomic_write_text(Path(directory) / CARD_NAME, model_card(entries, notes_text(directory, notes_path)))
    return entries


def ship(run_dirs: list[Path], out_dir: Path, notes_path: Path | None = None) -> list[dict[str, Any]]:
    """Copy each run's best model and grid into ``out_dir``, then render ``out_dir/README.md`` from
    every checkpoint there; return the entries of the runs shipped."""
    entries = [checkpoint_entry(Path(run_dir) / f"{Path(run_dir).name}.pt") for run_dir in run_dirs]
    entries.sort(key=lambda e: MODEL_NAMES.index(e["architecture"]))
    for entry in entries:
        stem = entry["architecture"].lower()
        for source, name in ((entry["path"], f"{stem}.pt"),
                             (entry["path"].parent / "recon_grid.png", f"{stem}_recon_grid.png")):
            with atomic_path(Path(out_dir) / name) as tmp:
                shutil.copyfile(source, tmp)
    write_card(out_dir, notes_path)
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="ship_checkpoints.py", description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="*", type=Path, help="evaluated run directories")
    parser.add_argument("--card-only", action="store_true",
                        help="ship nothing: re-render OUT/README.md from the checkpoints already in OUT")
    parser.add_argument("--out", type=Path, default=CHECKPOINT_DIR,
                        help="where to ship (default: the package's checkpoints/ folder)")
    parser.add_argument("--notes", type=Path,
                        help=f"the card's notes file (default: OUT/{NOTES_NAME}, when it exists)")
    args = parser.parse_args(argv)
    if bool(args.run_dirs) == args.card_only:
        parser.error("give evaluated run directories to ship, or --card-only to re-render the card")
    try:
        if args.notes is not None and not args.notes.is_file():
            raise ShipError(f"notes file not found: {args.notes}; pass an existing markdown file or omit --notes")
        entries = write_card(args.out, args.notes) if args.card_only else ship(args.run_dirs, args.out, args.notes)
    except (GymAutoencoderError, OSError) as err:
        return report_error(err, "ship_checkpoints.py")
    for entry in entries:
        print(f"{'card' if args.card_only else 'shipped'} {entry['architecture']}: " + ", ".join(
            f"{name} {value} ({'met' if met else 'NOT met'})" for name, value, met in thresholds(entry)))
    print(f"wrote {args.out / CARD_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
