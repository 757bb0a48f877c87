"""Balanced Heist dataset: half the frames show no key, lock or gem, half are spread evenly over them.

Every frame is labelled exactly from the emulator state (``labels.LABEL_ARRAYS``) and drawn for
one *target class*: ``none`` (no object visible) or one object class it shows. Quotas fix how
many frames each target class gets in each split, so the target shares are exact: by default
50% ``none`` and 50% / 7 = 7.14% for each of the seven object classes. A frame showing several
objects counts for the class that is furthest behind its quota; the report also gives the share
of frames in which each class is visible at all (higher, since objects share frames), unless
``single_object`` admits only frames with at most one object class.

Red keys and locks are about nine times rarer than blue ones in naive frames, so sampling is
active: an environment whose level holds an object of a class still behind its quota, close to
the agent, stays on that level for further frames (``max_frames_per_level``) instead of
starting a new one. Train and test are split by level, as in the basic generator.

    python -m gym_autoencoder.data_generation.sample_generator_heist --num-samples 20000 --output-dir data/balanced
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
    GenerationError,
    check_game_mode,
    check_output_dir,
    check_run,
    check_workers,
    common_parser,
    run_cli,
    split_counts,
)
from gym_autoencoder.data_generation.dataset_files import SPLITS, DatasetWriter, is_test_level
from gym_autoencoder.data_generation.heist_labels import in_label_order
from gym_autoencoder.data_generation.label_pool import LabelPool, label_round
from gym_autoencoder.data_generation.labels import OBJECT_CLASSES
from gym_autoencoder.data_generation.procgen_rollout import Capture, Rollout

NONE = len(OBJECT_CLASSES)  # target index of frames without objects
TARGETS = (*OBJECT_CLASSES, "none")
NEAR = 5.5  # world units (maze cells) from the agent: the 8 x 8 memory-mode view reaches 4
MAX_RAW_FRAMES_PER_SAMPLE = 50  # give up (clear error) rather than loop forever on an impossible target


class Quota:
    """Frames wanted per target class in one split: ``empty_fraction`` for none, the rest shared evenly.

    With ``single_object`` only frames showing at most one object class are taken.
    """

    def __init__(self, total: int, empty_fraction: float, single_object: bool = False) -> None:
        self.single_object = single_object
        empty = int(round(total * empty_fraction))
        objects = total - empty
        per_class = [objects // NONE + (k < objects % NONE) for k in range(NONE)]
        self.target = np.array([*per_class, empty], np.int64)
        self.filled = np.zeros(NONE + 1, np.int64)

    def progress(self) -> np.ndarray:
        """Filled share of each target's quota (1 for a target with no quota)."""
        return np.divide(self.filled, self.target, out=np.ones(NONE + 1), where=self.target > 0)

    def choose(self, visible: np.ndarray) -> int | None:
        """The target a frame showing ``visible`` (7,) bool would fill, or None if all are full."""
        if self.single_object and visible.sum() > 1:
            return None
        open_targets = np.flatnonzero(visible) if visible.any() else np.array([NONE])
        open_targets = open_targets[self.filled[open_targets] < self.target[open_targets]]
        if len(open_targets) == 0:
            return None
        return int(open_targets[np.argmin(self.progress()[open_targets])])

    @property
    def full(self) -> bool:
        """Every target has its frames."""
        return bool((self.filled == self.target).all())

    def behind(self) -> np.ndarray:
        """(7,) bool object classes with room whose progress trails the split's overall progress."""
        overall = self.filled.sum() / max(self.target.sum(), 1)
        room = self.filled < self.target
        return (room & (self.progress() <= overall))[:NONE]


