"""Train (and then evaluate) the autoencoders: ``python training/autoencoder_training.py --help``.

Hyperparameters come from ``training_hyperparameters.yaml`` next to this file, a file given
with ``--config`` over it, and command-line flags over both. A run writes into
``SAVE_DIR/RUN/``: the best model ``RUN.pt``, the resumable state ``checkpoints/last.pt``
and, after training, the evaluation reports (see ``training/evaluate.py``).
"""

from __future__ import annotations

import argparse
import operator
import re
import sys
from functools import reduce
from pathlib import Path
from typing import Any

import torch
import yaml

from gym_autoencoder.atomic import check_writable
from gym_autoencoder.autoencoder import resolve_device
from gym_autoencoder.checkpoint import read_checkpoint, resolve_checkpoint
from gym_autoencoder.errors import GymAutoencoderError, OneLineParser, report_error
from gym_autoencoder.model_stubs import MODEL_NAMES, BaseAutoencoder, build_model
from gym_autoencoder.training.config import (
    ConfigError,
    Recipe,
    apply_resume_overrides,
    default_config,
    flag_settings,
    load_config,
    resolve_recipe,
)
from gym_autoencoder.training.data import data_present, generate_data, missing_data_error, open_dataset
from gym_autoencoder.training.distributed import ONE_PROCESS, Processes
from gym_autoencoder.training.evaluate import evaluate_run
from gym_autoencoder.training.loop import (
    SAVE_DIR_FIX,
    NonFiniteLossError,
    TrainingState,
    checkpoint_room,
    read_state,
    say,
    train,
)

DEFAULT_MODEL = "Conv_Unpool"
ALIASES = {"learning_rate": ["--lr"], "early_stopping_patience": ["--patience"]}
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _boolean(text: str) -> bool:
    """A flag's true or false (``bool("false")`` would be True)."""
    value = yaml.safe_load(text)
    if not isinstance(value, bool):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def build_parser(defaults: dict) -> argparse.ArgumentParser:
    """Flags for the run plus one flag per setting of the recipe; ``defaults`` (the shipped YAML)
    gives their help."""
    parser = OneLineParser(
        allow_abbrev=False,
        prog="autoencoder_training.py",
        description="Train autoencoders on Heist frames, then evaluate them. "
        "Every hyperparameter of training_hyperparameters.yaml has a flag.",
    )
    run = parser.add_argument_group("run")
    which = run.add_mutually_exclusive_group()
    which.add_argument("--model", choices=MODEL_NAMES,
                       help=f"architecture to train (default {DEFAULT_MODEL})")
    which.add_argument("--all", action="store_true", help="train the six architectures in turn")
    run.add_argument("--name", help="run name: the folder under SAVE_DIR (default: the model name; "
                     "with --all a prefix, RUN_MODEL)")
    run.add_argument("--resume", action="store_true",
                     help="continue the run from its last completed epoch (or start it if it has none)")
    run.add_argument("--config", help="YAML file whose settings replace the shipped ones")
    run.add_argument("--generate-data", action="store_true",
                     help="create the data set first if the data files are missing")
    run.add_argument("--skip-evaluation", action="store_true",
                     help="train only; evaluate later with: python training/evaluate.py RUN_DIR")
    run.add_argument("--arch", action="append", default=[], metavar="KEY=VALUE",
                     help="architecture argument, e.g. --arch kl_weight=0.001 (repeatable)")
    settings = parser.add_argument_group("hyperparameters (override the YAML)")
    for path, kind in flag_settings():
        name, default = "_".join(path), reduce(operator.getitem, path, defaults)
        settings.add_argument("--" + name.replace("_", "-"), *ALIASES.get(name, []),
                              dest=":".join(["set", *path]), type=_boolean if kind is bool else kind,
                              metavar=path[-1].upper(), help=f"default {default!r}")
    return parser


def command_line_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The hyperparameters given as flags, nested like the YAML."""
    settings: dict[str, Any] = {}
    for dest, value in vars(args).items():
        if dest.startswith("set:") and value is not None:
            *section, key = dest.split(":")[1:]
            (settings.setdefault(section[0], {}) if section else settings)[key] = value
    return settings


def parse_arch(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as constructor arguments, values read as YAML scalars."""
    arch = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--arch takes KEY=VALUE, got {pair!r}; e.g. --arch kl_weight=0.001")
        value = yaml.safe_load(text)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        arch[key] = value
    return arch


def build(model_name: str, recipe: Recipe) -> BaseAutoencoder:
    """The architecture with the recipe's arguments, seeded so that initial weights are reproducible."""
    torch.manual_seed(recipe.seed)
    try:
        return build_model(model_name, **recipe.arch)
    except ValueError as err:
        raise ConfigError(f"bad architecture arguments for {model_name}: {err}") from None


def trained_epochs(metadata: dict[str, Any]) -> int:
    """Epochs behind a checkpoint's weights: its run's epochs up to them and those of the weights
    that run started from."""
    return metadata.get("epoch", 0) + metadata.get("initialised_from", {}).get("epochs", 0)


def initialise_from(model: BaseAutoencoder, source: str) -> dict[str, Any]:
    """Load the weights of checkpoint ``source`` (a path or a shipped model's name) into ``model``.

    Returns the lineage the new run records, since the source file may later be replaced (a
    reshipped checkpoint): where the weights came from, how many epochs and which recipe made them.
    """
    architecture = type(model).__name__
    path = resolve_checkpoint(source)
    payload = read_checkpoint(path, architecture)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ConfigError(
            f"init_from {source}: its weights do not fit {architecture} with arguments "
            f"{model.config} ({str(err).strip().splitlines()[0]}); use the checkpoint's own "
            f"architecture arguments {payload['arch_kwargs']}"
        ) from None
    prior = payload["metadata"]
    return {
        "checkpoint": str(path.resolve()),
        "epochs": trained_epochs(prior),
        "recipe": prior.get("recipe"),
        "learning_rates": prior.get("history", {}).get("lr"),
        "psnr_db": prior.get("metrics", {}).get("test", {}).get("psnr_db"),
    }


