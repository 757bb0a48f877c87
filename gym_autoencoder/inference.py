"""The inference path that turns uint8 frames into encodings for the environments.

The environments spend most of each step here, so this is their step rate. The
plain module's ``encode`` stays the reference; ``build_frame_encoder`` traces it
with ``torch.fx`` and rewrites the graph for inference, keeping its outputs equal
to the reference's within float rounding:

- batch norms are folded into the convolutions before them;
- max-pools that return indices nobody reads become plain max-pools;
- the 1/255 input scaling is folded into the first convolution's weights, so a
  uint8 NHWC frame needs only a cast: its (N, C, H, W) view is already channels-last;
- on CPU, each convolution and the ReLU/LeakyReLU after it become one oneDNN call
  on channels-last tensors, with the weight packed once per input shape in the
  layout oneDNN computes in (the plain module re-packs it on every call);
- on CUDA, the folded graph runs channels-last through cuDNN.

A graph that cannot be traced runs the plain module instead; ``FrameEncoder.path``
names the path taken and ``FrameEncoder.fallback_reason`` says why, if it fell back.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable

import numpy as np
import torch
from torch import fx, nn
from torch.fx.experimental.optimization import fuse

from gym_autoencoder.preprocessing import check_frames, frames_to_tensor
from model_stubs import BaseAutoencoder

ONEDNN_PATH = "fx-folded-onednn"
CHANNELS_LAST_PATH = "fx-folded-channels-last"
EAGER_PATH = "eager"
INPUT_SCALE = 1.0 / 255.0
MAX_PACKED_SHAPES = 8

Rewrite = Callable[[fx.GraphModule], int]


class _Encode(nn.Module):
    """``model.encode`` as a module's forward, so fx can trace it."""

    def __init__(self, model: BaseAutoencoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x)


class _ScaledEncode(nn.Module):
    """The plain module's encode on a channels-last float view of uint8 frames: the fallback."""

    def __init__(self, model: BaseAutoencoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x * INPUT_SCALE)


class PackedConv2d(nn.Module):
    """A Conv2d and the activation after it as one oneDNN call on channels-last tensors.

    oneDNN computes in a blocked weight layout; the plain module converts its
    weight to it on every call, this one once per input shape (a few are kept).
    """

    def __init__(self, conv: nn.Conv2d, activation: str, scalars: list[float]) -> None:
        super().__init__()
        self.register_buffer("weight", conv.weight.detach().clone())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())
        self.padding = list(conv.padding)
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups
        self.activation = activation
        self.scalars = scalars
        self._packed: dict[tuple[int, ...], torch.Tensor] = {}

    def packed_weight(self, shape: tuple[int, ...]) -> torch.Tensor:
        packed = self._packed.get(shape)
        if packed is None:
            if len(self._packed) >= MAX_PACKED_SHAPES:
                self._packed.pop(next(iter(self._packed)))
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                self.weight.contiguous().to_mkldnn(), self.padding, self.stride, self.dilation, self.groups,
                list(shape),
            )
            self._packed[shape] = packed
        return packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise.default(
            x, self.packed_weight(tuple(x.shape)), self.bias, self.padding, self.stride,
            self.dilation, self.groups, self.activation, self.scalars, "",
        )

    def extra_repr(self) -> str:
        out_ch, in_ch, *kernel = self.weight.shape
        return f"{in_ch}, {out_ch}, kernel_size={tuple(kernel)}, stride={tuple(self.stride)}, " \
            f"padding={tuple(self.padding)}, activation={self.activation}"


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _replace_module(gm: fx.GraphModule, node: fx.Node, module: nn.Module) -> None:
    parent, _, name = node.target.rpartition(".")
    setattr(gm.get_submodule(parent), name, module)


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
        node.target = f"{node.target}_without_indices"
        gm.add_submodule(node.target, plain)
        for user in users:
            user.replace_all_uses_with(node)
            gm.graph.erase_node(user)
        count += 1
    return count


def fold_batch_norms(gm: fx.GraphModule) -> int:
    """Each BatchNorm right after a convolution is folded into its weights. Returns how many."""
    before = _count_batch_norms(gm)
    gm.graph = fuse(gm, inplace=True, no_trace=True).graph
    return before - _count_batch_norms(gm)


