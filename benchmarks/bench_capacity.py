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

Each prints PSNR (dB; n/a for the view) and the object fidelity mean (training/metrics.py).

    python benchmarks/bench_capacity.py --data-dir data/balanced                    # all six
    python benchmarks/bench_capacity.py --data-dir data/balanced --models Conv_Maxpool --fresh --steps 6000
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from gym_autoencoder.data_generation.labels import OBJECT_CLASSES
from gym_autoencoder.atomic import atomic_write_text
from gym_autoencoder.checkpoint import shipped_checkpoint_path
from gym_autoencoder.checkpoint import load_checkpoint
from gym_autoencoder.model_stubs import MODEL_NAMES, BaseAutoencoder, build_model
from gym_autoencoder.training.data import Split, class_balance, open_dataset, pixel_weights
from gym_autoencoder.training.metrics import FIDELITY_MIN_PIXELS, fidelity_summary, object_errors, psnr

Reconstruct = Callable[[torch.Tensor], torch.Tensor]
CPU = torch.device("cpu")


@dataclass
class Score:
    reference: str
    model: str
    floats: int
    frames: int
    psnr_db: float | None
    fidelity: float


def score(reconstruct: Reconstruct, split: Split, rows: np.ndarray, batch: int = 250) -> tuple[float, float]:
    """Mean PSNR and object fidelity mean of ``reconstruct`` on the frames ``rows`` of ``split``."""
    mask, counts = split.label("object_mask"), split.label("pixel_counts")
    values, errors = [], []
    with torch.inference_mode():
        for start in range(0, len(rows), batch):
            part = rows[start:start + batch]
            x = split.batch(part, CPU)
            recon = reconstruct(x)
            values.append(psnr(x, recon))
            errors.append(object_errors(x, recon, mask[part], counts[part]))
    fidelity = fidelity_summary(np.concatenate(errors), tuple(OBJECT_CLASSES))["mean"]
    return float(torch.cat(values).mean()), float(fidelity) if fidelity is not None else math.nan


def pixels_seen(model: BaseAutoencoder, frames: int = 16, seed: int = 0) -> np.ndarray:
    """(64, 64) bool: the input pixels the encoding depends on, i.e. those where the gradient of
    the summed encoding is non-zero for some of ``frames`` random inputs (several inputs, so that
    no pixel is missed for an inactive ReLU or an unselected max-pool position)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(frames, 3, 64, 64, generator=generator, requires_grad=True)
    model.eval().encode(x).sum().backward()
    return (x.grad.abs().sum((0, 1)) > 0).numpy()


def fidelity_ceiling(seen: np.ndarray, split: Split) -> float:
    """Mean over classes of the share of counted objects (FIDELITY_MIN_PIXELS visible pixels) with
    at least one sprite pixel in ``seen``: an upper bound on the object fidelity mean."""
    mask, counts = split.label("object_mask"), split.label("pixel_counts")
    shares = []
    for k in range(len(OBJECT_CLASSES)):
        counted = counts[:, k] >= FIDELITY_MIN_PIXELS
        if counted.any():
            inside = ((mask[counted] == k + 1) & seen).any((1, 2))
            shares.append(inside.mean())
    return float(np.mean(shares)) if shares else math.nan


def linear_reconstruction(split: Split, rows: np.ndarray, components: int) -> Reconstruct:
    """Projection onto the first ``components`` principal components of the frames ``rows``."""
    flat = split.batch(rows, CPU).reshape(len(rows), -1)
    mean = flat.mean(0)
    rank = min(components, len(rows) - 1)
    _, _, basis = torch.svd_lowrank(flat - mean, q=min(rank + 10, len(rows)), niter=3)
    basis = basis[:, :rank]

    def reconstruct(x: torch.Tensor) -> torch.Tensor:
        centred = x.reshape(len(x), -1) - mean
        return ((centred @ basis) @ basis.T + mean).clamp(0, 1).reshape(x.shape)

    return reconstruct


def memorise(
    model: BaseAutoencoder, split: Split, rows: np.ndarray, steps: int, lr: float,
    object_weight: float, batch: int = 64, seed: int = 0, progress: bool = True,
) -> BaseAutoencoder:
    """Fit ``model`` to the frames ``rows`` of ``split`` by Adam (cosine schedule) with the class-balanced object weight."""
    weights = pixel_weights(split, object_weight, class_balance(split, object_weight))
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in tqdm(range(steps), desc=f"memorise {type(model).__name__}", disable=not progress, leave=False):
        part = np.sort(rng.choice(rows, min(batch, len(rows)), replace=False))
        x = split.batch(part, CPU)
        pixel_weight = weights.batch(part, CPU) if weights else None
        loss = model.loss_function(x, model(x), pixel_weight)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    return model.eval()


def starting_model(name: str, fresh: bool, seed: int = 0) -> BaseAutoencoder:
    """The shipped model, or a seeded fresh one with the shipped architecture arguments."""
    shipped, _ = load_checkpoint(shipped_checkpoint_path(name))
    if not fresh:
        return shipped
    torch.manual_seed(seed)
    return build_model(name, **shipped.config)


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
