"""Training throughput: frames per second of the training loop per model, measured side by side.

    python benchmarks/bench_training.py [--data-dir data/balanced] [--models ...] [--batches 20]

Every figure runs the package's own training epoch (``training.loop.train_epoch``: gather,
forward, loss, backward, Adam step) over the first ``--batches`` batches of the data set, in
alternating rounds, and reports the median frames per second and its ratio to the baseline
(float32, plain layout, memory-mapped frames, batch 64, all threads) of the same model:

- ``held``: the frames held on the device (``data_placement: device``) instead of memory-mapped;
- ``channels_last``, ``bfloat16``: the recipe's ``memory_format`` and ``precision`` settings
  (``both``: the two together);
- ``compiled``: the model under ``torch.compile`` (inductor);
- ``1 thread``: ``torch.set_num_threads(1)``;
- ``batch 128``: twice the batch (the same number of frames).

Then one epoch per model launched by torchrun in 1 process (all threads) and 2 processes (gloo),
and both data generators with 1 and 2 labelling workers.

Other processes on the machine slow every variant alike; read the ratios. On CUDA the baseline
and variants run there (``--device cuda``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from gym_autoencoder.autoencoder import resolve_device
from gym_autoencoder.inference import torch_threads
from gym_autoencoder.model_stubs import MODEL_NAMES, build_model
from gym_autoencoder.training.acceleration import StepSettings
from gym_autoencoder.training.config import default_config, resolve_recipe
from gym_autoencoder.training.data import Dataset, Split, open_dataset
from gym_autoencoder.training.loop import (
    Objective, TrainingLoss, TrainingState, make_optimiser, read_state, train_epoch,
)


VARIANTS = {
    "held": dict(held=True), "channels_last": dict(memory_format="channels_last"),
    "bfloat16": dict(precision="bfloat16"), "both": dict(memory_format="channels_last", precision="bfloat16"),
    "compiled": dict(compiled=True), "1 thread": {},
    "batch 128": dict(batch_size=128),
}
SECTIONS = ("variants", "ddp", "generation")


def frames_per_second(
    name: str, split: Split, device: torch.device, batches: int, batch_size: int = 64,
    precision: str = "float32", memory_format: str = "contiguous", held: bool = False, compiled: bool = False,
) -> Callable[[], float]:
    """A callable that runs one training epoch over ``batches`` batches and returns frames/s."""
    recipe = replace(resolve_recipe(default_config(), name), batch_size=batch_size, log_interval=10**9)
    frames = Split(split.name, split.frames[: batches * batch_size], None)
    if held:
        frames.rows.hold(device)
    steps = StepSettings.resolve(device, precision, memory_format)
    torch.manual_seed(0)
    model = build_model(name, **recipe.arch)
    objective = Objective.for_recipe(model, recipe, Dataset(Path(), frames, frames), steps)  # plain MSE: no labels
    steps.prepare(objective.modules(model))
    optimiser = make_optimiser(objective.modules(model), recipe)
    runner = TrainingLoss(objective, torch.compile(model) if compiled else model)

    def run() -> float:
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the epoch's log line
            train_epoch(runner, optimiser, frames, objective, recipe, TrainingState(), "", Path("last.pt"))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return len(frames) / (time.perf_counter() - start)

    run()  # warm-up: allocations, compilation
    return run


def variant_table(args: argparse.Namespace, device: torch.device) -> None:
    """Frames/s of every variant of every model, alternating rounds, ratios to the baseline."""
    split = open_dataset(args.data_dir).train
    print(f"training frames/s on {device} ({torch.get_num_threads()} threads), median of {args.rounds} "
          f"alternating rounds of {args.batches * 64} frames; ratio to the baseline in brackets")
    print(f"{'model':<20}{'baseline':>10}" + "".join(f"{v:>20}" for v in args.variants))
    for name in args.models:
        runs = {"baseline": frames_per_second(name, split, device, args.batches)}
        for variant in args.variants:
            batch_size = VARIANTS[variant].get("batch_size", 64)
            runs[variant] = frames_per_second(
                name, split, device, args.batches * 64 // batch_size, **VARIANTS[variant])
        times = {key: [] for key in runs}
        for _ in range(args.rounds):
            for key, run in runs.items():
                with torch_threads(1) if key == "1 thread" else contextlib.nullcontext():
                    times[key].append(run())
        base = statistics.median(times["baseline"])
        cells = "".join(f"{statistics.median(times[v]):>12.0f} ({statistics.median(times[v]) / base:4.2f})"
                        for v in args.variants)
        print(f"{name:<20}{base:>10.0f}{cells}", flush=True)


def subset(data_dir: str, directory: Path, train: int, test: int) -> Path:
    """The first ``train`` training and ``test`` test frames of ``data_dir``, unlabelled, in ``directory``."""
    dataset = open_dataset(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "training_samples.npy", np.asarray(dataset.train.frames[:train]))
    np.save(directory / "test_samples.npy", np.asarray(dataset.test.frames[:test]))
    return directory


def launched_frames_per_second(name: str, processes: int, data_dir: Path, save_dir: Path, threads_each: int) -> float:
    """Training frames/s of one epoch of ``name`` launched by torchrun in ``processes`` processes
    (gloo on CPU), from the epoch's seconds in the run's state (the test loss included)."""
    run = f"{name}_{processes}"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
               "-m", "gym_autoencoder.training.autoencoder_training", "--model", name, "--name", run,
               "--data-dir", str(data_dir), "--save-dir", str(save_dir), "--epochs", "1", "--skip-evaluation",
               "--threads", str(threads_each), "--device", "cpu", "--log-interval", "1000000"]
    subprocess.run(command, check=True, capture_output=True)
    state = read_state(save_dir / run / "checkpoints" / "last.pt")["state"]
    return open_dataset(data_dir).train.frames.shape[0] / state["history"]["seconds"][0]


def ddp_table(args: argparse.Namespace) -> None:
    """One epoch of each model in 1 process (all cores) and in 2 processes (gloo), side by side."""
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = subset(args.data_dir, Path(scratch) / "data", args.batches * 64, 256)
        print(f"\nDDP on CPU: frames/s of one epoch of {args.batches * 64} frames (test loss included), "
              f"1 process x {cores} threads vs 2 processes x {max(1, cores // 2)}; torchrun start-up excluded")
        print(f"{'model':<20}{'1 process':>12}{'2 processes':>14}{'ratio':>8}")
        for name in args.models:
            one = launched_frames_per_second(name, 1, data_dir, Path(scratch), cores)
            two = launched_frames_per_second(name, 2, data_dir, Path(scratch), max(1, cores // 2))
            print(f"{name:<20}{one:>12.0f}{two:>14.0f}{two / one:>8.2f}", flush=True)


def generation_table(args: argparse.Namespace) -> None:
    """Frames/s of both generators with 1 and 2 labelling workers, paired rounds
    (``bench_data_generation.py`` has the full report)."""
    from bench_data_generation import throughput  # the script beside this one

    from gym_autoencoder.data_generation.sample_generator_heist import generate_balanced_dataset
    from gym_autoencoder.data_generation.sample_generator_heist_basic import generate_basic_dataset

    print(f"\ndata generation: frames/s of {args.generation_frames} frames, medians of {args.rounds} paired rounds")
    print(f"{'generator':<12}{'1 worker':>10}{'2 workers':>11}{'ratio':>8}")
    for name, generate in (("basic", generate_basic_dataset), ("balanced", generate_balanced_dataset)):
        fps = throughput(generate, args.generation_frames, [1, 2], args.rounds)[0]
        ratio = statistics.median(two / one for one, two in zip(fps[1], fps[2]))
        print(f"{name:<12}{statistics.median(fps[1]):>10.0f}{statistics.median(fps[2]):>11.0f}{ratio:>8.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data/balanced")
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    parser.add_argument("--batches", type=int, default=20, help="batches of 64 frames per timed epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto", help="where the variants run (auto: CUDA when present)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--generation-frames", type=int, default=6000)
    args = parser.parse_args()
    device = resolve_device(args.device)
    if "variants" in args.sections:
        variant_table(args, device)
    if "ddp" in args.sections:
        ddp_table(args)
    if "generation" in args.sections:
        generation_table(args)


if __name__ == "__main__":
    main()
