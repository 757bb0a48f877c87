"""Throughput of the data generators, against the raw Procgen step rate measured in the same run.

    python benchmarks/bench_data_generation.py [--basic-frames 10000] [--balanced-frames 20000]
        [--workers 1 2] [--repeats 3]

Prints frames per second of both generators (labels and files included) with each number of
labelling workers (the median of ``--repeats`` rounds that run each number back to back), the
median over the rounds of each number's speed-up over the first number, whether all of them
wrote the same files, the raw step and reset rates of a 64-env ``ProcgenGym3Env`` measured
before and after them, and the ratios. A fresh-level frame costs one reset and K random steps,
which gives the ceiling. Then the class shares the balanced run achieved (target shares are
exact by construction; the acceptance band is +-2 percentage points). Other processes on the
machine depress every figure alike, so read the ratios; the load average before and after is
printed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

from gym_autoencoder.data_generation.labels import OBJECT_CLASSES
from gym_autoencoder.data_generation.sample_generator_heist import TARGETS, format_shares, generate_balanced_dataset
from gym_autoencoder.data_generation.sample_generator_heist_basic import generate_basic_dataset
from gym_autoencoder.procgen_batch import ProcgenBatch
from gym_autoencoder.procgen_games import FORCE_NEW_EPISODE, NUM_ACTIONS, ProcgenOptions

REFERENCE_FPS = {"basic": 23.8, "balanced": 2.2}  # the reference design, measured on this machine
TARGET_FPS = {"basic": 1000, "balanced": 500}


def raw_rates(num_envs: int, steps: int) -> tuple[float, float]:
    """Heist (memory mode) steps/s under random actions, and fresh levels (forced resets) per second."""
    env = ProcgenBatch(ProcgenOptions("heist", "memory"), num_envs, rand_seed=0).env
    actions = np.random.default_rng(0).integers(0, NUM_ACTIONS, (steps, num_envs), dtype=np.int32)
    resets = np.full(num_envs, FORCE_NEW_EPISODE, np.int32)
    rates = []
    for batch in (actions, [resets] * (steps // 8)):
        env.act(batch[0])
        env.observe()
        start = time.perf_counter()
        for step_actions in batch:
            env.act(step_actions)
        env.observe()
        rates.append(len(batch) * num_envs / (time.perf_counter() - start))
    return rates[0], rates[1]


def timed(generate, frames: int, workers: int) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        report = generate(out, frames, workers=workers, progress=False)
        return frames / (time.perf_counter() - start), report


def throughput(
    generate, frames: int, workers: list[int], repeats: int
) -> tuple[dict[int, list[float]], dict[int, dict]]:
    """Frames/s of each number of workers in each of ``repeats`` rounds, and each one's report.

    A round runs every number once, back to back, every other round in reverse order, so a
    drifting load hits them alike; the ratios within a round compare like with like.
    """
    fps, reports = {count: [] for count in workers}, {}
    for repeat in range(repeats):
        for count in workers if repeat % 2 == 0 else workers[::-1]:
            rate, reports[count] = timed(generate, frames, count)
            fps[count].append(rate)
    return fps, reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--basic-frames", type=int, default=10_000)
    parser.add_argument("--balanced-frames", type=int, default=20_000)
    parser.add_argument("--random-actions", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="numbers of labelling workers")
    parser.add_argument("--repeats", type=int, default=3, help="runs per generator and number of workers")
    args = parser.parse_args()
    load_before = os.getloadavg()
    before = raw_rates(64, 400)
    runs = {
        name: (frames, *throughput(generate, frames, args.workers, args.repeats))
        for name, generate, frames in (
            ("basic", generate_basic_dataset, args.basic_frames),
            ("balanced", generate_balanced_dataset, args.balanced_frames),
        )
    }
    after = raw_rates(64, 400)
    step_rate, reset_rate = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
    ceiling = 1 / (1 / reset_rate + args.random_actions / step_rate)

    print(f"load average (1 min) before / after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores")
    print(f"raw Procgen, 64 envs, heist memory: {before[0]:,.0f} / {after[0]:,.0f} steps/s (before / after), "
          f"{before[1]:,.0f} / {after[1]:,.0f} fresh levels/s")
    print(f"  ceiling: {ceiling:,.0f} fresh-level frames/s at {args.random_actions} random actions, "
          "without labels or files")
    first = args.workers[0]
    for name, (frames, fps_by_workers, reports) in runs.items():
        for count, rates in fps_by_workers.items():
            fps = statistics.median(rates)
            ratio = statistics.median(r / f for r, f in zip(rates, fps_by_workers[first]))
            print(
                f"{name:>8} generator, {count} worker{'s' if count > 1 else ' '}: {fps:8,.0f} frames/s over "
                f"{frames:,} labelled frames (median of {len(rates)}) | {ratio:.2f}x {first} worker"
                f"{'s' if first > 1 else ''} (median of the rounds' ratios) | {fps / ceiling:.2f} of the ceiling | "
                f"{fps / step_rate * 1000:.1f} frames per 1000 raw steps | "
                f"{fps / REFERENCE_FPS[name]:,.0f}x the reference design | target {TARGET_FPS[name]:,}: "
                f"{'met' if fps >= TARGET_FPS[name] else 'NOT met'}"
            )
        same = all(report == reports[first] for report in reports.values())
        print(f"{name:>8} generator: the same files (SHA-256) and report for every number of workers: "
              f"{'yes' if same else 'NO'}")
    report = runs["balanced"][2][first]
    raw = report["raw_frames_labelled"]
    print(f"balanced run labelled {raw:,} frames for {args.balanced_frames:,} "
          f"({raw / args.balanced_frames:.2f} per kept frame)")
    print(format_shares(report))
    target = (1 - 0.5) / len(OBJECT_CLASSES)
    shares = report["target_share"]
    worst = max(abs(shares[split][name] - target) for split in shares for name in TARGETS[:-1])
    print(f"largest deviation of an object class's target share from {100 * target:.2f}%: {100 * worst:.2f} pp "
          f"(band +-2 pp: {'met' if worst <= 0.02 else 'NOT met'})")


if __name__ == "__main__":
    main()
