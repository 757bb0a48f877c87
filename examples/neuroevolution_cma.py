"""Neuroevolution with CMA-ES: a linear policy on VAE_Alex's 64-float encoding of Heist.

The policy is ``action = argmax(W @ obs + b)`` with W of 15 x 64 and b of 15 (975 numbers).
CMA-ES (the ``cma`` package, diagonal covariance for this many parameters) proposes a population
of parameter vectors each generation; every candidate plays ``--episodes`` episodes, and all of a
generation's episodes run together in one ``gymnasium.make_vec`` batch (one Procgen instance, one
encoder call per step). The score of a candidate is its mean episode return. Prints, per
generation, the best and mean return and the steps per second; at the end the best candidate found.

    python examples/neuroevolution_cma.py --generations 10 --population 16 --seed 0
"""

from __future__ import annotations

import argparse
import time

import cma
import gymnasium
import numpy as np
import torch

NUM_ACTIONS = 15  # Procgen's buttons


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-id", default="vae-alex-v0", help="encoded environment id with a flat encoding")
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--population", type=int, default=16, help="candidates per generation")
    parser.add_argument("--episodes", type=int, default=2, help="episodes per candidate and generation")
    parser.add_argument("--max-steps", type=int, default=500, help="steps at most per episode (Heist's limit: 1000)")
    parser.add_argument("--sigma", type=float, default=0.5, help="CMA-ES initial step size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (1 suits a busy CPU)")
    return parser.parse_args()


def act(params: np.ndarray, observations: np.ndarray) -> np.ndarray:
    """Each game's action from its candidate's linear policy: params (N, 15 * (D + 1)), observations (N, D)."""
    weights = params.reshape(len(params), NUM_ACTIONS, -1)  # (N, 15, D + 1): W beside b
    logits = np.einsum("nad,nd->na", weights[:, :, :-1], observations) + weights[:, :, -1]
    return logits.argmax(axis=1)


def evaluate(envs: gymnasium.vector.VectorEnv, candidates: list[np.ndarray], episodes: int, max_steps: int,
             seed: int) -> tuple[np.ndarray, int]:
    """Mean return of each candidate over ``episodes`` episodes, all played in one batch; and the steps taken.

    Game ``i`` plays candidate ``i // episodes``; each game's first episode counts (the vector env
    starts the next one by itself, SAME_STEP autoreset, and those steps are ignored).
    """
    params = np.repeat(np.asarray(candidates), episodes, axis=0)
    observations, _ = envs.reset(seed=seed)
    returns = np.zeros(envs.num_envs)
    playing = np.ones(envs.num_envs, dtype=bool)
    steps = 0
    for _ in range(max_steps):
        observations, rewards, terminated, truncated, _ = envs.step(act(params, observations))
        returns += rewards * playing
        steps += int(playing.sum())
        playing &= ~(terminated | truncated)
        if not playing.any():
            break
    return returns.reshape(len(candidates), episodes).mean(axis=1), steps


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    envs = gymnasium.make_vec(
        f"gym_autoencoder:{args.env_id}", num_envs=args.population * args.episodes, device="cpu"
    )
    dimension = int(np.prod(envs.single_observation_space.shape))
    strategy = cma.CMAEvolutionStrategy(
        np.zeros(NUM_ACTIONS * (dimension + 1)), args.sigma,
        # cma reads seed 0 as "seed from the clock", hence + 1
        {"popsize": args.population, "seed": args.seed + 1, "CMA_diagonal": True, "verbose": -9},
    )
    rng = np.random.default_rng(args.seed)
    best_return = -np.inf
    for generation in range(1, args.generations + 1):
        start = time.perf_counter()
        candidates = strategy.ask()
        scores, steps = evaluate(envs, candidates, args.episodes, args.max_steps, int(rng.integers(2**31)))
        strategy.tell(candidates, list(-scores))  # CMA-ES minimises
        best_return = max(best_return, float(scores.max()))
        seconds = time.perf_counter() - start
        print(
            f"generation {generation:>3}/{args.generations}  best {scores.max():6.2f}  mean {scores.mean():6.2f}  "
            f"({len(candidates) * args.episodes} episodes, {steps:,} steps, {steps / seconds:,.0f} steps/s)",
            flush=True,
        )
    envs.close()
    print(f"best candidate: mean return {best_return:.2f} over {args.episodes} episodes, {strategy.N} parameters")


if __name__ == "__main__":
    main()