def _count_batch_norms(gm: fx.GraphModule) -> int:
    return sum(isinstance(_module(gm, n), nn.modules.batchnorm._BatchNorm) for n in gm.graph.nodes)


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


ACTIVATIONS: dict[type[nn.Module], Callable[[nn.Module], tuple[str, list[float]]]] = {
    nn.ReLU: lambda m: ("relu", []),
    nn.LeakyReLU: lambda m: ("leaky_relu", [m.negative_slope]),
}


def pack_convolutions(gm: fx.GraphModule) -> int:
    """Each Conv2d (with the activation after it) becomes a PackedConv2d. Returns how many."""
    count = 0
    for node in list(gm.graph.nodes):
        conv = _module(gm, node)
        if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            continue
        users = list(node.users)
        activation = _module(gm, users[0]) if len(users) == 1 else None
        describe = ACTIVATIONS.get(type(activation))
        name, scalars = describe(activation) if describe else ("none", [])
        _replace_module(gm, node, PackedConv2d(conv, name, scalars))
        if describe:
            users[0].replace_all_uses_with(node)
            gm.graph.erase_node(users[0])
        count += 1
    return count


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def trace_encode(model: BaseAutoencoder) -> fx.GraphModule:
    """``model.encode`` as an fx graph over a copy of the model, ready for rewriting."""
    return fx.symbolic_trace(_Encode(copy.deepcopy(model).eval()))


def rewrite_for_inference(
    model: BaseAutoencoder, device: torch.device
) -> tuple[nn.Module, str, dict[str, int]]:
    """The rewritten encode graph, the name of its path and how often each rewrite applied."""
    gm = trace_encode(model)
    rewrites: dict[str, Rewrite] = {
        "drop_unused_pool_indices": drop_unused_pool_indices,
        "fold_batch_norms": fold_batch_norms,
        "fold_input_scale": fold_input_scale,
    }
    path = CHANNELS_LAST_PATH
    if device.type == "cpu" and onednn_available():
        rewrites["pack_convolutions"] = pack_convolutions
        path = ONEDNN_PATH
    applied = {name: rewrite(gm) for name, rewrite in rewrites.items()}
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm.to(device, memory_format=torch.channels_last).eval(), path, applied


class FrameEncoder:
    """A callable from uint8 (N, 64, 64, 3) RGB frames to float32 (N, *encoding_shape) encodings.

    ``path`` names how it runs (``ONEDNN_PATH``, ``CHANNELS_LAST_PATH`` or ``EAGER_PATH``),
    ``rewrites`` how often each graph rewrite applied, ``fallback_reason`` why it
    runs eagerly, if it does. It pickles as its reference module and device.
    """

    def __init__(self, model: BaseAutoencoder, device: torch.device | str) -> None:
        self.reference = model.eval()
        self.device = torch.device(device)
        self.fallback_reason: str | None = None
        self.rewrites: dict[str, int] = {}
        try:
            self.module, self.path, self.rewrites = rewrite_for_inference(model, self.device)
        except fx.proxy.TraceError as err:
            self.module, self.path = _ScaledEncode(model), EAGER_PATH
            self.fallback_reason = f"{type(model).__name__}.encode cannot be traced by torch.fx: {err}"

    def __call__(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        check_frames(frames)
        with torch.inference_mode():
            pixels = torch.as_tensor(frames).to(self.device, non_blocking=True)
            return self.module(pixels.permute(0, 3, 1, 2).float()).float().cpu().numpy()

    def __reduce__(self) -> tuple:
        return (FrameEncoder, (self.reference, self.device))

    def __repr__(self) -> str:
        return f"FrameEncoder({type(self.reference).__name__}, path={self.path!r}, device={self.device})"


def build_frame_encoder(model: BaseAutoencoder, device: torch.device | str) -> FrameEncoder:
    """A function from uint8 (N, 64, 64, 3) frames to float32 (N, *encoding_shape) encodings."""
    return FrameEncoder(model, device)


def eager_encode(model: BaseAutoencoder, frames: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """The reference: the plain module in eval mode under no_grad, as the reference design ran it."""
    with torch.no_grad():
        return model.encode(frames_to_tensor(frames, device)).float().cpu().numpy()
