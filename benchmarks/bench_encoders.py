"""Time each encoder's inference path against the plain eager module, in one run.

For each of the six architectures, on CPU at batch 1 (1 thread and the default
threads) and batch 64, and on GPU at batch 1, 64 and 1024 when one is present:
per-frame time, frames per second and the ratio ours/eager, both measured
uint8 numpy in, float32 numpy out. Measurements alternate eager and ours
(blocks of calls, order flipped each round) so a noisy machine slows both alike;
a matrix product timed before and after each round tells which rounds the machine
was quiet in, and times are medians over those rounds (column "quiet").

It also counts each encoder's floating-point operations per frame (convolutions and
linear layers of the plain module), times the machine's float32 matrix product
(1024 x 1024 x 1024) in the same alternating rounds, and prints the time that rate
implies as a floor and the share of it each path achieves; and the time to build
the inference path and to make its first call (weights are packed then).

    python benchmarks/bench_encoders.py                 # all six, about a minute on CPU
    python benchmarks/bench_encoders.py --models VAE_Alex --rounds 60 --json out.json
    python benchmarks/bench_encoders.py --layers --models Conv_Maxpool_Big   # where the time goes

With ``--layers`` it instead times each layer of the inference path on its own, on
CPU at batch 1 with 1 thread and the default threads, with its operations and its
share of the matrix-product rate: the breakdown behind the choice of kernels.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import fx, nn
from tqdm import tqdm

from gym_autoencoder.atomic import atomic_write_text
from gym_autoencoder.inference import SingleFrameSwitch, build_frame_encoder, eager_encode, torch_threads
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
    eager_ms: float
    ours_ms: float
    ratio: float
    ours_fps: float
    gflop_per_frame: float
    matmul_gflops: float
    floor_ms: float
    ours_share_of_matmul: float
    eager_share_of_matmul: float
    max_abs_diff: float
    build_ms: float
    first_call_ms: float
    quiet_rounds: int


def make_model(name: str) -> BaseAutoencoder:
    """A randomly initialised model (speed does not depend on the weights' values)."""
    torch.manual_seed(0)
    kwargs = {"perceptual_features": "random"} if name == "VAE_Alex" else {}
    return build_model(name, **kwargs).eval()


def single_frame_module(module: nn.Module) -> nn.Module:
    """The module a single frame runs through: the layers are timed at batch 1."""
    return module.single if isinstance(module, SingleFrameSwitch) else module


def layer_flops(module: nn.Module, x: torch.Tensor, output: torch.Tensor) -> float:
    """Floating-point operations of a convolution or linear layer, plain or rewritten; 0 for other steps.

    A convolution counts over its full output, also where a fused max-pool follows it.
    """
    module = single_frame_module(module)
    weight = getattr(module, "weight", None)
    if weight is None or weight.dim() not in (2, 4):
        return 0.0
    if weight.dim() == 2:
        return 2.0 * output.numel() * weight.shape[1]
    n, _, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = module.kernel_size, module.stride, module.padding
    out_pixels = ((h + 2 * ph - kh) // sh + 1) * ((w + 2 * pw - kw) // sw + 1)
    return 2.0 * n * out_pixels * weight.shape[0] * weight[0].numel()


def flops_per_frame(model: BaseAutoencoder) -> float:
    """Floating-point operations (2 per multiply-add) of the convolutions and linear layers in encode."""
    total = 0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += layer_flops(module, inputs[0], output)

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.encode(torch.zeros(1, 3, 64, 64, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    return float(total)


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
) -> tuple[list[float], float, int]:
    """Median seconds per call of each fn and of ``probe``, over the rounds the machine was quiet.

    Each round times ``probe`` (a matrix product), every fn (in alternating order) and
    ``probe`` again, in blocks of calls. A round counts as quiet when both probe blocks
    ran within QUIET_SLACK of the fastest probe block of the run; if fewer than a
    quarter of the rounds are quiet, all count. Returns the medians and the rounds kept.
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
    medians = np.median(times[quiet], axis=0)
    return [float(m) for m in medians], float(np.median(probe_times[quiet])), int(quiet.sum())


def matmul(device: torch.device) -> Callable[[], None]:
    """One float32 MATMUL_SIZE-cube matrix product (2 * MATMUL_SIZE**3 FLOP), finished."""
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device)

    def product() -> None:
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return product


def measure(
    name: str, model: BaseAutoencoder, frames: np.ndarray, device: torch.device, n_threads: int, rounds: int
) -> Row:
    """One row: eager, ours and the matmul rate, timed in the same alternating rounds."""
    start = time.perf_counter()
    encoder = build_frame_encoder(model, device)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    encoding = encoder(frames)
    first_call_s = time.perf_counter() - start
    diff = float(np.abs(encoding - eager_encode(model, frames, device)).max())
    (eager_s, ours_s), matmul_s, quiet_rounds = interleaved_medians(
        [lambda: eager_encode(model, frames, device), lambda: encoder(frames)], matmul(device), rounds
    )
    rate = 2 * MATMUL_SIZE**3 / matmul_s
    flops = flops_per_frame(model)
    batch = len(frames)
    eager_frame, ours_frame = eager_s / batch, ours_s / batch
    return Row(
        model=name, device=device.type, batch=batch, threads=n_threads, path=encoder.path,
        eager_ms=eager_frame * 1e3, ours_ms=ours_frame * 1e3, ratio=ours_s / eager_s,
        ours_fps=1.0 / ours_frame, gflop_per_frame=flops / 1e9, matmul_gflops=rate / 1e9,
        floor_ms=flops / rate * 1e3, ours_share_of_matmul=flops / ours_frame / rate,
        eager_share_of_matmul=flops / eager_frame / rate, max_abs_diff=diff,
        build_ms=build_s * 1e3, first_call_ms=first_call_s * 1e3, quiet_rounds=quiet_rounds,
    )


@dataclass
class LayerRow:
    model: str
    threads: int
    layer: str
    kind: str
    input_shape: tuple[int, ...]
    us: float
    mflop: float
    share_of_matmul: float


class LayerInputs(fx.Interpreter):
    """Runs the graph once and keeps each module call's inputs and output."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.calls: list[tuple[str, nn.Module, tuple, torch.Tensor]] = []

    def call_module(self, target: str, args: tuple, kwargs: dict) -> torch.Tensor:
        module = self.fetch_attr(target)
        inputs = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
        output = module(*args, **kwargs)
        self.calls.append((target, module, inputs, output))
        return output


def measure_layers(
    name: str, model: BaseAutoencoder, frames: np.ndarray, n_threads: int, rounds: int
) -> list[LayerRow]:
    """Each layer of the CPU inference path timed on its own, in alternating rounds with the matmul probe."""
    encoder = build_frame_encoder(model, "cpu")
    with torch_threads(n_threads), torch.inference_mode():
        interpreter = LayerInputs(encoder.module)
        interpreter.run(encoder.graph_input(frames))
        calls = interpreter.calls
        fns = [lambda m=module, a=inputs: m(*a) for _, module, inputs, _ in calls]
        medians, matmul_s, _ = interleaved_medians(fns, matmul(torch.device("cpu")), rounds)
    rate = 2 * MATMUL_SIZE**3 / matmul_s
    rows = []
    for (target, module, inputs, output), seconds in zip(calls, medians):
        flops = layer_flops(module, inputs[0], output)
        rows.append(LayerRow(
            model=name, threads=n_threads, layer=target, kind=type(single_frame_module(module)).__name__,
            input_shape=tuple(inputs[0].shape), us=seconds * 1e6, mflop=flops / 1e6,
            share_of_matmul=flops / seconds / rate,
        ))
    return rows


def print_layer_table(rows: list[LayerRow]) -> None:
    header = f"{'model':<19}{'thr':>4}  {'layer':<46}{'kernel':<20}{'input':<20}{'us':>8}{'MFLOP':>8}{'%mm':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.model:<19}{r.threads:>4}  {r.layer:<46}{r.kind:<20}{str(r.input_shape):<20}"
              f"{r.us:>8.1f}{r.mflop:>8.2f}{100 * r.share_of_matmul:>5.0f}%")
    for model, n_threads in dict.fromkeys((r.model, r.threads) for r in rows):
        total = sum(r.us for r in rows if (r.model, r.threads) == (model, n_threads))
        print(f"{model}, {n_threads} thread{'s' * (n_threads > 1)}: layers alone sum to {total:.1f} us")


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'model':<19}{'device':>7}{'batch':>6}{'thr':>4}{'eager ms':>10}{'ours ms':>9}{'ours/eager':>11}"
        f"{'ours fps':>10}{'MFLOP':>7}{'mm GFLOP/s':>11}{'floor ms':>9}{'ours %mm':>9}{'eager %mm':>10}"
        f"{'max diff':>10}{'build ms':>9}{'1st call ms':>12}{'quiet':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.model:<19}{r.device:>7}{r.batch:>6}{r.threads:>4}{r.eager_ms:>10.3f}{r.ours_ms:>9.3f}"
            f"{r.ratio:>11.2f}{r.ours_fps:>10.0f}{r.gflop_per_frame * 1e3:>7.1f}{r.matmul_gflops:>11.1f}"
            f"{r.floor_ms:>9.3f}{100 * r.ours_share_of_matmul:>8.0f}%{100 * r.eager_share_of_matmul:>9.0f}%"
            f"{r.max_abs_diff:>10.1e}{r.build_ms:>9.1f}{r.first_call_ms:>12.1f}{r.quiet_rounds:>6}"
        )
    paths = sorted({f"{r.device}: {r.path}" for r in rows})
    print(f"\npaths taken: {', '.join(paths)}")
    for device, batch in sorted({(r.device, r.batch) for r in rows}):
        worst = max((r for r in rows if (r.device, r.batch) == (device, batch)), key=lambda r: r.ratio)
        print(f"slowest ours/eager on {device} at batch {batch}: {worst.ratio:.2f} ({worst.model}, "
              f"{worst.threads} thread{'s' * (worst.threads > 1)})")


