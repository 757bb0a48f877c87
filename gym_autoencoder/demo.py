"""A random agent in an encoded environment: prints steps per second, saves a side-by-side video.

    python -m gym_autoencoder.demo --env auto-unpool-v0 --steps 500 --video demo.mp4

Uses the shipped checkpoint of the environment's architecture unless ``--checkpoint`` names one.
The video shows each frame (left) beside the model's reconstruction of it (right).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium
import torch
from tqdm import tqdm

from gym_autoencoder.registration import ENV_ARCHITECTURES, GENERIC_ENV_ID
from gym_autoencoder.envs.rendering import RENDER_FPS, video_writer
from gym_autoencoder.errors import GymAutoencoderError, OneLineParser, report_error


@dataclass
class DemoResult:
    steps: int
    episodes: int
    step_seconds: float  # time spent in env.step alone
    total_seconds: float  # with rendering and video writing

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.step_seconds


def run_demo(
    env_id: str,
    steps: int,
    video: Path | None,
    checkpoint: str | None = None,
    device: str = "auto",
    seed: int = 0,
) -> DemoResult:
    """Run a random agent for ``steps`` steps; write the side-by-side video to ``video`` if given."""
    kwargs = {"checkpoint": checkpoint} if checkpoint else {}
    env = gymnasium.make(
        f"gym_autoencoder:{env_id}", device=device, render_mode="rgb_array" if video else None, **kwargs
    )
    env.action_space.seed(seed)
    episodes, step_seconds = 1, 0.0
    start = time.perf_counter()
    with video_writer(video) if video else contextlib.nullcontext() as write:
        env.reset(seed=seed)
        for _ in tqdm(range(steps), desc=env_id, unit="step"):
            if write:
                write(env.render())
            action = env.action_space.sample()
            tick = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(action)
            step_seconds += time.perf_counter() - tick
            if terminated or truncated:
                episodes += 1
                env.reset()
    env.close()
    return DemoResult(steps, episodes, step_seconds, time.perf_counter() - start)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m gym_autoencoder.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="auto-unpool-v0", choices=[*ENV_ARCHITECTURES, GENERIC_ENV_ID],
                        help="environment id (default: auto-unpool-v0)")
    parser.add_argument("--checkpoint", help="checkpoint path instead of the shipped model (needed for "
                        f"{GENERIC_ENV_ID})")
    parser.add_argument("--steps", type=int, default=500, help="random steps to take (default: 500)")
    parser.add_argument("--video", type=Path, default=Path("demo.mp4"),
                        help=f"side-by-side video to write, {RENDER_FPS} fps (default: demo.mp4)")
    parser.add_argument("--no-video", action="store_true", help="only measure steps per second")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0, help="seed of the level and of the random actions")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; 1 is "
                        "fastest for one frame a step on a busy machine)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if not 0 <= args.seed < 2**32:
        parser.error(f"--seed must be an integer from 0 to {2**32 - 1}, got {args.seed}")
    if not args.no_video and args.video.is_dir():
        parser.error(f"--video {args.video} is a directory; name a file, such as {args.video / 'demo.mp4'}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    video = None if args.no_video else args.video
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = run_demo(args.env, args.steps, video, args.checkpoint, args.device, args.seed)
    except (GymAutoencoderError, OSError) as err:
        return report_error(err, "demo")
    print(
        f"{args.env}: {result.steps} random steps over {result.episodes} episode(s): "
        f"{result.steps_per_second:.0f} steps/s in env.step, "
        f"{result.steps / result.total_seconds:.0f} steps/s with rendering and video"
    )
    if video:
        print(f"video (frame | reconstruction): {video}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
