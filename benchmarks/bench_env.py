"""Steps per second of raw Procgen, the scalar and the vectorised encoded environments, and the
encoders' own batched throughput, all measured in one run so that the ratios compare like with like.

    python benchmarks/bench_env.py [--seconds 1] [--device cpu] [--threads 1]

Uses the shipped checkpoints where present, else freshly initialised models (speed does not
depend on the weights). The acceptance ratio is vec64 / enc64: the vectorised environment's
throughput with 64 games over the encoder's own batch-64 throughput (target >= 0.5).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium
import numpy as np
import torch
from tqdm import tqdm

from gym_autoencoder import save_checkpoint
from gym_autoencoder.checkpoint import shipped_checkpoint_path
from gym_autoencoder.errors import CheckpointError
from gym_autoencoder.model_stubs import build_model
from gym_autoencoder.procgen_batch import PROCGEN_THREADS, ProcgenBatch
from gym_autoencoder.procgen_games import NUM_ACTIONS, ProcgenOptions
from gym_autoencoder.registration import ENV_ARCHITECTURES

BATCHES = (1, 8, 64)
ACTION_POOL = 4096


def rate(call: Callable[[], object], units: int, seconds: float) -> float:
    """``units`` per second of ``call``, run for at least ``seconds`` after three warm-up calls."""
    for _ in range(3):
        call()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 3:
        call()
        calls += 1
    return units * calls / elapsed


def cycling(values: np.ndarray) -> Callable[[], np.ndarray]:
    """A function returning the next of ``values`` on each call, round and round."""
    return functools.partial(next, itertools.cycle(values))


def checkpoints(directory: Path) -> tuple[dict[str, Path], str]:
    """A checkpoint per env id: the shipped one, else a freshly initialised model saved in ``directory``."""
    paths, fresh = {}, []
    for env_id, architecture in ENV_ARCHITECTURES.items():
        try:
            paths[env_id] = shipped_checkpoint_path(architecture)
        except CheckpointError:
            kwargs = {"perceptual_features": "random"} if architecture == "VAE_Alex" else {}
            paths[env_id] = directory / f"{architecture.lower()}.pt"
            save_checkpoint(paths[env_id], build_model(architecture, **kwargs))
            fresh.append(architecture)
    note = f"freshly initialised weights for {', '.join(fresh)}" if fresh else "shipped checkpoints"
    return paths, note


def raw_procgen_rates(seconds: float, actions: np.ndarray) -> tuple[dict[int, float], np.ndarray]:
    """Frames per second of raw Procgen (1 game, and 64 games), set up as the environments set it up."""
    options, rates = ProcgenOptions(), {}
    for num, threads in ((1, 0), (64, PROCGEN_THREADS)):
        env = ProcgenBatch(options, num, rand_seed=0, num_threads=threads).env
        next_actions = cycling(actions[: ACTION_POOL // num * num].reshape(-1, num).astype(np.int32))

        def step() -> None:
            env.act(next_actions())
            env.observe()
            env.get_info()

        rates[num] = rate(step, num, seconds)
    return rates, env.observe()[1]["rgb"]


def env_rates(env_id: str, checkpoint: Path, device: str, seconds: float, actions: np.ndarray,
              frames: np.ndarray) -> dict[str, float]:
    """Steps per second of the scalar env, the vector env per batch size, and the bare encoder."""
    env = gymnasium.make(f"gym_autoencoder:{env_id}", checkpoint=checkpoint, device=device)
    env.reset(seed=0)
    next_action = cycling(actions)

    def scalar_step() -> None:
        if any(env.step(int(next_action()))[2:4]):
            env.reset()

    rates = {"scalar": rate(scalar_step, 1, seconds)}
    for num in BATCHES:
        envs = gymnasium.make_vec(f"gym_autoencoder:{env_id}", num_envs=num, checkpoint=checkpoint, device=device)
        envs.reset(seed=0)
        next_actions = cycling(actions[: ACTION_POOL // num * num].reshape(-1, num))
        rates[f"vec{num}"] = rate(lambda: envs.step(next_actions()), num, seconds)
        rates[f"enc{num}"] = rate(lambda: envs.autoencoder.encode(frames[:num]), num, seconds)
        envs.close()
    env.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement (default: 1)")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--envs", nargs="+", default=list(ENV_ARCHITECTURES), choices=list(ENV_ARCHITECTURES))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    actions = np.random.default_rng(0).integers(0, NUM_ACTIONS, ACTION_POOL)
    with tempfile.TemporaryDirectory() as tmp:
        paths, note = checkpoints(Path(tmp))
        raw, frames = raw_procgen_rates(args.seconds, actions)
        results = {
            env_id: env_rates(env_id, paths[env_id], args.device, args.seconds, actions, frames)
            for env_id in tqdm(args.envs, desc="environments")
        }
    print(f"\ndevice {args.device}, torch threads {torch.get_num_threads()}, {args.seconds:g} s per "
          f"measurement, {note}")
    print(f"raw Procgen heist: {raw[1]:.0f} steps/s with 1 game, {raw[64]:.0f} with 64 games")
    print("steps (frames) per second; vecN: N games in one env; encN: the encoder alone on batches of N\n")
    columns = ["scalar", *(f"vec{n}" for n in BATCHES), *(f"enc{n}" for n in BATCHES)]
    ratios = [f"vec{n}/enc{n}" for n in reversed(BATCHES)]
    print("| env id | " + " | ".join(columns + ratios + ["scalar/raw"]) + " |")
    print("|---" * (len(columns) + len(ratios) + 2) + "|")
    for env_id, r in results.items():
        cells = [f"{r[c]:.0f}" for c in columns]
        cells += [f"{r[f'vec{n}'] / r[f'enc{n}']:.2f}" for n in reversed(BATCHES)]
        cells.append(f"{r['scalar'] / raw[1]:.3f}")
        print(f"| {env_id} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
