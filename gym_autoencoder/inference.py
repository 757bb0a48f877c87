"""The inference path that turns uint8 frames into encodings for the environments.

The environments spend most of each step here, so this is their step rate. The
plain module's ``encode`` stays the reference; ``build_frame_encoder`` traces it
with ``torch.fx`` and rewrites the graph for inference, keeping its outputs equal
to the reference's within float rounding:

- batch norms are folded into the convolutions before them;
- max-pools that return indices nobody reads become plain max-pools;
- the 1/255 input scaling is folded into the first convolution's weights, so the
  graph takes the uint8 NHWC frames as they are (their (N, C, H, W) view is
  channels-last) and converts them in its first step, or its first layer does, as it
  copies them into its buffer;
- on CPU, every tensor stays channels-last and each convolution, with the
  ReLU/LeakyReLU after it, becomes one call of the fastest kernel for its shape
  (measured with ``benchmarks/bench_encoders.py``):
  a oneDNN convolution whose weight is packed once per input shape (the plain
  module re-packs it on every call); one matrix product over the input's patches
  when the output has only a few pixels (oneDNN's fixed cost per call dominates
  there); PyTorch's own im2col convolution for single frames through small
  convolutions (its fixed cost per call is a third of oneDNN's); NNPACK's FFT
  convolution for large stride-1 kernels on batches (fewer operations than any
  direct convolution). For single frames: one matrix product over the patches of
  a strided convolution or an unpadded one with up to 100 output pixels;
  Winograd's F(2, 7) for a stride-1 kernel 7 wide on one thread; and one matrix product over the
  input blocks of a stride-1 convolution followed by a max-pool whose kernel equals
  its stride (the pool becomes a maximum over columns of the product);
- on CPU, each linear layer, with the activation after it, becomes one matrix
  product; a flatten of a channels-last map before it becomes a free view, its
  weight's columns reordered to match;
- on CPU, large max-pools whose kernel is a multiple of their stride become a few
  strided elementwise maxima, several times faster than PyTorch's channels-last pool;
- on CUDA, the folded graph runs channels-last through cuDNN.

A graph that cannot be traced runs the plain module instead; ``FrameEncoder.path``
names the path taken and ``FrameEncoder.fallback_reason`` says why, if it fell back.
"""

from __future__ import annotations

import contextlib
import copy
import operator
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.experimental.optimization import fuse
from torch.fx.passes.shape_prop import ShapeProp

from gym_autoencoder.preprocessing import FRAME_SHAPE, check_frames, frames_to_tensor
from gym_autoencoder.model_stubs import BaseAutoencoder


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch CPU threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)

CPU_PATH = "fx-folded-cpu-kernels"
CHANNELS_LAST_PATH = "fx-folded-channels-last"
EAGER_PATH = "eager"
INPUT_SCALE = 1.0 / 255.0

MAX_PACKED_SHAPES = 8  # packed weights or patch buffers kept per layer (one per input shape and thread)
GEMM_MAX_OUTPUT_PIXELS = 16  # a convolution with at most this many output pixels runs as one matmul
SINGLE_FRAME_GEMM_MAX_OUTPUT_PIXELS = 100  # ... and a single frame through one with at most this many
IM2COL_MAX_ELEMENTS = 40000  # a single frame through a convolution whose patch matrix is at most this
IM2COL_MAX_PATCH = 144  # large, whose patches are at most this long and which has at least ...
IM2COL_MIN_OUT_CHANNELS = 16  # ... this many output channels runs as PyTorch's im2col + matmul
FFT_MIN_KERNEL = 5  # stride-1 kernels at least this wide run through NNPACK's FFT ...
FFT_MIN_BATCH = 4  # ... on batches at least this large (below, oneDNN's direct kernel is faster)
SEPARABLE_POOL_MIN_ELEMENTS = 65536  # smaller pools are faster as one PyTorch call
WINOGRAD_POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)  # F(2, r) uses the first r, and infinity
WINOGRAD_WIDTH = 7  # single frames through stride-1 kernels this wide run as Winograd's F(2, 7)
GATHER_PAIRS_MAX_RUN = 16  # a window row at most this many floats long is gathered by index, two floats at a time
# (the thresholds were measured on this project's 2-core AMD EPYC with PyTorch 2.13)


class _Encode(nn.Module):
    """``model.encode`` as a module's forward, so fx can trace it."""

    def __init__(self, model: BaseAutoencoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x)


class _ScaledEncode(_Encode):
    """The plain module's encode on the float view of uint8 frames: the fallback."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x * INPUT_SCALE)


def kept_per_shape(cache: dict, key: tuple, make: Callable[..., object], *args: object) -> object:
    """``cache[key]``, made by ``make(*args)`` when missing; the oldest entry goes beyond MAX_PACKED_SHAPES."""
    value = cache.get(key)
    if value is None:
        if len(cache) >= MAX_PACKED_SHAPES:
            cache.pop(next(iter(cache)))
        value = cache[key] = make(*args)
    return value


def kept_per_thread(cache: dict, x: torch.Tensor, make: Callable[[torch.Tensor], object]) -> object:
    """Buffers for ``x``'s shape and the calling thread, which writes into them: ``make(x)`` when missing."""
    return kept_per_shape(cache, (*x.shape, threading.get_ident()), make, x)


