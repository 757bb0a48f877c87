"""Throughput of the data generators, against the raw Procgen step rate measured in the same run.

    python benchmarks/bench_data_generation.py [--basic-frames 10000] [--balanced-frames 20000]

Prints frames per second of both generators (labels and files included), the raw step and
reset rates of a 64-env ``ProcgenGym3Env`` measured before and after them, and the ratios. A
fresh-level frame costs one reset and K random steps, which gives the ceiling. Then the class
shares the balanced run achieved (target shares are exact by construction; the acceptance band
is +-2 percentage points). Other processes on the machine depress every figure alike, so read
the ratios.
"""

from __future__ import annotations

import argparse
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


def timed(generate, frames: int) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        report = generate(out, frames, progress=False)
        return frames / (time.perf_counter() - start), report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--basic-frames", type=int, default=10_000)
    parser.add_argument("--balanced-frames", type=int, default=20_000)
    parser.add_argument("--random-actions", type=int, default=10)
    args = parser.parse_args()
    before = raw_rates(64, 400)
    basic_fps, _ = timed(generate_basic_dataset, args.basic_frames)
    balanced_fps, report = timed(generate_balanced_dataset, args.balanced_frames)
    after = raw_rates(64, 400)
    step_rate, reset_rate = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
    ceiling = 1 / (1 / reset_rate + args.random_actions / step_rate)

    print(f"raw Procgen, 64 envs, heist memory: {before[0]:,.0f} / {after[0]:,.0f} steps/s (before / after), "
          f"{before[1]:,.0f} / {after[1]:,.0f} fresh levels/s")
    print(f"  ceiling: {ceiling:,.0f} fresh-level frames/s at {args.random_actions} random actions, "
          "without labels or files")
    runs = (("basic", basic_fps, args.basic_frames), ("balanced", balanced_fps, args.balanced_frames))
    for name, fps, frames in runs:
        print(
            f"{name:>8} generator: {fps:8,.0f} frames/s over {frames:,} labelled frames | "
            f"{fps / ceiling:.2f} of the ceiling | {fps / step_rate * 1000:.1f} frames per 1000 raw steps | "
            f"{fps / REFERENCE_FPS[name]:,.0f}x the reference design | target {TARGET_FPS[name]:,}: "
            f"{'met' if fps >= TARGET_FPS[name] else 'NOT met'}"
        )
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
