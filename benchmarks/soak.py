"""Soak test: a vectorised environment of 16 games stepped with random actions for N minutes,
printing resident memory and steps per second every 20 s.

    python benchmarks/soak.py [--minutes 5] [--env-id auto-unpool-v0] [--device cpu] [--threads 1]

Pass line: resident memory grows by less than 1 MB over the second half of the run (a leak per
step would grow it steadily). Exits 1 when the run fails the pass line.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import gymnasium
import numpy as np
import torch

NUM_ENVS = 16
REPORT_EVERY_S = 20.0
MAX_GROWTH_MB = 1.0


def resident_mb() -> float:
    """This process's resident memory now, in MB (from /proc; the peak where /proc is absent)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def soak(env_id: str, minutes: float, device: str, seed: int = 0) -> list[tuple[float, float, float]]:
    """Step ``NUM_ENVS`` games for ``minutes``; (seconds, resident MB, steps/s) every 20 s."""
    envs = gymnasium.make_vec(f"gym_autoencoder:{env_id}", num_envs=NUM_ENVS, device=device)
    rng = np.random.default_rng(seed)
    envs.reset(seed=seed)
    samples, start = [], time.perf_counter()
    last_time, steps = start, 0
    while (now := time.perf_counter()) - start < minutes * 60:
        envs.step(rng.integers(0, envs.single_action_space.n, NUM_ENVS))
        steps += NUM_ENVS
        if now - last_time >= REPORT_EVERY_S:
            samples.append((now - start, resident_mb(), steps / (now - last_time)))
            print(f"{samples[-1][0]:7.0f} s  {samples[-1][1]:8.1f} MB resident  {samples[-1][2]:8.0f} steps/s",
                  flush=True)
            last_time, steps = now, 0
    envs.close()
    return samples


def growth_over_second_half(samples: list[tuple[float, float, float]]) -> float:
    """Resident MB gained from the sample nearest the run's middle to the last one."""
    middle = samples[-1][0] / 2
    half = min(samples, key=lambda sample: abs(sample[0] - middle))
    return samples[-1][1] - half[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to step the games")
    parser.add_argument("--env-id", default="auto-unpool-v0", help="a registered gym_autoencoder id")
    parser.add_argument("--device", default="cpu", help="where the encoder runs")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.minutes * 60 < 2 * REPORT_EVERY_S:
        parser.error(f"--minutes must cover at least two reports ({2 * REPORT_EVERY_S:.0f} s)")
    torch.set_num_threads(args.threads)
    samples = soak(args.env_id, args.minutes, args.device)
    growth = growth_over_second_half(samples)
    rates = [rate for _, _, rate in samples]
    verdict = "pass" if growth < MAX_GROWTH_MB else "FAIL"
    print(f"{args.env_id}, {NUM_ENVS} games, {args.minutes:g} min: resident {samples[0][1]:.1f} -> "
          f"{samples[-1][1]:.1f} MB, {growth:+.2f} MB over the second half ({verdict}: under "
          f"{MAX_GROWTH_MB:g} MB); {np.median(rates):.0f} steps/s median")
    return 0 if verdict == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