def run_one(
    config: dict, model_name: str, run: str, overrides: dict[str, Any], arch: dict[str, Any],
    resume: bool, generate: bool, evaluate: bool = True, dist: Processes = ONE_PROCESS,
) -> None:
    """Train (or continue) run ``run`` of ``model_name`` and evaluate its best model. Under
    torchrun (``dist``) every process trains; rank 0 alone reads the run's files, writes and evaluates."""
    recipe = resolve_recipe(config, model_name, overrides, arch)
    run_dir = Path(recipe.save_dir) / run
    state_path = run_dir / "checkpoints" / "last.pt"
    payload = dist.from_main(lambda: read_state(state_path) if state_path.is_file() else None)
    if payload is not None:
        if not resume:
            raise ConfigError(f"{run_dir} already holds a run; add --resume to continue it, "
                              "or choose a new --name")
        if payload["architecture"] != model_name:
            raise ConfigError(f"{run_dir} holds a {payload['architecture']} run, not {model_name}; "
                              "choose another --name")
        # the run is the directory found here, wherever it was first written
        recipe = apply_resume_overrides({**payload["recipe"], "save_dir": recipe.save_dir}, overrides, arch)
        state = TrainingState(**payload["state"])
        if state.stop_reason(recipe) and dist.agree(not evaluate or (run_dir / "metrics.json").is_file()):
            say(f"{run}: already complete ({state.epoch} epochs, {state.stop_reason(recipe)}); nothing to do")
            return
        say(f"{run}: resuming after epoch {state.epoch}")
    elif resume:
        say(f"{run}: nothing to resume in {run_dir}; starting a new run")
    if not data_present(recipe.data_dir):
        if not generate:
            raise missing_data_error(recipe.data_dir, recipe.generate, recipe.seed)
        if dist.world_size > 1:
            raise ConfigError(f"training data not found in {recipe.data_dir}, and --generate-data does not "
                              "run under torchrun; generate the data set first (on every machine, or in "
                              "a shared directory), then start torchrun")
        say(f"generating {recipe.generate.num_samples} frames into {recipe.data_dir}")
        generate_data(recipe.data_dir, recipe.generate, recipe.seed)
    dataset = open_dataset(recipe.data_dir)
    device = dist.device(resolve_device(recipe.device))
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    model = build(model_name, recipe)
    if dist.is_main:
        check_writable(run_dir / "checkpoints", SAVE_DIR_FIX, checkpoint_room(model))
    metadata = {"run": run, "recipe": recipe.to_dict(), "data": dataset.describe(),
                "distributed": dist.describe(device)}
    if recipe.init_from:
        metadata["initialised_from"] = (
            dist.from_main(lambda: read_checkpoint(run_dir / f"{run}.pt")["metadata"]["initialised_from"])
            if payload else initialise_from(model, recipe.init_from)
        )
        say(f"{run}: initialised from the weights of {metadata['initialised_from']['checkpoint']} "
            f"({metadata['initialised_from']['epochs']} epochs)")
    say(f"{run}: {model_name} on {dist.summary(device)}, {len(dataset.train)} training and "
          f"{len(dataset.test)} test frames from {dataset.directory}")
    state = train(model, recipe, dataset, run_dir, metadata, device, payload, dist)
    say(f"{run}: training stopped ({state.stop_reason(recipe)}) after {state.epoch} epochs; "
          f"best test loss {state.best_loss:.6f} at epoch {state.best_epoch}")
    if not evaluate or not dist.is_main:
        return
    values = evaluate_run(run_dir, device=device)
    say(f"{run}: test PSNR {values['test']['psnr_db']:.2f} dB, SSIM {values['test']['ssim']:.4f}; "
          f"reports in {run_dir}")


def run_names(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(model, run name) pairs to train."""
    if args.name is not None and not RUN_NAME.match(args.name):
        raise ConfigError(f"--name {args.name!r} must be a plain folder name (letters, digits, . _ -)")
    if args.all:
        return [(model, f"{args.name}_{model}" if args.name else model) for model in MODEL_NAMES]
    model = args.model or DEFAULT_MODEL
    return [(model, args.name or model)]


def main(argv: list[str] | None = None) -> int:
    args = build_parser(default_config()).parse_args(argv)
    failed, prog = [], "autoencoder_training.py"
    try:
        with Processes.from_environment() as dist:
            prog += dist.label
            config = load_config(args.config)
            overrides = command_line_settings(args)
            arch = parse_arch(args.arch)
            if arch and args.all:
                raise ConfigError("--arch applies to one model; give per-model arguments with --all "
                                  "in the models section of a --config file")
            for model_name, run in run_names(args):
                try:
                    run_one(config, model_name, run, overrides, arch, args.resume, args.generate_data,
                            not args.skip_evaluation, dist)
                except NonFiniteLossError as err:
                    if not args.all or dist.world_size > 1:  # under torchrun a failed run ends the launch
                        raise
                    print(f"{prog}: error: {run}: {err}", file=sys.stderr)
                    failed.append(run)
    except (GymAutoencoderError, OSError, torch.distributed.DistError) as err:
        return report_error(err, prog)
    if failed:
        print(f"{prog}: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
