"""Time each encoder's paths side by side, in one run: eager, ONNX Runtime alone, and ``encode``.

For each of the six architectures, at batch 1, 8 and 64 on 1 and 2 threads (CPU), and on GPU
at batch 1, 64 and 1024 when one is present: milliseconds per frame, uint8 numpy frames in,
float32 numpy encodings out, of

- ``eager``: the plain module (``frames_to_tensor`` then ``model.encode`` under no_grad);
- ``ort``: a bare ONNX Runtime session over the exported graph (only ``intra_op_num_threads``
  set), called directly: what a user could get without this package's path (CPU only);
- ``encode``: ``build_frame_encoder``'s encoder, what ``load_model(...).encode`` and every
  environment run (on CPU, ONNX Runtime with its frame check and session lookup);
- ``baseline`` (with ``--baseline FILE``): ``build_frame_encoder`` of another version of
  ``gym_autoencoder/inference.py``, for instance one taken from git history.

The paths are timed in alternating rounds (blocks of calls, order flipped each round), so a
noisy machine slows them alike; a float32 matrix product timed before and after each round
tells which rounds were quiet, and times are medians over those (column "quiet"). Ratios:
encode/eager, encode/ort and encode over the faster of ort and the baseline ("enc/best").

    python benchmarks/bench_encoders.py                        # all six, a few minutes on CPU
    python benchmarks/bench_encoders.py --models VAE_Alex --batches 1 --threads 1 --rounds 60
    git show v0.1.0:gym_autoencoder/inference.py > /tmp/old_inference.py
    python benchmarks/bench_encoders.py --baseline /tmp/old_inference.py --json out.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from types import ModuleType

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from gym_autoencoder.atomic import atomic_write_text
from gym_autoencoder.inference import build_frame_encoder, eager_encode, export_onnx, relative_difference, torch_threads
from gym_autoencoder.model_stubs import MODEL_NAMES, BaseAutoencoder, build_model

MATMUL_SIZE = 1024
TARGET_SECONDS_PER_BLOCK = 0.02
QUIET_SLACK = 1.25  # a round is quiet when its matmul probe ran within 25% of the run's fastest


@dataclass
class Row:
    model: str
    device: str
    batch: int
    threads: int
    path: str
    ms: dict[str, float]  # per frame, by variant
    gflop_per_frame: float
    max_rel_diff: dict[str, float] = field(default_factory=dict)  # from the plain module, by variant
    quiet_rounds: int = 0

    def ratio(self, variant: str, *others: str) -> float:
        present = [self.ms[o] for o in others if o in self.ms]
        return self.ms[variant] / min(present) if present else float("nan")


def make_model(name: str) -> BaseAutoencoder:
    """A randomly initialised model (speed does not depend on the weights' values)."""
    torch.manual_seed(0)
    kwargs = {"perceptual_features": "random"} if name == "VAE_Alex" else {}
    return build_model(name, **kwargs).eval()


def flops_per_frame(model: BaseAutoencoder) -> float:
    """Floating-point operations (2 per multiply-add) of the convolutions and linear layers in encode."""
    total = 0.0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += 2.0 * output.numel() * module.in_features
        else:
            total += 2.0 * output.numel() * module.weight[0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.encode(torch.zeros(1, 3, 64, 64, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def block_size(fn: Callable[[], object]) -> int:
    """How many calls make one timed block of about TARGET_SECONDS_PER_BLOCK."""
    start = time.perf_counter()
    fn()
    return max(1, round(TARGET_SECONDS_PER_BLOCK / max(time.perf_counter() - start, 1e-6)))


def timed_block(fn: Callable[[], object], size: int) -> float:
    start = time.perf_counter()
    for _ in range(size):
        fn()
    return (time.perf_counter() - start) / size


def interleaved_medians(
    fns: list[Callable[[], object]], probe: Callable[[], object], rounds: int
) -> tuple[list[float], int]:
    """Median seconds per call of each fn over the rounds the machine was quiet, and how many those were.

    Each round times ``probe`` (a matrix product), every fn (in alternating order) and
    ``probe`` again, in blocks of calls. A round counts as quiet when both probe blocks
    ran within QUIET_SLACK of the fastest probe block of the run; if fewer than a
    quarter of the rounds are quiet, all count.
    """
    for fn in [*fns, probe]:
        for _ in range(3):
            fn()
    sizes = [block_size(fn) for fn in fns]
    probe_size = block_size(probe)
    times = np.zeros((rounds, len(fns)))
    probe_times = np.zeros(rounds)
    for r in range(rounds):
        before = timed_block(probe, probe_size)
        for i in range(len(fns)) if r % 2 == 0 else reversed(range(len(fns))):
            times[r, i] = timed_block(fns[i], sizes[i])
        probe_times[r] = max(before, timed_block(probe, probe_size))
    quiet = probe_times <= QUIET_SLACK * probe_times.min()
    if quiet.sum() < rounds / 4:
        quiet[:] = True
    return [float(m) for m in np.median(times[quiet], axis=0)], int(quiet.sum())


def matmul(device: torch.device) -> Callable[[], None]:
    """One float32 MATMUL_SIZE-cube matrix product, finished."""
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device)

    def product() -> None:
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return product


def bare_session(graph: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """ONNX Runtime alone: a session with only its thread count set, called directly."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    return lambda frames: session.run(None, {"frames": frames})[0]


def load_baseline(path: str) -> ModuleType:
    """Another version of gym_autoencoder/inference.py, imported from ``path`` under its own name."""
    spec = importlib.util.spec_from_file_location("baseline_inference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(
    name: str, model: BaseAutoencoder, frames: np.ndarray, device: torch.device, threads: int,
    rounds: int, baseline: ModuleType | None,
) -> Row:
    """One row: every variant timed in the same alternating rounds."""
    encoder = build_frame_encoder(model, device)
    variants: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "eager": lambda f: eager_encode(model, f, device), "encode": encoder,
    }
    if device.type == "cpu":
        variants["ort"] = bare_session(export_onnx(model), threads)
        if baseline is not None:
            variants["baseline"] = baseline.build_frame_encoder(model, device)
    reference = eager_encode(model, frames, device)
    differences = {key: relative_difference(fn(frames), reference) for key, fn in variants.items()}
    seconds, quiet = interleaved_medians([lambda fn=fn: fn(frames) for fn in variants.values()], matmul(device), rounds)
    return Row(
        model=name, device=device.type, batch=len(frames), threads=threads, path=encoder.path,
        ms={key: s / len(frames) * 1e3 for key, s in zip(variants, seconds)},
        gflop_per_frame=flops_per_frame(model) / 1e9, max_rel_diff=differences, quiet_rounds=quiet,
    )


def print_table(rows: list[Row]) -> None:
    variants = [v for v in ("eager", "ort", "baseline", "encode") if any(v in r.ms for r in rows)]
    header = (f"{'model':<19}{'device':>7}{'batch':>6}{'thr':>4}" + "".join(f"{v + ' ms':>12}" for v in variants)
              + f"{'enc/eager':>10}{'enc/ort':>8}{'enc/best':>9}{'MFLOP':>7}{'max rel diff':>13}{'quiet':>6}")
    print(header)
    print("-" * len(header))
    for r in rows:
        cells = "".join(f"{r.ms[v]:>12.3f}" if v in r.ms else f"{'-':>12}" for v in variants)
        print(f"{r.model:<19}{r.device:>7}{r.batch:>6}{r.threads:>4}{cells}{r.ratio('encode', 'eager'):>10.2f}"
              f"{r.ratio('encode', 'ort'):>8.2f}{r.ratio('encode', 'ort', 'baseline'):>9.2f}"
              f"{r.gflop_per_frame * 1e3:>7.1f}{max(r.max_rel_diff.values()):>13.1e}{r.quiet_rounds:>6}")
    print(f"\npaths taken by encode: {', '.join(sorted({f'{r.device}: {r.path}' for r in rows}))}")
    for device, batch in sorted({(r.device, r.batch) for r in rows}):
        worst = max((r for r in rows if (r.device, r.batch) == (device, batch)),
                    key=lambda r: r.ratio("encode", "ort", "baseline"))
        print(f"slowest encode / fastest other on {device} at batch {batch}: "
              f"{worst.ratio('encode', 'ort', 'baseline'):.2f} ({worst.model}, {worst.threads} thread(s))")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 64], help="CPU batch sizes")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="CPU thread counts")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per setting")
    parser.add_argument("--no-cuda", action="store_true", help="skip the GPU settings")
    parser.add_argument("--baseline", help="also time build_frame_encoder of this inference.py file")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()

    cuda = torch.cuda.is_available() and not args.no_cuda
    print(f"torch {torch.__version__}" + (f", GPU {torch.cuda.get_device_name()}" if cuda else ", no GPU"))
    baseline = load_baseline(args.baseline) if args.baseline else None
    plan = [(name, "cpu", b, t) for name in args.models for b in args.batches for t in args.threads]
    if cuda:
        plan += [(name, "cuda", b, torch.get_num_threads()) for name in args.models for b in (1, 64, 1024)]
    rng = np.random.default_rng(0)
    frames = {b: rng.integers(0, 256, (b, 64, 64, 3), dtype=np.uint8) for b in {p[2] for p in plan}}
    rows = []
    for name, device, batch, threads in tqdm(plan, desc="benchmark", unit="setting"):
        with torch_threads(threads):
            model = make_model(name).to(device)
            rows.append(measure(name, model, frames[batch], torch.device(device), threads, args.rounds, baseline))
    print()
    print_table(rows)
    if args.json:
        atomic_write_text(args.json, json.dumps([asdict(r) for r in rows], indent=1))


if __name__ == "__main__":
    main()
