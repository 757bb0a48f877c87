"""Training throughput: frames per second of the training loop per model, measured side by side.

    python benchmarks/bench_training.py [--data-dir data/balanced] [--models ...] [--batches 20]

Every figure runs the package's own training epoch (``training.loop.train_epoch``: gather,
forward, loss, backward, Adam step) over the first ``--batches`` batches of the data set, in
alternating rounds, and reports the median frames per second and its ratio to the baseline
(float32, plain layout, memory-mapped frames, batch 64, all threads) of the same model:

- ``held``: the frames held on the device (``data_placement: device``) instead of memory-mapped;
- ``channels_last``, ``bfloat16``: the recipe's ``memory_format`` and ``precision`` settings;
- ``compiled``: the model under ``torch.compile`` (inductor);
- ``1 thread``: ``torch.set_num_threads(1)``;
- ``batch 128``: twice the batch (with a learning rate scaled alike, the same number of frames).

Other processes on the machine slow every variant alike; read the ratios. On CUDA the baseline
and variants run there (``--device cuda``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import torch

from gym_autoencoder.autoencoder import resolve_device
from gym_autoencoder.model_stubs import MODEL_NAMES, build_model
from gym_autoencoder.training.acceleration import StepSettings
from gym_autoencoder.training.config import default_config, resolve_recipe
from gym_autoencoder.training.data import Dataset, Split, open_dataset
from gym_autoencoder.training.loop import Objective, TrainingState, make_optimiser, train_epoch


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    runner = torch.compile(model) if compiled else model

    def run() -> float:
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the epoch's log line
            train_epoch(runner, optimiser, frames, objective, recipe, TrainingState(), "", Path("last.pt"))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return len(frames) / (time.perf_counter() - start)

    run()  # warm-up: allocations, compilation
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data/balanced")
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    parser.add_argument("--batches", type=int, default=20, help="batches of 64 frames per timed epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", nargs="+",
                        default=["held", "channels_last", "bfloat16", "compiled", "1 thread", "batch 128"])
    args = parser.parse_args()
    device = resolve_device(args.device)
    split = open_dataset(args.data_dir).train
    print(f"training frames/s on {device} ({torch.get_num_threads()} threads), median of {args.rounds} "
          f"alternating rounds of {args.batches * 64} frames; ratio to the baseline in brackets")
    options = {
        "held": dict(held=True), "channels_last": dict(memory_format="channels_last"),
        "bfloat16": dict(precision="bfloat16"), "compiled": dict(compiled=True), "1 thread": {},
        "batch 128": dict(batch_size=128),
    }
    print(f"{'model':<20}{'baseline':>10}" + "".join(f"{v:>20}" for v in args.variants))
    for name in args.models:
        runs = {"baseline": frames_per_second(name, split, device, args.batches)}
        for variant in args.variants:
            batch_size = options[variant].get("batch_size", 64)
            runs[variant] = frames_per_second(
                name, split, device, args.batches * 64 // batch_size, **options[variant])
        times = {key: [] for key in runs}
        for _ in range(args.rounds):
            for key, run in runs.items():
                with threads(1) if key == "1 thread" else contextlib.nullcontext():
                    times[key].append(run())
        base = statistics.median(times["baseline"])
        cells = "".join(f"{statistics.median(times[v]):>12.0f} ({statistics.median(times[v]) / base:4.2f})"
                        for v in args.variants)
        print(f"{name:<20}{base:>10.0f}{cells}", flush=True)


if __name__ == "__main__":
    main()
