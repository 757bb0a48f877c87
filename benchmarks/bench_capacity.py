"""How far each architecture can go at its fixed encoding size: four references, measured in one run.

- view: the input pixels the encoding depends on at all, and the share of test objects with at
  least one sprite pixel among them. An object wholly outside the encoder's view cannot be drawn
  from the encoding, so that share's mean over classes bounds the object fidelity mean.

- linear: PCA of training frames with as many components as the encoding has floats, scored on
  the test frames: what a linear encoder and decoder of the same size draw.
- memorise: the shipped model (or a fresh one, ``--fresh``) fitted by Adam to a few training
  frames for many steps, with the object-weighted loss of training, then scored on those same
  frames. A model that cannot reach a bar on the frames it trains on cannot reach it on held-out
  levels either, so this bounds what longer training of the architecture can give.
- gap: the shipped model scored on as many training frames as test frames ("train" and "test"
  rows). Where it draws the frames it was trained on much better than new levels, more training
  data, not more capacity or epochs, is what the held-out figures wait for.

Each prints PSNR (dB; n/a for the view) and the object fidelity mean (training/metrics.py); the
references themselves live in training/capacity.py.

    python benchmarks/bench_capacity.py --data-dir data/balanced                    # all six
    python benchmarks/bench_capacity.py --data-dir data/balanced --models Conv_Maxpool --fresh --steps 6000
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict

import numpy as np
import torch

from gym_autoencoder.atomic import atomic_write_text
from gym_autoencoder.model_stubs import MODEL_NAMES, build_model
from gym_autoencoder.training.capacity import (
    Score,
    fidelity_ceiling,
    linear_reconstruction,
    memorise,
    pixels_seen,
    score,
    starting_model,
)
from gym_autoencoder.training.data import open_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="a data set with labels (the balanced generator's)")
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    parser.add_argument("--linear-frames", type=int, default=8000, help="training frames PCA is fitted on")
    parser.add_argument("--test-frames", type=int, default=2000,
                        help="test frames PCA is scored on; also the training and test frames of the gap")
    parser.add_argument("--frames", type=int, default=256, help="training frames the model memorises")
    parser.add_argument("--steps", type=int, default=3000, help="Adam steps of the memorisation")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--object-pixel-weight", type=float, default=1.0)
    parser.add_argument("--fresh", action="store_true", help="memorise from a fresh initialisation")
    parser.add_argument("--skip-view", action="store_true")
    parser.add_argument("--skip-linear", action="store_true")
    parser.add_argument("--skip-memorise", action="store_true")
    parser.add_argument("--skip-gap", action="store_true", help="(the gap is skipped with --fresh too)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    data = open_dataset(args.data_dir)
    rng = np.random.default_rng(0)
    linear_rows = np.sort(rng.choice(len(data.train), min(args.linear_frames, len(data.train)), replace=False))
    test_rows = np.arange(min(args.test_frames, len(data.test)))
    memorise_rows = np.arange(min(args.frames, len(data.train)))
    gap_rows = test_rows[test_rows < len(data.train)]
    scores = []
    for name in args.models:
        model = starting_model(name, args.fresh)
        floats = math.prod(model.encoding_shape)
        if not args.skip_view:
            seen = pixels_seen(build_model(name, **model.config))
            rows, cols = np.nonzero(seen.any(1))[0], np.nonzero(seen.any(0))[0]
            print(f"view {name}: the encoding depends on {int(seen.sum())} of {seen.size} pixels "
                  f"(rows {rows.min()}-{rows.max()}, columns {cols.min()}-{cols.max()})", flush=True)
            scores.append(Score("view", name, floats, len(data.test), None, fidelity_ceiling(seen, data.test)))
        if not args.skip_linear:
            linear = linear_reconstruction(data.train, linear_rows, floats)
            scores.append(Score("linear", name, floats, len(test_rows), *score(linear, data.test, test_rows)))
            print(scores[-1], flush=True)
        if not (args.skip_gap or args.fresh):
            for reference, split in (("train", data.train), ("test", data.test)):
                scores.append(Score(reference, name, floats, len(gap_rows), *score(model.reconstruct, split, gap_rows)))
                print(scores[-1], flush=True)
        if not args.skip_memorise:
            memorise(model, data.train, memorise_rows, args.steps, args.lr, args.object_pixel_weight)
            scores.append(Score("memorise", name, floats, len(memorise_rows),
                                *score(model.reconstruct, data.train, memorise_rows)))
            print(scores[-1], flush=True)
    print(f"\n{'reference':<10}{'model':<20}{'floats':>7}{'frames':>8}{'PSNR dB':>9}{'fidelity':>10}")
    for s in scores:
        shown = "n/a" if s.psnr_db is None else f"{s.psnr_db:.2f}"
        print(f"{s.reference:<10}{s.model:<20}{s.floats:>7}{s.frames:>8}{shown:>9}{s.fidelity:>10.3f}")
    if args.json:
        atomic_write_text(args.json, json.dumps([asdict(s) for s in scores], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
