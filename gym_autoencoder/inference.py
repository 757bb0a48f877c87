"""The inference path that turns uint8 frames into encodings for the environments.

The environments spend most of each step here, so this is their step rate. The
plain module's ``encode`` stays the reference; ``build_frame_encoder`` returns a
callable equal to it within 1e-4 relative (checked on every build):

- on CPU, ONNX Runtime runs the plain module's encode exported to ONNX with the
  uint8 NHWC -> float / 255 conversion inside the graph, so the frames go in as
  Procgen emits them, with no float copy in Python. A checkpoint is exported once:
  the graph is cached, keyed by the checkpoint file's content, beside it or in the
  user's cache directory. Sessions are made lazily, one per thread count, and
  freed before a fork, so forked workers (AsyncVectorEnv, RLlib) make their own;
- on CUDA, or where ONNX Runtime cannot load (with one warning), PyTorch runs the
  same graph with batch norms folded into the convolutions, channels-last.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from gym_autoencoder.atomic import atomic_write_bytes
from gym_autoencoder.model_stubs import BaseAutoencoder
from gym_autoencoder.preprocessing import FRAME_SHAPE, check_frames, frames_to_tensor

ONNX_PATH = "onnxruntime"
TORCH_PATH = "torch-folded-channels-last"
EXPORT_RECIPE = b"gym_autoencoder onnx export 1: opset 17, uint8 NHWC frames in"  # part of the cache key
OPSET = 17
TOLERANCE = 1e-4  # largest difference from the plain module, relative to its largest encoding value (at least 1)
CHECK_FRAMES = 4  # random frames each built encoder is checked on


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch CPU threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class FramesToEncoding(nn.Module):
    """The plain module's encode of uint8 (N, 64, 64, 3) frames, converted as ``frames_to_tensor`` does."""

    def __init__(self, model: BaseAutoencoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.encode(frames.permute(0, 3, 1, 2).float().div(255.0))


def eager_encode(model: BaseAutoencoder, frames: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """The reference: the plain module in eval mode under no_grad, as training runs it."""
    with torch.no_grad():
        return model.encode(frames_to_tensor(frames, device)).float().cpu().numpy()


def relative_difference(encoding: np.ndarray, reference: np.ndarray) -> float:
    """Largest absolute difference over the reference's largest magnitude (at least 1)."""
    return float(np.abs(encoding - reference).max() / max(1.0, float(np.abs(reference).max())))


def user_cache_dir() -> Path:
    """Where exported graphs go when the checkpoint's folder is not writable."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gym_autoencoder"


def export_onnx(model: BaseAutoencoder) -> bytes:
    """The ONNX graph of ``FramesToEncoding(model)``, batch size free."""
    buffer = io.BytesIO()
    example = torch.zeros(1, *FRAME_SHAPE, dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on tracing and on its own deprecation
        torch.onnx.export(
            FramesToEncoding(model).eval(), (example,), buffer, dynamo=False, opset_version=OPSET,
            input_names=["frames"], output_names=["encoding"],
            dynamic_axes={"frames": {0: "batch"}, "encoding": {0: "batch"}},
        )
    return buffer.getvalue()


def cached_graph_paths(checkpoint: Path) -> list[Path]:
    """Where the graph exported from ``checkpoint`` is cached: beside it, else in the user cache directory."""
    digest = hashlib.sha256(EXPORT_RECIPE + checkpoint.read_bytes()).hexdigest()[:20]
    name = f"{checkpoint.stem}.{digest}.onnx"
    return [checkpoint.with_name(name), user_cache_dir() / name]


def cached_onnx(model: BaseAutoencoder, checkpoint: Path | None) -> tuple[bytes, bool]:
    """The graph of ``model`` (loaded from ``checkpoint``, if given) and whether it came from the cache."""
    paths = cached_graph_paths(Path(checkpoint)) if checkpoint is not None else []
    for path in paths:
        if path.is_file():
            return path.read_bytes(), True
    graph = export_onnx(model)
    for path in paths:
        with contextlib.suppress(OSError):
            atomic_write_bytes(path, graph)
            break
    return graph, False


@functools.cache
def load_onnxruntime() -> ModuleType | None:
    """The onnxruntime module, or None (with one warning per process) where it cannot load."""
    try:
        import onnxruntime as ort
    except (ImportError, OSError) as err:
        warnings.warn(f"onnxruntime cannot load ({err}); encoders run through PyTorch, more slowly. "
                      "Install it with pip install onnxruntime", stacklevel=3)
        return None
    return ort


class OnnxFrameEncoder:
    """ONNX Runtime over the exported graph; ``threads`` None follows ``torch.get_num_threads()``.

    Sessions are made on first use, one per thread count, and are not pickled.
    """

    path = ONNX_PATH

    def __init__(self, graph: bytes, threads: int | None = None) -> None:
        self.graph = graph
        self.threads = threads
        self._sessions: dict[int, Any] = {}
        _LIVE_ENCODERS.add(self)

    def session(self) -> Any:
        threads = self.threads or torch.get_num_threads()
        session = self._sessions.get(threads)
        if session is None:
            ort = load_onnxruntime()
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            # Idle threads sleep rather than spin: on a busy CPU (environments stepping beside
            # the encoder, other processes) spinning cost up to 3x at batch 1 on 2 threads.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(self.graph, options, providers=["CPUExecutionProvider"])
            self._sessions[threads] = session
        return session

    def __call__(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        check_frames(frames)
        return self.session().run(None, {"frames": np.ascontiguousarray(frames)})[0]

    def __getstate__(self) -> dict[str, Any]:
        return {"graph": self.graph, "threads": self.threads}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["graph"], state["threads"])


_LIVE_ENCODERS: weakref.WeakSet[OnnxFrameEncoder] = weakref.WeakSet()


def drop_sessions() -> None:
    """Free every encoder's sessions; each makes new ones on its next call.

    Runs before every fork: a session's worker threads do not exist in the child, which
    would hang freeing it (AsyncVectorEnv and RLlib fork workers).
    """
    for encoder in list(_LIVE_ENCODERS):
        encoder._sessions = {}


os.register_at_fork(before=drop_sessions)


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """``module`` with each batch norm after a convolution folded into it; unchanged if fx cannot trace it."""
    try:
        return fuse(module)
    except Exception:  # noqa: BLE001 - any tracing failure leaves the plain module, which is still correct
        return module


class TorchFrameEncoder:
    """PyTorch over the plain module's encode, batch norms folded, channels-last: CUDA and the fallback."""

    path = TORCH_PATH

    def __init__(self, model: BaseAutoencoder, device: torch.device | str) -> None:
        self.reference = model
        self.device = torch.device(device)
        folded = fold_batch_norms(FramesToEncoding(model).eval())
        self.module = folded.to(self.device, memory_format=torch.channels_last).eval().requires_grad_(False)

    def __call__(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        check_frames(frames)
        writeable = isinstance(frames, np.ndarray) and frames.flags.writeable  # from_numpy warns otherwise
        pixels = torch.from_numpy(frames) if writeable else torch.as_tensor(frames)
        with torch.inference_mode():
            return self.module(pixels.to(self.device, non_blocking=True)).float().cpu().numpy()

    def __reduce__(self) -> tuple:
        return (TorchFrameEncoder, (self.reference, self.device))


FrameEncoder = OnnxFrameEncoder | TorchFrameEncoder


def check_encoder(encoder: FrameEncoder, model: BaseAutoencoder, device: torch.device) -> float:
    """The encoder's relative difference from the plain module on CHECK_FRAMES random frames."""
    frames = np.random.default_rng(0).integers(0, 256, (CHECK_FRAMES, *FRAME_SHAPE), dtype=np.uint8)
    return relative_difference(encoder(frames), eager_encode(model, frames, device))


def build_onnx_encoder(
    model: BaseAutoencoder, checkpoint: str | os.PathLike | None, threads: int | None
) -> OnnxFrameEncoder | str:
    """The ONNX Runtime encoder, checked against the plain module; else why not.

    A cached graph that fails the check is exported again and its cache file replaced.
    """
    try:
        graph, cached = cached_onnx(model, checkpoint)
        encoder = OnnxFrameEncoder(graph, threads)
        difference = check_encoder(encoder, model, torch.device("cpu"))
    except Exception as err:  # noqa: BLE001 - the exporter's or ONNX Runtime's errors: fall back, saying why
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"the {type(model).__name__} encoder cannot run through ONNX Runtime ({first_line})"
    if difference <= TOLERANCE:
        return encoder
    if cached:
        for path in cached_graph_paths(Path(checkpoint)):
            Path(path).unlink(missing_ok=True)
        return build_onnx_encoder(model, checkpoint, threads)
    return f"the exported {type(model).__name__} encoder differs from the module by {difference:.1e} relative"


def build_frame_encoder(
    model: BaseAutoencoder,
    device: torch.device | str,
    checkpoint: str | os.PathLike | None = None,
    threads: int | None = None,
) -> FrameEncoder:
    """A function from uint8 (N, 64, 64, 3) frames to float32 (N, *encoding_shape) encodings.

    ``checkpoint``: the file ``model`` was loaded from, to cache its exported graph by;
    ``threads``: ONNX Runtime's thread count (None: ``torch.get_num_threads()`` at each call).
    """
    device = torch.device(device)
    model = model.eval()
    if device.type == "cpu" and load_onnxruntime() is not None:
        encoder = build_onnx_encoder(model, checkpoint, threads)
        if not isinstance(encoder, str):
            return encoder
        warnings.warn(f"{encoder}; it runs through PyTorch instead", stacklevel=2)
    return TorchFrameEncoder(model, device)