def generate_balanced_dataset(
    output_dir: str | os.PathLike,
    num_samples: int,
    seed: int = 0,
    test_fraction: float = 0.1,
    random_actions: int = 10,
    distribution_mode: str = "memory",
    empty_fraction: float = 0.5,
    max_frames_per_level: int = 8,
    single_object: bool = False,
    num_envs: int = 64,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Write a balanced, exactly labelled Heist dataset of ``num_samples`` frames to ``output_dir``.

    ``single_object`` keeps only frames that show at most one object class, so that visibility
    shares equal target shares too (several times slower: most object frames show two classes
    or more). ``workers`` processes label the frames (``label_pool``); the files are the same
    for any number. Returns the report also written
    to ``generation_report.json`` (achieved target and visibility shares per split).
    """
    counts = split_counts(num_samples, test_fraction)
    check_game_mode("heist", distribution_mode)
    check_run(seed, random_actions, num_envs)
    check_workers(workers)
    if not isinstance(empty_fraction, (int, float)) or not 0.0 <= empty_fraction < 1.0:
        raise GenerationError(f"empty_fraction must lie in [0, 1), got {empty_fraction!r}")
    if isinstance(max_frames_per_level, bool) or not isinstance(max_frames_per_level, int) or max_frames_per_level < 1:
        raise GenerationError(f"max_frames_per_level must be a positive integer, got {max_frames_per_level!r}")
    check_output_dir(output_dir)
    quotas = {split: Quota(counts[split], empty_fraction, single_object) for split in SPLITS}
    visible = {split: np.zeros(NONE, np.int64) for split in SPLITS}
    can_stay = random_actions > 0 and max_frames_per_level > 1
    raw_frames = 0
    with LabelPool(workers, num_envs) as labeller:
        rollout = Rollout("heist", num_envs, seed, random_actions, distribution_mode)
        with DatasetWriter(output_dir, counts) as writer, tqdm(
            total=num_samples, desc="balanced heist frames", unit="frame", disable=not progress
        ) as bar:

            def write(capture: Capture, rows: dict, splits: np.ndarray, targets: np.ndarray, paths: dict) -> None:
                """Add a round's chosen frames with all their labels (``paths``: its path_labels)."""
                rows = in_label_order({**rows, **paths})
                rows["target_class"] = np.where(targets == NONE, -1, targets).astype(np.int8)
                for index, split in enumerate(SPLITS):
                    chosen = (splits == index) & (targets >= 0)
                    taken = writer.add(split, capture.frames[chosen], {k: v[chosen] for k, v in rows.items()})
                    visible[split] += rows["visible"][chosen].sum(axis=0)
                    bar.update(taken)

            last = None  # the last round; the workers find its path labels while the next one is played
            while not all(quota.full for quota in quotas.values()):
                if raw_frames > MAX_RAW_FRAMES_PER_SAMPLE * num_samples + 100_000:
                    missing = [TARGETS[k] for s in SPLITS for k in np.flatnonzero(quotas[s].filled < quotas[s].target)]
                    raise GenerationError(
                        f"found too few frames showing {', '.join(sorted(set(missing)))} in {raw_frames} tries; "
                        "lower --empty-fraction or use another --distribution-mode"
                    )
                capture = rollout.run_round()
                if len(capture.envs) == 0:
                    continue
                raw_frames += len(capture.envs)
                if last is not None:
                    write(*last[:-1], last[-1]())  # its path labels are read before the next round's start
                rows, paths = label_round(rollout, labeller, capture)
                splits = np.where(is_test_level(capture.level_seeds, test_fraction), 1, 0)
                targets = np.full(len(capture.envs), -1, np.int64)
                near = np.abs(rows["object_xy"] - rows["agent_xy"][:, None]).max(axis=2) <= NEAR  # (m, 7)
                for j in range(len(capture.envs)):
                    quota = quotas[SPLITS[splits[j]]]
                    target = quota.choose(rows["visible"][j])
                    if target is not None:
                        quota.filled[target] += 1
                        targets[j] = target
                    if can_stay and capture.frames_on_level[j] < max_frames_per_level and near[j].any():
                        rollout.keep[capture.envs[j]] = bool((near[j] & quota.behind()).any())
                last = (capture, rows, splits, targets, paths)
            if last is not None:
                write(*last[:-1], last[-1]())
            writer.report = {
                "generator": "balanced",
                "arguments": {
                    "num_samples": num_samples, "seed": seed, "test_fraction": test_fraction,
                    "random_actions": random_actions, "distribution_mode": distribution_mode,
                    "empty_fraction": empty_fraction, "max_frames_per_level": max_frames_per_level,
                    "single_object": single_object, "num_envs": num_envs,
                },
                "frames": counts,
                "raw_frames_labelled": raw_frames,
                "procgen_rounds": rollout.rounds,
                "target_share": {
                    split: dict(zip(TARGETS, (quotas[split].filled / counts[split]).round(4).tolist()))
                    for split in SPLITS
                },
                "visible_share": {
                    split: dict(zip(OBJECT_CLASSES, (visible[split] / counts[split]).round(4).tolist()))
                    for split in SPLITS
                },
            }
    return writer.report


def format_shares(report: dict[str, Any]) -> str:
    """The report's target and visibility shares as a small table."""
    lines = [f"{'class':<11}" + "".join(f"{s + ' target':>16}{s + ' visible':>17}" for s in SPLITS)]
    for name in TARGETS:
        cells = ""
        for split in SPLITS:
            visible = report["visible_share"][split].get(name)
            cells += f"{100 * report['target_share'][split][name]:>15.2f}%"
            cells += f"{100 * visible:>16.2f}%" if visible is not None else f"{'':>17}"
        lines.append(f"{name:<11}{cells}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_parser(__doc__.splitlines()[0])
    parser.add_argument("--empty-fraction", type=float, default=0.5, help="share of frames without objects")
    parser.add_argument("--max-frames-per-level", type=int, default=8,
                        help="frames one level may give (active sampling of rare classes)")
    parser.add_argument("--single-object", action="store_true",
                        help="take only frames showing at most one object class (slower)")

    def generate(args: argparse.Namespace) -> None:
        report = generate_balanced_dataset(
            args.output_dir, args.num_samples, seed=args.seed, test_fraction=args.test_fraction,
            random_actions=args.random_actions, distribution_mode=args.distribution_mode,
            empty_fraction=args.empty_fraction, max_frames_per_level=args.max_frames_per_level,
            single_object=args.single_object, num_envs=args.num_envs, workers=args.workers,
            progress=not args.no_progress,
        )
        print(format_shares(report))

    return run_cli(parser, generate, argv)


if __name__ == "__main__":
    sys.exit(main())
