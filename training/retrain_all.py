"""Retrain the six shipped models and ship those that beat the shipped ones: one command.

    python training/retrain_all.py --time-budget 60 [--num-samples 250000] [--parallel 6]

1. Generate a balanced, labelled data set into ``--data-dir`` if it is missing (all cores).
2. Train the six within ``--time-budget`` minutes of training in all: ``--parallel`` runs at a
   time (default: all six at once on CUDA, where one small model leaves the GPU mostly idle; one
   at a time on CPU), each under the same share of the budget (``--time-budget`` of
   ``autoencoder_training.py``). Each run continues the shipped model's weights under the recipe
   that made them (stored in the checkpoint), or with ``--fresh`` starts from new weights under
   that recipe at the shipped YAML's learning rate. ``--config`` applies a YAML file over every
   run's recipe (e.g. ``batch_size: 256`` on a GPU). Each run is evaluated when it ends.
3. Evaluate the model shipped in ``--out`` on the same held-out test levels and ship every run
   whose test PSNR is higher and whose object fidelity is not lower (``--ship better``), with
   ``training/ship_checkpoints.py``, which also renders the card. Nothing shipped yet in
   ``--out``: every run is shipped.

Runs write into ``--save-dir/MODEL/`` with their logs in ``--save-dir/MODEL.log``; calling the
command again resumes unfinished runs. Generation and evaluation come on top of the budget.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from gym_autoencoder.atomic import atomic_write_text
from gym_autoencoder.autoencoder import resolve_device
from gym_autoencoder.checkpoint import read_checkpoint
from gym_autoencoder.errors import GymAutoencoderError, OneLineParser, report_error
from gym_autoencoder.model_stubs import MODEL_NAMES
from gym_autoencoder.training.config import (
    SECTIONS, ConfigError, GenerateSettings, check_device, default_config, merge_config, read_yaml, stored_recipe,
)
from gym_autoencoder.training.data import data_present, generate_data
from gym_autoencoder.training.evaluate import compute_evaluation
from gym_autoencoder.training.ship_checkpoints import CHECKPOINT_DIR, ship

SHIP_CHOICES = ("better", "all", "none")
# Settings a run takes from this command, not from the recipe it continues.
RUN_SETTINGS = ("model", "arch", "data_dir", "save_dir", "init_from", "epochs", "time_budget", "device", "threads")
EPOCH_CAP = 100_000  # the time budget, not an epoch count, ends a run
QUICK_EVALUATION = {"timing_repeats": 1, "timing_warmup": 0, "video_frames": 1}  # figures only


class RetrainError(GymAutoencoderError):
    """A run of the retraining failed."""

    exit_status = 1


def shipped_path(out_dir: Path, name: str) -> Path:
    return out_dir / f"{name.lower()}.pt"


def run_config(name: str, out_dir: Path, fresh: bool, extra: dict[str, Any]) -> dict[str, Any]:
    """The YAML settings of ``name``'s run: the recipe of the model shipped in ``out_dir`` (the
    shipped YAML's where none is), ``extra`` over it."""
    defaults = default_config()
    base = shipped_path(out_dir, name)
    if base.is_file():
        recipe = stored_recipe(read_checkpoint(base, name)["metadata"]["recipe"], checked=False).to_dict()
    else:
        recipe = {**{k: v for k, v in defaults.items() if k != "models"}, "arch": defaults["models"][name]["arch"]}
    if fresh:
        recipe["learning_rate"] = defaults["learning_rate"]
    values = {key: value for key, value in recipe.items() if key not in RUN_SETTINGS}
    for key, value in extra.items():
        if key != "models":
            values[key] = {**values[key], **value} if key in SECTIONS else value
    entry = {"arch": {**recipe["arch"], **extra.get("models", {}).get(name, {}).get("arch", {})}}
    entry.update({k: v for k, v in extra.get("models", {}).get(name, {}).items() if k != "arch"})
    return {**values, "models": {name: entry}}


def training_command(
    name: str, config: Path, data_dir: Path, save_dir: Path, budget: float, device: str, init_from: str,
    threads: int,
) -> list[str]:
    return [
        sys.executable, "-m", "gym_autoencoder.training.autoencoder_training", "--model", name, "--name", name,
        "--config", str(config), "--data-dir", str(data_dir), "--save-dir", str(save_dir), "--resume",
        "--time-budget", f"{budget:g}", "--epochs", str(EPOCH_CAP), "--device", device,
        "--init-from", init_from, "--threads", str(threads),
    ]


def train_all(commands: dict[str, list[str]], save_dir: Path, parallel: int) -> dict[str, int]:
    """Run the training commands, ``parallel`` at a time, each logging to SAVE_DIR/MODEL.log;
    their exit statuses by model."""
    waiting, running, status = list(commands), {}, {}
    with tqdm(total=len(commands), desc="runs", unit="run") as bar:
        while waiting or running:
            while waiting and len(running) < parallel:
                name = waiting.pop(0)
                log = open(save_dir / f"{name}.log", "a", encoding="utf-8")  # noqa: SIM115 (closed below)
                running[name] = (subprocess.Popen(commands[name], stdout=log, stderr=subprocess.STDOUT), log)
            for name, (process, log) in list(running.items()):
                if process.poll() is not None:
                    log.close()
                    status[name] = process.returncode
                    del running[name]
                    bar.update()
                    tqdm.write(f"{name}: {'done' if process.returncode == 0 else 'FAILED'} "
                               f"(log: {save_dir / f'{name}.log'})")
            time.sleep(0.5)
    return status


