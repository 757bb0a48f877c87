"""PPO from RLlib on Ray: encoded Heist played by several env runners (worker processes).

The environment is registered with ``ray.tune.register_env``; each env runner builds it with
``gymnasium.make("gym_autoencoder:vae-alex-v0")``, which loads the shipped VAE_Alex weights from
the installed package, so every machine of a cluster needs ``pip install "gym-autoencoder[rllib]"``.
The learner runs in this process. By default the script starts a local Ray with ``--num-cpus``
CPUs and shuts it down at the end; ``--address auto`` (or ``HOST:PORT``) joins a running cluster.
Prints, per training iteration, the environment steps so far, the mean return of the episodes
that ended, PPO's total loss and the steps per second.

RLlib pins its own Gymnasium version: install it in a virtual environment of its own.

    python examples/rllib_ppo.py --env-runners 2 --iterations 5
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import gymnasium
import ray
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    EPISODE_RETURN_MEAN,
    LEARNER_RESULTS,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
)
from ray.tune.registry import register_env

ENV_NAME = "gym_autoencoder_env"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-id", default="vae-alex-v0", help="encoded environment id (default: vae-alex-v0)")
    parser.add_argument("--iterations", type=int, default=5, help="training iterations")
    parser.add_argument("--env-runners", type=int, default=2, help="env runner processes")
    parser.add_argument("--train-batch-size", type=int, default=2000, help="environment steps per iteration")
    parser.add_argument("--minibatch-size", type=int, default=250)
    parser.add_argument("--num-epochs", type=int, default=4, help="PPO epochs per iteration")
    parser.add_argument(
        "--max-episode-steps", type=int, default=None,
        help="end episodes after this many steps (default: the game's own limit, 1000 in Heist)",
    )
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: env runners + 1)")
    parser.add_argument("--address", default=None, help="join this Ray cluster instead of starting a local Ray")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def make_env(config: dict[str, Any]) -> gymnasium.Env:
    """Built inside each env runner: the encoded environment with the package's shipped weights."""
    import torch

    torch.set_num_threads(1)  # one env runner per CPU
    return gymnasium.make(
        f"gym_autoencoder:{config['env_id']}", device="cpu", max_episode_steps=config["max_episode_steps"]
    )


def main() -> None:
    args = parse_args()
    if args.address:
        ray.init(address=args.address)
    else:
        ray.init(num_cpus=args.num_cpus or args.env_runners + 1, include_dashboard=False)
    register_env(ENV_NAME, make_env)
    config = (
        PPOConfig()
        .environment(ENV_NAME, env_config={"env_id": args.env_id, "max_episode_steps": args.max_episode_steps})
        .env_runners(num_env_runners=args.env_runners, num_envs_per_env_runner=1, num_cpus_per_env_runner=1)
        .learners(num_learners=0)  # the learner runs in this process
        .training(
            train_batch_size_per_learner=args.train_batch_size, minibatch_size=args.minibatch_size,
            num_epochs=args.num_epochs,
        )
        .debugging(seed=args.seed)
    )
    algo = config.build_algo()
    runners = algo.env_runner_group.num_healthy_remote_workers()
    print(f"{runners} env runners, each playing {args.env_id} with the shipped weights", flush=True)
    start = time.perf_counter()
    try:
        for iteration in range(1, args.iterations + 1):
            result = algo.train()
            steps = int(result[NUM_ENV_STEPS_SAMPLED_LIFETIME])
            episode_return = result[ENV_RUNNER_RESULTS].get(EPISODE_RETURN_MEAN, math.nan)
            total_loss = result[LEARNER_RESULTS]["default_policy"]["total_loss"]
            print(
                f"iteration {iteration}/{args.iterations}: {steps:,} env steps  "
                f"episode return mean {episode_return:.2f}  total loss {total_loss:.4f}  "
                f"{steps / (time.perf_counter() - start):,.0f} steps/s",
                flush=True,
            )
    finally:
        algo.stop()
        ray.shutdown()


if __name__ == "__main__":
    main()
