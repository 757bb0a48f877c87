"""What a linear read-out learns from each encoding: the visibility and policy probes side by side.

For the shipped models (or any checkpoints) on a labelled test split, and for the 16x16-pixel
reference: the visibility probe (mean balanced accuracy over the seven object classes) and the
policy probe (balanced accuracy of the oracle direction, chance 0.25), as
``training/metrics.py`` defines them and every evaluation reports them.

    python benchmarks/bench_probes.py --data-dir data/balanced
    python benchmarks/bench_probes.py --data-dir data/balanced --checkpoints runs/A/A.pt runs/B/B.pt
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gym_autoencoder.checkpoint import load_checkpoint, resolve_checkpoint
from gym_autoencoder.model_stubs import MODEL_NAMES
from gym_autoencoder.training import metrics
from gym_autoencoder.training.data import Split, open_split


def features(encode, split: Split, batch: int = 256) -> np.ndarray:
    """(N, F) float32 features of every frame of ``split``."""
    with torch.inference_mode():
        return np.concatenate([encode(split.batch(slice(start, start + batch), "cpu")).flatten(1).numpy()
                               for start in range(0, len(split), batch)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="a data set whose test labels hold oracle_direction")
    parser.add_argument("--checkpoints", nargs="+", default=list(MODEL_NAMES),
                        help="shipped model names or checkpoint paths (default: the six shipped models)")
    args = parser.parse_args(argv)
    split = open_split(Path(args.data_dir), "test")
    visible, directions = split.label("visible"), split.label("oracle_direction")
    if visible is None or directions is None:
        parser.error(f"{args.data_dir}'s test labels lack visible or oracle_direction; regenerate the data")
    rows = [("16x16 pixels", metrics.downsampled_pixels)]
    for name in args.checkpoints:
        model, _ = load_checkpoint(resolve_checkpoint(name))
        rows.append((str(name), model.eval().encode))
    print(f"{len(split)} test frames of {args.data_dir}; chance: policy 0.25, visibility 0.5")
    print(f"{'encoding':<44}{'floats':>7}{'visibility':>12}{'policy':>9}")
    for name, encode in tqdm(rows, desc="probes", leave=False):
        x = features(encode, split)
        visibility = np.nanmean(metrics.logistic_probe(x, visible))
        policy = metrics.policy_probe(x, directions)
        shown = "n/a" if math.isnan(policy) else f"{policy:.3f}"
        tqdm.write(f"{name:<44}{x.shape[1]:>7}{visibility:>12.3f}{shown:>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