def settings(cuda: bool) -> list[tuple[str, int, int]]:
    """(device, batch, threads) to measure; threads 0 means the default."""
    cpu = [("cpu", 1, 1), ("cpu", 1, 0), ("cpu", 64, 0)]
    return cpu + ([("cuda", 1, 0), ("cuda", 64, 0), ("cuda", 1024, 0)] if cuda else [])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds per setting")
    parser.add_argument("--no-cuda", action="store_true", help="skip the GPU settings")
    parser.add_argument("--threads", type=int, help="the default thread count (else PyTorch's)")
    parser.add_argument("--layers", action="store_true",
                        help="time each layer of the CPU inference path at batch 1 instead")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cuda = torch.cuda.is_available() and not args.no_cuda
    default_threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {default_threads} default threads"
          + (f", GPU {torch.cuda.get_device_name()}" if cuda else ", no GPU"))
    rng = np.random.default_rng(0)
    frames = {batch: rng.integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8) for batch in (1, 64, 1024)}
    devices = ["cpu", "cuda"] if cuda else ["cpu"]
    models = {(name, device): make_model(name).to(device) for name in args.models for device in devices}
    if args.layers:
        plan = [(name, n) for name in args.models for n in dict.fromkeys((1, default_threads))]
        rows = []
        for name, n_threads in tqdm(plan, desc="layers", unit="setting"):
            rows += measure_layers(name, models[name, "cpu"], frames[1], n_threads, args.rounds)
        print()
        print_layer_table(rows)
    else:
        plan = [(name, *s) for name in args.models for s in settings(cuda)]
        rows = []
        for name, device, batch, n_threads in tqdm(plan, desc="benchmark", unit="setting"):
            n_threads = n_threads or default_threads
            with torch_threads(n_threads):
                model = models[name, device]
                rows.append(measure(name, model, frames[batch], torch.device(device), n_threads, args.rounds))
        print()
        print_table(rows)
    if args.json:
        atomic_write_text(args.json, json.dumps([asdict(r) for r in rows], indent=1))

if __name__ == "__main__":
    main()