def figures(values: dict[str, Any]) -> tuple[float, float | None]:
    """Test PSNR and mean object fidelity (None without labels) of an evaluation's metrics."""
    fidelity = values.get("object_fidelity", {}).get("mean")
    return values["test"]["psnr_db"], fidelity


def beats(new: tuple[float, float | None], old: tuple[float, float | None]) -> bool:
    """A higher PSNR with an object fidelity that is not lower."""
    return new[0] > old[0] and (new[1] is None or old[1] is None or new[1] >= old[1])


def compare(name: str, run_dir: Path, out_dir: Path, data_dir: Path, device: str) -> tuple[str, bool]:
    """A line comparing run ``name`` with the model shipped in ``out_dir`` on the run's test split,
    and whether the run beats it (True when nothing is shipped)."""
    new = figures(read_checkpoint(run_dir / f"{name}.pt", name)["metadata"]["metrics"])
    base = shipped_path(out_dir, name)
    text = f"{name:<20} new {new[0]:6.2f} dB / fidelity {_fmt(new[1])}"
    if not base.is_file():
        return text + "   (nothing shipped)", True
    old = figures(compute_evaluation(run_dir, base, data_dir, device, QUICK_EVALUATION).values)
    better = beats(new, old)
    return text + f"   shipped {old[0]:6.2f} dB / fidelity {_fmt(old[1])}   {'better' if better else 'not better'}", better


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def retrain_all(
    time_budget: float, data_dir: Path, save_dir: Path, out_dir: Path = CHECKPOINT_DIR,
    models: tuple[str, ...] = MODEL_NAMES, num_samples: int = 250_000, device: str = "auto",
    parallel: int | None = None, fresh: bool = False, config: Path | None = None, ship_mode: str = "better",
    seed: int = 0,
) -> list[str]:
    """Generate, train, evaluate, compare and ship (see the module's text); the models shipped."""
    check_device(device)
    if ship_mode not in SHIP_CHOICES:
        raise ConfigError(f"--ship must be one of {', '.join(SHIP_CHOICES)}, got {ship_mode!r}")
    if not time_budget > 0:
        raise ConfigError(f"--time-budget must be a positive number of minutes, got {time_budget!r}")
    cuda = resolve_device(device).type == "cuda"
    parallel = parallel or (len(models) if cuda else 1)
    if parallel < 1:
        raise ConfigError(f"--parallel must be a positive integer, got {parallel}")
    extra = read_yaml(config) if config else {}
    merge_config(default_config(), extra, str(config))  # one clear line for a bad setting, before any run
    save_dir.mkdir(parents=True, exist_ok=True)
    if not data_present(data_dir):
        generate = GenerateSettings.from_dict({**default_config()["generate"], "num_samples": num_samples})
        tqdm.write(f"generating {num_samples} frames into {data_dir}")
        generate_data(data_dir, generate, seed)
    waves = math.ceil(len(models) / parallel)
    budget = time_budget / waves
    threads = 0 if cuda else max(1, (os.cpu_count() or 1) // parallel)
    commands = {}
    for name in models:
        path = save_dir / "configs" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        atomic_write_text(path, yaml.safe_dump(run_config(name, out_dir, fresh, extra), sort_keys=False))
        base = shipped_path(out_dir, name)
        init_from = "" if fresh or not base.is_file() else str(base)
        commands[name] = training_command(name, path, data_dir, save_dir, budget, device, init_from, threads)
    tqdm.write(f"training {len(models)} models, {parallel} at a time, {budget:g} minutes each")
    status = train_all(commands, save_dir, parallel)
    trained = [name for name in models if status[name] == 0]
    better = []
    for name in trained:
        line, wins = compare(name, save_dir / name, out_dir, data_dir, device)
        tqdm.write(line)
        if wins:
            better.append(name)
    shipped = {"better": better, "all": trained, "none": []}[ship_mode]
    if shipped:
        ship([save_dir / name for name in shipped], out_dir)
    tqdm.write(f"shipped into {out_dir}: {', '.join(shipped) or 'nothing'}")
    failed = [name for name in models if status[name] != 0]
    if failed:
        raise RetrainError(f"training failed for {', '.join(failed)}; see their logs in {save_dir}")
    return shipped


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="retrain_all.py", description=__doc__.splitlines()[0])
    parser.add_argument("--time-budget", type=float, required=True, help="minutes of training, all runs together")
    parser.add_argument("--data-dir", type=Path, default=Path("data/retrain"))
    parser.add_argument("--num-samples", type=int, default=250_000, help="frames to generate if data is missing")
    parser.add_argument("--save-dir", type=Path, default=Path("runs/retrain"))
    parser.add_argument("--out", type=Path, default=CHECKPOINT_DIR, help="shipped models to beat and replace")
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--parallel", type=int, help="runs at a time (default: all on CUDA, 1 on CPU)")
    parser.add_argument("--fresh", action="store_true", help="start from new weights, not the shipped ones")
    parser.add_argument("--config", type=Path, help="YAML settings applied over every run's recipe")
    parser.add_argument("--ship", choices=SHIP_CHOICES, default="better")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    args = parser.parse_args(argv)
    try:
        retrain_all(args.time_budget, args.data_dir, args.save_dir, args.out, tuple(args.models), args.num_samples,
                    args.device, args.parallel, args.fresh, args.config, args.ship, args.seed)
    except (GymAutoencoderError, OSError) as err:
        return report_error(err, "retrain_all.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