def activate_(y: torch.Tensor, activation: str, slope: float) -> torch.Tensor:
    """``y`` through the named activation ("relu", "leaky_relu" or "none"), in place."""
    if activation == "relu":
        return y.relu_()
    if activation == "leaky_relu":
        return F.leaky_relu_(y, slope)
    return y


def addmm_activated(
    bias: torch.Tensor, rows: torch.Tensor, matrix: torch.Tensor, activation: str, slope: float
) -> torch.Tensor:
    """``bias + rows @ matrix`` through the named activation; a ReLU in the same call, a pass fewer."""
    if activation == "relu":
        return torch._addmm_activation(bias, rows, matrix)
    return activate_(torch.addmm(bias, rows, matrix), activation, slope)


class FusedConv2d(nn.Module):
    """A Conv2d and the ReLU/LeakyReLU after it, on channels-last tensors; subclasses pick the kernel."""

    def __init__(self, conv: nn.Conv2d, activation: str, slope: float) -> None:
        super().__init__()
        self.register_buffer("weight", conv.weight.detach().contiguous().clone())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())
        out_ch = self.weight.shape[0]
        self.register_buffer("bias_or_zeros", self.weight.new_zeros(out_ch) if self.bias is None else self.bias)
        self.kernel_size = tuple(conv.kernel_size)
        self.padding = list(conv.padding)
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups
        self.activation = activation
        self.slope = slope

    def activate(self, y: torch.Tensor) -> torch.Tensor:
        return activate_(y, self.activation, self.slope)

    def extra_repr(self) -> str:
        out_ch, in_ch = self.weight.shape[:2]
        return (
            f"{in_ch}, {out_ch}, kernel_size={self.kernel_size}, stride={tuple(self.stride)}, "
            f"padding={tuple(self.padding)}, activation={self.activation}"
        )


