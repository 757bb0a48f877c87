"""PPO from Stable-Baselines3 on encoded Heist, beside the same budget on raw pixels.

Two runs with the same PPO settings and the same number of environment steps:

1. ``MlpPolicy`` on ``gymnasium.make_vec("gym_autoencoder:vae-alex-v0", num_envs=N)``: N games in
   one Procgen instance, their frames encoded by the shipped VAE_Alex in one batch per step
   (64 floats per observation).
2. ``CnnPolicy`` (SB3's Nature CNN) on the same Procgen game's raw 64 x 64 RGB frames.

Each run prints, after every rollout, the episodes finished so far with their mean return and
the steps per second, then a summary line, so the two can be compared. Heist's reward is 10 for
reaching the gem and 0 otherwise; a short run is about speed more than returns.

    python examples/ppo_stable_baselines3.py                  # both runs, 16,384 steps each
    python examples/ppo_stable_baselines3.py --skip-pixels    # the encoded run only
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from gym_autoencoder.procgen_games import import_procgen


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-id", default="vae-alex-v0", help="encoded environment id (default: vae-alex-v0)")
    parser.add_argument("--timesteps", type=int, default=16_384, help="environment steps per run")
    parser.add_argument("--num-envs", type=int, default=8, help="games stepped together")
    parser.add_argument("--n-steps", type=int, default=256, help="PPO rollout length per game")
    parser.add_argument("--batch-size", type=int, default=256, help="PPO minibatch size")
    parser.add_argument("--n-epochs", type=int, default=4, help="PPO epochs per rollout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (1 suits a busy CPU)")
    parser.add_argument("--skip-pixels", action="store_true", help="leave out the raw-pixel CnnPolicy run")
    return parser.parse_args()


class RawHeistVectorEnv(VectorEnv):
    """Procgen's raw uint8 (64, 64, 3) frames as a Gymnasium vector env (procgen ships only gym3/gym APIs).

    Autoreset SAME_STEP, as Procgen plays: where an episode ends, ``obs[i]`` is already the next
    level's first frame; ``final_obs[i]`` is the ended episode's last shown frame. Heist episodes
    end by reaching the gem (terminated) or at the time limit (truncated).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int, seed: int) -> None:
        self.procgen = import_procgen().ProcgenGym3Env(
            num=num_envs, env_name="heist", distribution_mode="memory", rand_seed=seed, use_backgrounds=False
        )
        self.num_envs = num_envs
        self.single_observation_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
        self.single_action_space = spaces.Discrete(15)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        return self.procgen.observe()[1]["rgb"], {}  # Procgen starts its games when made; no reset

    def step(self, actions: np.ndarray):
        before = self.procgen.observe()[1]["rgb"]
        self.procgen.act(np.asarray(actions, dtype=np.int32))
        rewards, observation, first = self.procgen.observe()
        completed = np.array([info["prev_level_complete"] for info in self.procgen.get_info()], dtype=bool)
        final_obs = np.full(self.num_envs, None, dtype=object)
        for i in np.flatnonzero(first):
            final_obs[i] = before[i]
        info = {"final_obs": final_obs, "_final_obs": first}
        return observation["rgb"], rewards, first & completed, first & ~completed, info


class SB3VecEnv(VecEnv):
    """Stable-Baselines3's ``VecEnv`` interface over a Gymnasium vector env with SAME_STEP autoreset."""

    def __init__(self, envs: VectorEnv) -> None:
        self.envs = envs
        super().__init__(envs.num_envs, envs.single_observation_space, envs.single_action_space)

    def reset(self) -> np.ndarray:
        observations, _ = self.envs.reset(seed=self._seeds[0])
        self._reset_seeds()
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        observations, rewards, terminated, truncated, info = self.envs.step(self._actions)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):  # what SB3 bootstraps truncated episodes from
            infos[i] = {"terminal_observation": info["final_obs"][i], "TimeLimit.truncated": bool(truncated[i])}
        return observations, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.envs.close()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.envs, attr_name, None)] * self.num_envs

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.envs, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        raise NotImplementedError("the games share one vector env; call its methods on .envs")

    def env_is_wrapped(self, wrapper_class: type[gymnasium.Wrapper], indices=None) -> list[bool]:
        return [False] * self.num_envs


class ProgressPrinter(BaseCallback):
    """After each rollout: steps so far, episodes finished, their mean return, steps per second."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self.returns: list[float] = []

    def _on_training_start(self) -> None:
        self.start = time.perf_counter()

    def _on_step(self) -> bool:
        self.returns += [info["episode"]["r"] for info in self.locals["infos"] if "episode" in info]
        return True

    def _on_rollout_end(self) -> None:
        seconds = time.perf_counter() - self.start
        mean = f"{np.mean(self.returns):.2f}" if self.returns else "-"
        print(
            f"{self.label}: {self.num_timesteps:>7,} steps  {len(self.returns):>4} episodes  "
            f"mean return {mean:>5}  {self.num_timesteps / seconds:,.0f} steps/s",
            flush=True,
        )


def train(label: str, policy: str, envs: VectorEnv, args: argparse.Namespace) -> None:
    """PPO for ``args.timesteps`` steps on ``envs``; prints progress and a summary line."""
    vec_env = VecMonitor(SB3VecEnv(envs))  # VecMonitor adds info["episode"] when an episode ends
    model = PPO(
        policy, vec_env, n_steps=args.n_steps, batch_size=args.batch_size, n_epochs=args.n_epochs,
        seed=args.seed, device="cpu", verbose=0,
    )
    printer = ProgressPrinter(label)
    start = time.perf_counter()
    model.learn(total_timesteps=args.timesteps, callback=printer)
    seconds = time.perf_counter() - start
    mean = f"{np.mean(printer.returns):.2f}" if printer.returns else "- (no episode ended)"
    print(
        f"{label} done: {model.num_timesteps:,} steps in {seconds:.1f} s = {model.num_timesteps / seconds:,.0f} "
        f"steps/s; {len(printer.returns)} episodes, mean return {mean}",
        flush=True,
    )
    vec_env.close()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    encoded = gymnasium.make_vec(f"gym_autoencoder:{args.env_id}", num_envs=args.num_envs, device="cpu")
    train(f"encoded {args.env_id} MlpPolicy", "MlpPolicy", encoded, args)
    if not args.skip_pixels:
        train("raw pixels CnnPolicy", "CnnPolicy", RawHeistVectorEnv(args.num_envs, args.seed), args)


if __name__ == "__main__":
    main()
