"""Checks on the generators' arguments, and the command-line front end both generators share.

Every check raises GenerationError with one line that names the problem and the fix; the
command lines print that line as ``error: ...`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from gym_autoencoder import procgen_games
from gym_autoencoder.atomic import check_writable
from gym_autoencoder.errors import GymAutoencoderError, OneLineParser, report_error
from gym_autoencoder.procgen_games import MAX_SEED


class GenerationError(GymAutoencoderError, ValueError):
    """Arguments a data generator cannot work with."""


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_game_mode(game: str, distribution_mode: str) -> None:
    """Raise GenerationError unless ``game`` implements ``distribution_mode`` with many levels.

    "exploration" plays a single level, which a split of training and test frames by level cannot use.
    """
    procgen_games.check_game_mode(game, distribution_mode, GenerationError)
    if distribution_mode == "exploration":
        raise GenerationError(
            "exploration mode plays a single level, which the split into training and test levels cannot "
            "use; choose distribution mode easy, hard or memory"
        )


def check_run(seed: int, random_actions: int, num_envs: int) -> None:
    """Raise GenerationError unless the seed, action count and environment count are usable."""
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise GenerationError(f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    if not _is_int(random_actions) or random_actions < 0:
        raise GenerationError(f"random_actions must be a non-negative integer, got {random_actions!r}")
    if not _is_int(num_envs) or num_envs <= 0:
        raise GenerationError(f"num_envs must be a positive integer, got {num_envs!r}")


def available_cores() -> int:
    """The cores this process may run on (the generators' default number of workers)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_workers(workers: int) -> None:
    """Raise GenerationError unless ``workers`` (processes that label frames) is a positive integer."""
    if not _is_int(workers) or workers <= 0:
        raise GenerationError(f"workers must be a positive integer (processes labelling frames), got {workers!r}")


def split_counts(num_samples: int, test_fraction: float) -> dict[str, int]:
    """Frames per split: ``round(num_samples * test_fraction)`` test frames, the rest training."""
    if not _is_int(num_samples) or num_samples <= 0:
        raise GenerationError(f"num_samples must be a positive integer, got {num_samples!r}")
    if not isinstance(test_fraction, (int, float)) or not 0.0 < float(test_fraction) < 1.0:
        raise GenerationError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    test = int(round(num_samples * float(test_fraction)))
    if test == 0 or test == num_samples:
        raise GenerationError(
            f"{num_samples} samples with test_fraction {test_fraction} leave a split empty; "
            "ask for more samples or a fraction nearer 0.5"
        )
    return {"training": num_samples - test, "test": test}


def check_output_dir(output_dir: str | os.PathLike) -> Path:
    """Create ``output_dir`` if needed; one ``StorageError`` line unless files can be written there."""
    return check_writable(output_dir, "choose a writable --output-dir")


def common_parser(description: str) -> OneLineParser:
    """The options both generators take."""
    parser = OneLineParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--num-samples", type=int, required=True, default=argparse.SUPPRESS,
                        help="frames to generate, both splits together")
    parser.add_argument("--output-dir", required=True, default=argparse.SUPPRESS,
                        help="directory for the .npy/.npz files (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of procgen's levels and of the random actions")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of frames in the test split")
    parser.add_argument("--random-actions", type=int, default=10,
                        help="uniformly random actions between a level's start and its frame")
    parser.add_argument("--distribution-mode", default="memory", help="procgen distribution mode")
    parser.add_argument("--num-envs", type=int, default=64, help="environments stepped together")
    parser.add_argument("--workers", type=int, default=available_cores(),
                        help="processes labelling frames, one per core; any number gives the same files")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def run_cli(parser: argparse.ArgumentParser, generate: Callable[[argparse.Namespace], object],
            argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run ``generate``; errors print one line and return 2 (bad input) or 1 (I/O)."""
    args = parser.parse_args(argv)
    try:
        generate(args)
    except (GymAutoencoderError, OSError) as err:
        return report_error(err)
    return 0