class OneDNNConv2d(FusedConv2d):
    """oneDNN's convolution with the activation as a post-op, its weight packed once per input shape.

    oneDNN computes in a blocked weight layout that depends on the input shape and
    thread count; the plain module converts its weight on every call, this one once.
    """

    def __init__(self, conv: nn.Conv2d, activation: str, slope: float) -> None:
        super().__init__(conv, activation, slope)
        self.scalars = [slope] if activation == "leaky_relu" else []
        self._packed: dict[tuple[int, ...], torch.Tensor] = {}

    def packed_weight(self, shape: tuple[int, ...]) -> torch.Tensor:
        return kept_per_shape(self._packed, (*shape, torch.get_num_threads()), self._pack, shape)

    def _pack(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch._C._nn.mkldnn_reorder_conv2d_weight(
            self.weight.to_mkldnn(), self.padding, self.stride, self.dilation, self.groups, list(shape)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise.default(
            x, self.packed_weight(tuple(x.shape)), self.bias, self.padding, self.stride,
            self.dilation, self.groups, self.activation, self.scalars, "",
        )


class PatchWorkspace(NamedTuple):
    """A PatchConv2d's buffers for one input shape."""

    interior: torch.Tensor  # where the input goes, inside the zero border of the padding, seen as (N, C, H, W)
    source: torch.Tensor  # the padded input, flat, in gather units
    windows: torch.Tensor  # its windows: a strided view of ``source``, one row of units per window row
    index: torch.Tensor | None  # where each unit of ``windows`` sits in ``source``; None: copy the view
    gathered: torch.Tensor  # the memory of ``rows`` in units: flat to gather by index, else shaped like ``windows``
    rows: torch.Tensor  # the gathered windows as a matrix, one row per window
    output: tuple[tuple[int, ...], tuple[int, ...]]  # size and stride of a (N, C, H, W) view of the product


class PatchConv2d(FusedConv2d):
    """A convolution computed as one matrix product over windows of its NHWC input.

    Subclasses give the window and its step; the gathered windows go in buffers
    kept per input shape and calling thread, because allocating and zeroing them,
    and slicing views into them, on every call costs more than the rest of a small layer.
    Rows of a window that are only a few floats long (a frame's 3 channels) are
    gathered by index in units of two floats: copying a strided view moves them a
    few floats at a time, twice as slowly. The input may be the uint8 frames: the
    copy into the buffer converts them.
    """

    def __init__(
        self, conv: nn.Conv2d, activation: str, slope: float, window: tuple[int, int], step: tuple[int, int]
    ) -> None:
        super().__init__(conv, activation, slope)
        in_ch = self.weight.shape[1]
        self.window, self.step = window, step
        run = window[1] * in_ch
        pairs = self.weight.dtype == torch.float32 and run <= GATHER_PAIRS_MAX_RUN and step[1] * in_ch % 2 == 0
        self.unit = 2 if pairs else 1
        self.row_length = -(-run // self.unit) * self.unit  # the floats gathered per window row
        self._workspaces: dict[tuple[int, ...], PatchWorkspace] = {}

    def window_matrix(self, taps: torch.Tensor) -> torch.Tensor:
        """(window height, window width, in_ch, K) taps as the (rows' width, K) matrix the rows multiply.

        Its rows are zero where a window row's last unit runs past the window.
        """
        wh, ww, in_ch, k = taps.shape
        matrix = taps.new_zeros(wh, self.row_length, k)
        matrix[:, :ww * in_ch] = taps.reshape(wh, ww * in_ch, k)
        return matrix.reshape(-1, k).contiguous()

    def _workspace(self, x: torch.Tensor) -> PatchWorkspace:
        (ph, pw), (n, c, h, w) = self.padding, x.shape
        (wh, ww), (sh, sw), unit = self.window, self.step, self.unit
        hp, wp = h + 2 * ph, w + 2 * pw
        oh, ow = (hp - wh) // sh + 1, (wp - ww) // sw + 1
        wp += wp * c % unit  # so that every row starts on a unit
        size = n * hp * wp * c
        flat = torch.zeros(size + unit, dtype=self.weight.dtype, device=x.device)  # + the last unit's overrun
        source = flat.view(torch.int64) if unit == 2 else flat  # pairs as raw 8-byte words
        shape = (n, oh, ow, wh, self.row_length // unit)
        strides = tuple(s // unit for s in (hp * wp * c, sh * wp * c, sw * c, wp * c, unit))
        windows = source.as_strided(shape, strides)
        rows = flat.new_empty(n * oh * ow, wh * self.row_length)
        if unit == 1:
            index, gathered = None, rows.view(shape)
        else:
            positions = torch.arange(source.numel(), device=x.device)
            index, gathered = positions.as_strided(shape, strides).flatten(), rows.view(source.dtype).view(-1)
        interior = flat[:size].view(n, hp, wp, c)[:, ph:ph + h, pw:pw + w].permute(0, 3, 1, 2)
        out_ch = self.weight.shape[0]
        output = (n, out_ch, oh, ow), (oh * ow * out_ch, 1, ow * out_ch, out_ch)
        return PatchWorkspace(interior, source, windows, index, gathered, rows, output)

    def gather(self, x: torch.Tensor) -> PatchWorkspace:
        """The workspace for ``x``'s shape and this thread, its rows holding ``x``'s windows."""
        space = kept_per_thread(self._workspaces, x, self._workspace)
        space.interior.copy_(x)
        if space.index is None:
            space.gathered.copy_(space.windows)
        else:
            torch.index_select(space.source, 0, space.index, out=space.gathered)
        return space


class GemmConv2d(PatchConv2d):
    """A convolution as one matrix product over its NHWC patches: for few output pixels."""

    def __init__(self, conv: nn.Conv2d, activation: str, slope: float) -> None:
        super().__init__(conv, activation, slope, tuple(conv.kernel_size), tuple(conv.stride))
        self.register_buffer("matrix", self.window_matrix(self.weight.permute(2, 3, 1, 0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        space = self.gather(x)
        y = addmm_activated(self.bias_or_zeros, space.rows, self.matrix, self.activation, self.slope)
        return y.as_strided(*space.output)


def winograd_transforms(taps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Winograd's F(2, taps) as float64 (AT, G, BT): two outputs of a correlation from taps + 1 products.

    For taps g and taps + 1 inputs d, ``AT @ ((G @ g) * (BT @ d))`` equals the two
    outputs ``d[i:i + taps] @ g``. The points are the first ``taps`` of
    WINOGRAD_POINTS and infinity; BT solves the identity for every output and tap.
    """
    points = WINOGRAD_POINTS[:taps]
    count = taps + 1
    at, g = np.zeros((2, count)), np.zeros((count, taps))
    for k, p in enumerate(points):
        at[:, k] = [1.0, p]
        g[k] = [p**j / np.prod([p - q for q in points if q != p]) for j in range(taps)]
    at[1, -1] = g[-1, -1] = 1.0
    products = np.einsum("ik,kj->ijk", at, g).reshape(2 * taps, count)
    targets = np.array([[float(p == i + j) for p in range(count)] for i in range(2) for j in range(taps)])
    bt = np.linalg.lstsq(products, targets, rcond=None)[0]
    assert np.allclose(products @ bt, targets), "the Winograd points give no exact transform"
    return at, g, bt


class WinogradWorkspace(NamedTuple):
    """A WinogradConv2d's buffers for one input shape."""

    tiles: torch.Tensor  # (points, N, tiles across, H, C): the input's overlapping tiles along rows
    tile_matrix: torch.Tensor  # the same memory as (points, everything else)
    transformed: torch.Tensor  # BT @ tile_matrix
    windows: torch.Tensor  # its tap rows for each output row: a strided view
    gathered: torch.Tensor  # the memory of ``rows`` shaped like ``windows``, to copy them into
    rows: torch.Tensor  # (points, N * tiles across * output rows, tap rows * C)
    bias: torch.Tensor  # the bias of every output in the product's order
    pairs: tuple[int, ...]  # the product's shape as (2, N, tiles across, output rows, out_ch)
    output: tuple[int, int, int]  # (N, output rows, output columns)


class WinogradConv2d(FusedConv2d):
    """A stride-1 unpadded convolution r wide (r <= 7), by Winograd's F(2, r) along its rows.

    Two neighbouring outputs of a row take r + 1 products per tap row instead of 2r
    (8 instead of 14 for a 7x7): the input's (r + 1)-wide tiles are transformed (BT),
    multiplied with the transformed taps in one batched matmul over the r + 1 points
    that also sums tap rows and channels, and transformed back (AT) in one matmul
    that also adds bias and activation. The output width must be even.
    It differs from a float32 direct convolution by about 1e-6 on outputs of size 1;
    buffers are kept per input shape and thread, as in PatchConv2d. It wins on one
    thread; on more, its small steps each pay for the threads' start and join, and one
    matrix product over the patches (a GemmConv2d it holds) is faster.
    """

    def __init__(self, conv: nn.Conv2d, activation: str, slope: float) -> None:
        super().__init__(conv, activation, slope)
        at, g, bt = winograd_transforms(self.kernel_size[1])
        weight = self.weight.double()
        out_ch, in_ch, kh, _ = weight.shape
        taps = torch.einsum("pj,ockj->pkco", torch.from_numpy(g).to(weight), weight)
        self.register_buffer("taps", taps.reshape(len(bt), kh * in_ch, out_ch).to(self.weight).contiguous())
        self.register_buffer("input_transform", torch.from_numpy(bt).to(self.weight))
        self.register_buffer("output_transform", torch.from_numpy(at).to(self.weight))
        self.points = len(bt)
        self.threaded = GemmConv2d(conv, activation, slope)
        self._workspaces: dict[tuple[int, ...], WinogradWorkspace] = {}

    def _workspace(self, x: torch.Tensor) -> WinogradWorkspace:
        (n, c, h, w), (kh, kw), points = x.shape, self.kernel_size, self.points
        oh, ow = h - kh + 1, w - kw + 1
        if ow % 2:
            raise ValueError(f"WinogradConv2d makes outputs in pairs along rows, but {w} columns give {ow}")
        across = ow // 2
        tiles = self.weight.new_empty(points, n, across, h, c)
        transformed = self.weight.new_empty(points, n * across * h * c)
        windows = transformed.as_strided((points, n * across, oh, kh * c), (n * across * h * c, h * c, c, 1))
        rows = self.weight.new_empty(points, n * across * oh, kh * c)
        bias = self.bias_or_zeros.repeat(n * across * oh)
        pairs = (2, n, across, oh, self.weight.shape[0])
        return WinogradWorkspace(
            tiles, tiles.view(points, -1), transformed, windows, rows.view(windows.shape), rows, bias,
            pairs, (n, oh, ow),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.get_num_threads() > 1:
            return self.threaded(x)
        space = kept_per_thread(self._workspaces, x, self._workspace)
        space.tiles.copy_(x.unfold(3, self.points, 2).permute(4, 0, 3, 2, 1))
        torch.mm(self.input_transform, space.tile_matrix, out=space.transformed)
        space.gathered.copy_(space.windows)
        products = torch.bmm(space.rows, self.taps).view(self.points, -1)
        y = addmm_activated(space.bias, self.output_transform, products, self.activation, self.slope)
        pixels = y.view(space.pairs).permute(1, 3, 2, 0, 4).reshape(*space.output, -1)
        return pixels.permute(0, 3, 1, 2)


class SingleFrameSwitch(nn.Module):
    """A single frame through one module, batches through another: the fastest kernels differ."""

    def __init__(self, single: nn.Module, batched: nn.Module) -> None:
        super().__init__()
        self.single = single
        self.batched = batched

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.single(x) if x.shape[0] == 1 else self.batched(x)


class BlockConvPool2d(PatchConv2d):
    """A stride-1 convolution, its activation and a max-pool whose kernel equals its stride, as one matmul.

    Each pooling window's convolution outputs are one row of the product of the
    input block that feeds them with a weight matrix holding the kernel at each
    output offset; the pool is then a maximum over those offsets. The activation
    and the bias, monotone and shared by the window, go after the maximum. This
    needs more operations than the convolution but no pass over its full-size
    output, and keeps tensors channels-last from one layer to the next.
    """

    def __init__(self, conv: FusedConv2d, pool: int) -> None:
        out_ch, in_ch, kh, kw = conv.weight.shape
        window = (kh + pool - 1, kw + pool - 1)
        super().__init__(conv, conv.activation, conv.slope, window, (pool, pool))
        self.pool = pool
        taps = self.weight.new_zeros(*window, in_ch, pool, pool, out_ch)
        for i in range(pool):
            for j in range(pool):
                taps[i:i + kh, j:j + kw, :, i, j] = self.weight.permute(2, 3, 1, 0)
        self.register_buffer("matrix", self.window_matrix(taps.flatten(3)))
        self.register_buffer("window_bias", self.bias_or_zeros.repeat(pool * pool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        space = self.gather(x)
        y = torch.addmm(self.window_bias, space.rows, self.matrix)
        windows = y.view(y.shape[0], self.pool * self.pool, -1).unbind(1)
        pooled = torch.maximum(windows[0], windows[1])
        for window in windows[2:]:
            torch.maximum(pooled, window, out=pooled)
        return self.activate(pooled).as_strided(*space.output)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_pool={self.pool}"


class Im2colConv2d(OneDNNConv2d):
    """A small convolution: PyTorch's native im2col + matrix product for single frames, oneDNN on batches.

    oneDNN's convolution costs about 60 µs per call however small its work, the
    native one about 17 µs, which wins when a single frame makes a small patch matrix.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:
            return super().forward(x)
        y = torch._C._nn.thnn_conv2d(x, self.weight, self.kernel_size, self.bias, self.stride, self.padding)
        return self.activate(y)


class FFTConv2d(OneDNNConv2d):
    """A large stride-1 kernel: NNPACK's FFT convolution on batches (its output is NCHW), oneDNN below.

    An FFT needs several times fewer operations than a direct 7x7 convolution, but
    transforms the kernels on every call, which only pays off over a batch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] < FFT_MIN_BATCH:
            return super().forward(x)
        y = torch._nnpack_spatial_convolution(x, self.weight, self.bias, self.padding, self.stride)
        return self.activate(y)


class SeparableMaxPool2d(nn.Module):
    """A max-pool whose kernel is a multiple of its stride, as strided elementwise maxima.

    Along each axis: the maximum of each stride-long block, then of each run of
    kernel/stride adjacent blocks. Exact, and vectorised over the contiguous
    channels of a channels-last tensor, unlike PyTorch's channels-last max-pool.
    """

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() < SEPARABLE_POOL_MIN_ELEMENTS:
            return F.max_pool2d(x, self.kernel, self.stride)
        return self._pool_axis(self._pool_axis(x, 3), 2)

    def _pool_axis(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        runs = self.kernel // self.stride
        out = (x.shape[dim] - self.kernel) // self.stride + 1
        blocks = x.narrow(dim, 0, (out + runs - 1) * self.stride).unflatten(dim, (-1, self.stride))
        block_max = blocks.select(dim + 1, 0)
        for i in range(1, self.stride):
            block_max = torch.maximum(block_max, blocks.select(dim + 1, i))
        pooled = block_max.narrow(dim, 0, out)
        for i in range(1, runs):
            pooled = torch.maximum(pooled, block_max.narrow(dim, i, out))
        return pooled

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel}, stride={self.stride}"


class FusedLinear(nn.Module):
    """A Linear and the ReLU/LeakyReLU after it as one matrix product.

    With ``nhwc_flatten``, it also takes the place of a flatten before it: it reads a
    (N, C, H, W) map in its channels-last memory order, a view rather than a copy,
    and its weight's columns are reordered from (C, H, W) to (H, W, C) to match.
    """

    def __init__(
        self, linear: nn.Linear, activation: str, slope: float, flattened: tuple[int, int, int] | None
    ) -> None:
        super().__init__()
        weight = linear.weight.detach()
        if flattened is not None:
            weight = weight.view(-1, *flattened).permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
        self.register_buffer("weight", weight.contiguous())
        self.register_buffer("matrix", self.weight.t())
        bias = linear.bias
        self.register_buffer("bias", weight.new_zeros(weight.shape[0]) if bias is None else bias.detach().clone())
        self.nhwc_flatten = flattened is not None
        self.activation = activation
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.nhwc_flatten:
            x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return addmm_activated(self.bias, x, self.matrix, self.activation, self.slope)

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape
        return (
            f"in_features={in_features}, out_features={out_features}, activation={self.activation}, "
            f"nhwc_flatten={self.nhwc_flatten}"
        )


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _set_module(gm: fx.GraphModule, node: fx.Node, module: nn.Module, suffix: str) -> None:
    """Point ``node`` at ``module``, registered beside the one it called (which may be shared)."""
    node.target = f"{node.target}_{suffix}"
    gm.add_submodule(node.target, module)


def drop_unused_pool_indices(gm: fx.GraphModule) -> int:
    """Max-pools whose indices are never read stop computing them. Returns how many."""
    count = 0
    for node in gm.graph.nodes:
        pool = _module(gm, node)
        if not (isinstance(pool, nn.MaxPool2d) and pool.return_indices):
            continue
        users = list(node.users)
        if not all(u.target is operator.getitem and u.args[1] == 0 for u in users):
            continue
        plain = copy.copy(pool)
        plain.return_indices = False
        _set_module(gm, node, plain, "without_indices")
        for user in users:
            user.replace_all_uses_with(node)
            gm.graph.erase_node(user)
        count += 1
    return count


def _count_batch_norms(gm: fx.GraphModule) -> int:
    return sum(isinstance(_module(gm, n), nn.modules.batchnorm._BatchNorm) for n in gm.graph.nodes)


def fold_batch_norms(gm: fx.GraphModule) -> int:
    """Each BatchNorm right after a convolution is folded into its weights. Returns how many."""
    before = _count_batch_norms(gm)
    gm.graph = fuse(gm, inplace=True, no_trace=True).graph
    return before - _count_batch_norms(gm)


def fold_input_scale(gm: fx.GraphModule) -> int:
    """The 1/255 scaling moves into the first convolution's weights, or becomes an explicit step."""
    (placeholder,) = (n for n in gm.graph.nodes if n.op == "placeholder")
    users = list(placeholder.users)
    first = _module(gm, users[0]) if len(users) == 1 else None
    if type(first) is nn.Conv2d and first.padding_mode == "zeros":
        with torch.no_grad():
            first.weight.mul_(INPUT_SCALE)
        return 1
    with gm.graph.inserting_after(placeholder):
        scaled = gm.graph.call_function(operator.mul, (placeholder, INPUT_SCALE))
    placeholder.replace_all_uses_with(scaled, delete_user_cb=lambda user: user is not scaled)
    return 0


ACTIVATIONS: dict[type[nn.Module], Callable[[nn.Module], tuple[str, float]]] = {
    nn.ReLU: lambda m: ("relu", 0.0),
    nn.LeakyReLU: lambda m: ("leaky_relu", m.negative_slope),
}


def _plain(conv: nn.Conv2d) -> bool:
    return conv.groups == 1 and tuple(conv.dilation) == (1, 1)


def _plain_unpadded(conv: nn.Conv2d) -> bool:
    return _plain(conv) and tuple(conv.padding) == (0, 0)


def _gemm_fits(conv: nn.Conv2d, node: fx.Node, max_pixels: int) -> bool:
    """Whether this is a plain unpadded convolution with at most ``max_pixels`` output pixels.

    Those are the shapes where one matrix product over the patches measured fastest.
    """
    out_pixels = int(np.prod(node.meta["tensor_meta"].shape[2:]))
    return _plain_unpadded(conv) and out_pixels <= max_pixels


def _single_frame_kernel(conv: nn.Conv2d, node: fx.Node) -> type[FusedConv2d] | None:
    """A kernel that beats the batch kernel on a single frame through this convolution, if one does.

    Winograd's F(2, 7) does for a stride-1 unpadded convolution 7 wide with an even
    output width (Conv_Maxpool_Big's 7x7). One matrix product over the patches does
    for a strided convolution or one with a small output; oneDNN's direct kernel
    stays faster on large stride-1 outputs (Conv_Unpool's).
    """
    out_width = node.meta["tensor_meta"].shape[3]
    stride_1 = tuple(conv.stride) == (1, 1)
    if _plain_unpadded(conv) and stride_1 and conv.kernel_size[1] == WINOGRAD_WIDTH and out_width % 2 == 0:
        return WinogradConv2d
    strided = _plain(conv) and max(conv.stride) > 1
    return GemmConv2d if strided or _gemm_fits(conv, node, SINGLE_FRAME_GEMM_MAX_OUTPUT_PIXELS) else None


def _conv_kernel(conv: nn.Conv2d, node: fx.Node) -> type[FusedConv2d]:
    """Which kernel suits this convolution, from its shapes on 64x64 frames."""
    out_pixels = int(np.prod(node.meta["tensor_meta"].shape[2:]))
    plain = _plain(conv)
    if _gemm_fits(conv, node, GEMM_MAX_OUTPUT_PIXELS):
        return GemmConv2d
    large = min(conv.kernel_size) >= FFT_MIN_KERNEL
    if plain and tuple(conv.stride) == (1, 1) and large and nnpack_available():
        return FFTConv2d
    patch = conv.weight[0].numel()
    small = patch <= IM2COL_MAX_PATCH and out_pixels * patch <= IM2COL_MAX_ELEMENTS
    if plain and small and conv.out_channels >= IM2COL_MIN_OUT_CHANNELS:
        return Im2colConv2d
    return OneDNNConv2d


def propagate_frame_shapes(gm: fx.GraphModule) -> None:
    """Record on every node the shape of its output for one 64x64 frame."""
    with torch.no_grad():
        ShapeProp(gm).propagate(torch.zeros(1, FRAME_SHAPE[2], *FRAME_SHAPE[:2]))


def absorb_activation(gm: fx.GraphModule, node: fx.Node) -> tuple[str, float]:
    """Remove the ReLU/LeakyReLU that alone uses ``node``'s output; return its name and slope."""
    users = list(node.users)
    activation = _module(gm, users[0]) if len(users) == 1 else None
    describe = ACTIVATIONS.get(type(activation))
    if describe is None:
        return "none", 0.0
    users[0].replace_all_uses_with(node)
    gm.graph.erase_node(users[0])
    return describe(activation)


def lower_convolutions(gm: fx.GraphModule) -> dict[str, int]:
    """Each Conv2d, with the activation after it, becomes the FusedConv2d that suits its shape.

    Needs ``propagate_frame_shapes`` first.
    """
    counts: dict[str, int] = {}
    for node in list(gm.graph.nodes):
        conv = _module(gm, node)
        if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            continue
        kernel = _conv_kernel(conv, node)
        activation = absorb_activation(gm, node)
        module, name = kernel(conv, *activation), kernel.__name__
        single = _single_frame_kernel(conv, node)
        if single not in (None, kernel):
            module, name = SingleFrameSwitch(single(conv, *activation), module), f"{single.__name__}|{name}"
        _set_module(gm, node, module, "fused")
        counts[name] = counts.get(name, 0) + 1
    return counts


def lower_linears(gm: fx.GraphModule) -> int:
    """Each Linear, with the activation after it and a flatten of a 4-D map before it, becomes a FusedLinear.

    Needs ``propagate_frame_shapes`` first. Returns how many flattens were absorbed.
    """
    absorbed = 0
    for node in list(gm.graph.nodes):
        linear = _module(gm, node)
        if type(linear) is not nn.Linear:
            continue
        source = node.args[0]
        flatten = _module(gm, source)
        flattened = None
        if (
            isinstance(flatten, nn.Flatten) and flatten.start_dim == 1 and flatten.end_dim == -1
            and len(source.users) == 1 and len(source.args[0].meta["tensor_meta"].shape) == 4
        ):
            flattened = tuple(source.args[0].meta["tensor_meta"].shape[1:])
            node.args = (source.args[0],)
            gm.graph.erase_node(source)
            absorbed += 1
        _set_module(gm, node, FusedLinear(linear, *absorb_activation(gm, node), flattened), "fused")
    return absorbed


def lower_max_pools(gm: fx.GraphModule) -> int:
    """Max-pools whose kernel is a multiple of their stride become SeparableMaxPool2d. Returns how many."""
    count = 0
    for node in gm.graph.nodes:
        pool = _module(gm, node)
        if type(pool) is not nn.MaxPool2d or pool.return_indices or pool.ceil_mode:
            continue
        kernel, stride = pool.kernel_size, pool.stride
        square = isinstance(kernel, int) and isinstance(stride, int)
        if square and pool.padding == 0 and pool.dilation == 1 and kernel % stride == 0:
            _set_module(gm, node, SeparableMaxPool2d(kernel, stride), "separable")
            count += 1
    return count


def fuse_convolution_pools(gm: fx.GraphModule) -> int:
    """Single frames through a stride-1 convolution and the max-pool that alone reads it run as one step.

    The pool's kernel must equal its stride; the step is a BlockConvPool2d, and
    batches keep the two kernels. Needs ``lower_convolutions`` and ``lower_max_pools``
    first. Returns how many pairs were fused.
    """
    count = 0
    for node in list(gm.graph.nodes):
        conv = _module(gm, node)
        users = list(node.users)
        pool = _module(gm, users[0]) if len(users) == 1 else None
        if not (isinstance(conv, FusedConv2d) and isinstance(pool, SeparableMaxPool2d)):
            continue
        plain = conv.groups == 1 and conv.stride == [1, 1] and conv.dilation == [1, 1]
        monotone = conv.activation != "leaky_relu" or conv.slope >= 0
        if plain and monotone and pool.kernel == pool.stride:
            batched = nn.Sequential(conv, pool)
            _set_module(gm, node, SingleFrameSwitch(BlockConvPool2d(conv, pool.stride), batched), "pooled")
            users[0].replace_all_uses_with(node)
            gm.graph.erase_node(users[0])
            count += 1
    return count


class FloatFrames(nn.Module):
    """The uint8 frames as float32, in the same channels-last layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()


def read_uint8_frames(gm: fx.GraphModule) -> int:
    """The graph takes the uint8 frames: converted by a FloatFrames step, unless its first layer reads them.

    A PatchConv2d, or one taking single frames in a SingleFrameSwitch, converts
    them while it copies them into its buffer, without a float copy of the frames.
    Returns 1 if the first layer reads them, 0 if a FloatFrames step was added.
    """
    (placeholder,) = (n for n in gm.graph.nodes if n.op == "placeholder")
    users = list(placeholder.users)
    first = _module(gm, users[0]) if len(users) == 1 else None
    if isinstance(first, PatchConv2d):
        return 1
    if isinstance(first, SingleFrameSwitch) and isinstance(first.single, PatchConv2d):
        first.batched = nn.Sequential(FloatFrames(), first.batched)
        return 1
    gm.add_submodule("float_frames", FloatFrames())
    with gm.graph.inserting_after(placeholder):
        converted = gm.graph.call_module("float_frames", (placeholder,))
    placeholder.replace_all_uses_with(converted, delete_user_cb=lambda user: user is not converted)
    return 0


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def nnpack_available() -> bool:
    return torch._nnpack_available()


def trace_encode(model: BaseAutoencoder) -> fx.GraphModule:
    """``model.encode`` as an fx graph over a copy of the model, ready for rewriting."""
    return fx.symbolic_trace(_Encode(copy.deepcopy(model).eval()))


def rewrite_for_inference(
    model: BaseAutoencoder, device: torch.device
) -> tuple[fx.GraphModule, str, dict[str, int]]:
    """The rewritten encode graph, the name of its path and how often each rewrite applied."""
    gm = trace_encode(model).to(device)
    applied = {
        "drop_unused_pool_indices": drop_unused_pool_indices(gm),
        "fold_batch_norms": fold_batch_norms(gm),
        "fold_input_scale": fold_input_scale(gm),
    }
    path = CHANNELS_LAST_PATH
    if device.type == "cpu" and onednn_available():
        propagate_frame_shapes(gm)
        applied.update(lower_convolutions(gm))
        applied["FusedLinear_flatten"] = lower_linears(gm)
        applied["SeparableMaxPool2d"] = lower_max_pools(gm)
        applied["BlockConvPool2d"] = fuse_convolution_pools(gm)
        path = CPU_PATH
    applied["read_uint8_frames"] = read_uint8_frames(gm)
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm.to(device, memory_format=torch.channels_last).eval().requires_grad_(False), path, applied


def chain_runner(gm: fx.GraphModule) -> Callable[[torch.Tensor], torch.Tensor]:
    """The graph as a function; a chain of single-input modules runs as a loop over their forwards.

    That skips nn.Module's call machinery and attribute lookups, a few microseconds per
    layer: a tenth of a batch-1 call. Any other graph runs as the GraphModule itself.
    """
    previous, *body, output = gm.graph.nodes
    forwards = []
    for node in body:
        if node.op != "call_module" or node.args != (previous,) or node.kwargs:
            return gm
        forwards.append(gm.get_submodule(node.target).forward)
        previous = node
    if output.args != (previous,):
        return gm

    def run(x: torch.Tensor) -> torch.Tensor:
        for forward in forwards:
            x = forward(x)
        return x

    return run


class FrameEncoder:
    """A callable from uint8 (N, 64, 64, 3) RGB frames to float32 (N, *encoding_shape) encodings.

    ``path`` names how it runs (``CPU_PATH``, ``CHANNELS_LAST_PATH`` or ``EAGER_PATH``),
    ``rewrites`` how often each graph rewrite applied, ``fallback_reason`` why it
    runs eagerly, if it does. It computes with a copy of the weights taken when it was
    built (build a new one after changing them), and pickles as its reference module and device.
    """

    def __init__(self, model: BaseAutoencoder, device: torch.device | str) -> None:
        self.reference = model.eval()
        self.device = torch.device(device)
        self.fallback_reason: str | None = None
        self.rewrites: dict[str, int] = {}
        try:
            self.module, self.path, self.rewrites = rewrite_for_inference(model, self.device)
            self._run = chain_runner(self.module)
        except fx.proxy.TraceError as err:
            self.module, self.path = _ScaledEncode(model), EAGER_PATH
            self._run = self.module
            self.fallback_reason = f"{type(model).__name__}.encode cannot be traced by torch.fx: {err}"
            warnings.warn(f"{self.fallback_reason}; it runs eagerly, without the fast path", stacklevel=2)

    def graph_input(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Checked uint8 frames as the graph takes them: a (N, 3, 64, 64) view of their NHWC memory."""
        check_frames(frames)
        writeable = isinstance(frames, np.ndarray) and frames.flags.writeable  # from_numpy warns otherwise
        pixels = torch.from_numpy(frames) if writeable else torch.as_tensor(frames)  # from_numpy: 3 µs less
        return pixels.to(self.device, non_blocking=True).permute(0, 3, 1, 2)

    def __call__(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return self._run(self.graph_input(frames)).float().cpu().numpy()

    def __reduce__(self) -> tuple:
        return (FrameEncoder, (self.reference, self.device))

    def __repr__(self) -> str:
        return f"FrameEncoder({type(self.reference).__name__}, path={self.path!r}, device={self.device})"


def build_frame_encoder(model: BaseAutoencoder, device: torch.device | str) -> FrameEncoder:
    """A function from uint8 (N, 64, 64, 3) frames to float32 (N, *encoding_shape) encodings."""
    return FrameEncoder(model, device)


def eager_encode(
    model: BaseAutoencoder, frames: np.ndarray, device: torch.device | str = "cpu"
) -> np.ndarray:
    """The reference: the plain module in eval mode under no_grad, as the reference design ran it."""
    with torch.no_grad():
        return model.encode(frames_to_tensor(frames, device)).float().cpu().numpy()
