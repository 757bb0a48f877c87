"""Basic dataset: frames of any Procgen game, each from a fresh level after K random actions.

Frames are split into training and test by level (``dataset_files.is_test_level``), so no level
seed appears in both. For Heist every frame is also labelled exactly from the emulator state
(``labels.LABEL_ARRAYS``); other games get ``level_seeds`` only.

    python -m gym_autoencoder.data_generation.sample_generator_heist_basic --num-samples 50000 --output-dir data/basic
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from gym_autoencoder.data_generation.arguments import (
    check_game_mode,
    check_output_dir,
    check_run,
    check_workers,
    common_parser,
    run_cli,
    split_counts,
)
from gym_autoencoder.data_generation.dataset_files import SPLITS, DatasetWriter, is_test_level
from gym_autoencoder.data_generation.label_pool import LabelPool, labelled_rounds
from gym_autoencoder.data_generation.labels import OBJECT_CLASSES
from gym_autoencoder.data_generation.procgen_rollout import Rollout


def generate_basic_dataset(
    output_dir: str | os.PathLike,
    num_samples: int,
    seed: int = 0,
    test_fraction: float = 0.1,
    random_actions: int = 10,
    game: str = "heist",
    distribution_mode: str = "memory",
    use_backgrounds: bool = False,
    labels: bool = True,
    num_envs: int = 64,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``num_samples`` frames (``round(num_samples * test_fraction)`` of them test) to ``output_dir``.

    Each frame shows a fresh level after ``random_actions`` uniformly random actions. ``labels``
    (Heist only) adds the exact labels of every frame, made by ``workers`` processes
    (``label_pool``; the files are the same for any number). Returns the report also written to
    ``generation_report.json``.
    """
    counts = split_counts(num_samples, test_fraction)
    check_game_mode(game, distribution_mode)
    check_run(seed, random_actions, num_envs)
    check_workers(workers)
    check_output_dir(output_dir)
    labelled = labels and game == "heist"
    visible = dict.fromkeys(SPLITS, np.zeros(len(OBJECT_CLASSES), np.int64))
    with LabelPool(workers if labelled else 1, num_envs) as labeller:
        rollout = Rollout(game, num_envs, seed, random_actions, distribution_mode, use_backgrounds)
        rounds = labelled_rounds(rollout, labeller, labels=labelled)
        with DatasetWriter(output_dir, counts) as writer, tqdm(
            total=num_samples, desc=f"{game} frames", unit="frame", disable=not progress
        ) as bar:
            while not writer.complete:
                capture, rows, played = next(rounds)
                test = is_test_level(capture.level_seeds, test_fraction)
                for split, chosen in zip(SPLITS, (~test, test)):
                    taken = writer.add(split, capture.frames[chosen], {k: v[chosen] for k, v in rows.items()})
                    if labelled:
                        visible[split] = visible[split] + rows["visible"][chosen][:taken].sum(axis=0)
                    bar.update(taken)
            writer.report = {
                "generator": "basic",
                "arguments": {
                    "num_samples": num_samples, "seed": seed, "test_fraction": test_fraction,
                    "random_actions": random_actions, "game": game, "distribution_mode": distribution_mode,
                    "use_backgrounds": use_backgrounds, "labels": labelled, "num_envs": num_envs,
                },
                "frames": counts,
                "procgen_rounds": played,
            }
            if labelled:
                writer.report["visible_share"] = {
                    split: dict(zip(OBJECT_CLASSES, (visible[split] / counts[split]).round(4).tolist()))
                    for split in SPLITS
                }
    return writer.report


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_parser(__doc__.splitlines()[0])
    parser.add_argument("--game", default="heist", help="any Procgen game")
    parser.add_argument("--backgrounds", action="store_true", help="draw the game's background images")
    parser.add_argument("--no-labels", action="store_true", help="skip the Heist labels (frames and level seeds only)")

    def generate(args: argparse.Namespace) -> None:
        generate_basic_dataset(
            args.output_dir, args.num_samples, seed=args.seed, test_fraction=args.test_fraction,
            random_actions=args.random_actions, game=args.game, distribution_mode=args.distribution_mode,
            use_backgrounds=args.backgrounds, labels=not args.no_labels, num_envs=args.num_envs, workers=args.workers,
            progress=not args.no_progress,
        )

    return run_cli(parser, generate, argv)


if __name__ == "__main__":
    sys.exit(main())
