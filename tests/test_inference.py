"""The inference path: every encoder takes the fast path, and it matches the plain eager module."""

from __future__ import annotations

import pickle
import threading

import gymnasium
import numpy as np
import pytest
import torch
from torch import nn

from gym_autoencoder import FrameAutoencoder, FrameFormatError, load_model
from gym_autoencoder.inference import (
    CHANNELS_LAST_PATH,
    CPU_PATH,
    EAGER_PATH,
    FFT_MIN_BATCH,
    BlockConvPool2d,
    GemmConv2d,
    OneDNNConv2d,
    WinogradConv2d,
    build_frame_encoder,
    eager_encode,
    torch_threads,
    trace_encode,
    winograd_transforms,
)
from gym_autoencoder.registration import ENV_ARCHITECTURES
from gym_autoencoder.model_stubs import MODEL_NAMES, BaseAutoencoder
from tests.helpers import fresh_model, heist_frames

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def frames_37() -> np.ndarray:
    """A batch of 37 real frames: not a power of two, and large enough for the FFT kernel."""
    return heist_frames(37, seed=1)


def trained_like(name: str) -> BaseAutoencoder:
    """A fresh model whose batch norms hold non-trivial statistics and affine terms: folding must use them."""
    model = fresh_model(name)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            size = bn.num_features
            bn.running_mean.copy_(torch.randn(size, generator=generator) * 0.5)
            bn.running_var.copy_(torch.rand(size, generator=generator) * 2 + 0.1)
            bn.weight.copy_(torch.randn(size, generator=generator) * 0.5 + 1)
            bn.bias.copy_(torch.randn(size, generator=generator) * 0.2)
    return model.eval()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fast_path_matches_the_eager_module_on_real_frames(name, frames, frames_37):
    model = trained_like(name)
    encoder = build_frame_encoder(model, "cpu")
    assert encoder.path == CPU_PATH and encoder.fallback_reason is None
    assert 3 < FFT_MIN_BATCH <= len(frames_37)  # both kernels of a large convolution run
    for batch in (frames[:1], frames[:3], frames_37):
        encoding = encoder(batch)
        expected = eager_encode(model, batch)
        assert encoding.dtype == np.float32 and encoding.shape == expected.shape
        assert np.abs(encoding - expected).max() <= TOLERANCE, f"batch of {len(batch)}"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fast_path_matches_the_eager_module_with_the_shipped_weights(name, frames):
    """Trained weights give larger encodings (up to about 70) than fresh ones: the tolerance must still hold."""
    model = load_model(name).model
    encoder = build_frame_encoder(model, "cpu")
    for count in (1, 2):  # some single-frame kernels depend on the thread count
        with torch_threads(count):
            for batch in (frames[:1], frames):
                difference = np.abs(encoder(batch) - eager_encode(model, batch)).max()
                assert difference <= TOLERANCE, f"batch of {len(batch)}, {count} threads"


def test_changing_the_thread_count_keeps_the_encodings(frames):
    model = trained_like("Conv_No_Bottleneck")
    encoder = build_frame_encoder(model, "cpu")
    expected = eager_encode(model, frames)
    for count in (1, 2, 1):
        with torch_threads(count):
            assert np.abs(encoder(frames) - expected).max() <= TOLERANCE


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_layer_is_rewritten(name):
    encoder = build_frame_encoder(fresh_model(name).eval(), "cpu")
    plain = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.Linear, nn.Flatten, nn.ReLU, nn.LeakyReLU)
    assert not [m for m in encoder.module.modules() if type(m) in plain]
    assert encoder.rewrites["fold_input_scale"] == 1
    graph = trace_encode(encoder.reference)
    called = [graph.get_submodule(n.target) for n in graph.graph.nodes if n.op == "call_module"]
    batch_norms = sum(isinstance(m, nn.BatchNorm2d) for m in called)
    assert encoder.rewrites["fold_batch_norms"] == batch_norms


ACTIVATION_MODULES = {
    "relu": (nn.ReLU(), 0.0), "leaky_relu": (nn.LeakyReLU(0.2), 0.2), "none": (nn.Identity(), 0.0)
}


@pytest.mark.parametrize(
    ("in_ch", "out_ch", "kernel", "padding", "pool", "size", "activation"),
    [
        (3, 16, 3, 1, 2, 64, "relu"),  # Conv_Maxpool's first layer
        (16, 4, 3, 1, 2, 32, "relu"),  # ... and its second
        (16, 32, 3, 0, 2, 31, "relu"),  # an odd output (29) whose last row the pool drops
        (4, 8, 5, 2, 3, 20, "leaky_relu"),
        (4, 8, 3, 1, 2, 16, "none"),
    ],
)
def test_block_conv_pool_matches_convolution_then_pool(in_ch, out_ch, kernel, padding, pool, size, activation):
    torch.manual_seed(0)
    conv = nn.Conv2d(in_ch, out_ch, kernel, padding=padding)
    module, slope = ACTIVATION_MODULES[activation]
    block = BlockConvPool2d(OneDNNConv2d(conv, activation, slope), pool)
    x = torch.randn(1, in_ch, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = nn.functional.max_pool2d(module(conv(x)), pool)
        for _ in range(2):  # the second call reuses the buffers
            assert torch.allclose(block(x), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("in_ch", "kernel", "stride", "padding", "size", "batch", "unit"),
    [
        (3, 3, 2, 1, 64, 1, 2),  # Conv_Maxpool_Big's first layer: rows of 9 floats, gathered two at a time
        (3, 4, 2, 0, 64, 2, 2),  # the VAEs' first layer, on two frames
        (3, 3, 2, 1, 31, 1, 2),  # an odd padded width: its rows get an extra column to start on a pair
        (3, 3, 1, 1, 16, 1, 1),  # a stride of 3 floats cannot step in pairs
        (16, 3, 2, 1, 32, 1, 1),  # Conv_Maxpool_Big's second layer: long rows, a strided copy
    ],
)
def test_gemm_convolution_matches_the_convolution(in_ch, kernel, stride, padding, size, batch, unit):
    torch.manual_seed(0)
    conv = nn.Conv2d(in_ch, 8, kernel, stride, padding)
    gemm = GemmConv2d(conv, "relu", 0.0)
    assert gemm.unit == unit
    pixels = torch.randint(0, 256, (batch, size, size, in_ch), dtype=torch.uint8).permute(0, 3, 1, 2)
    with torch.inference_mode():
        expected = conv(pixels.float()).relu()
        for x in (pixels, pixels.float(), pixels):  # uint8 frames as the first layer gets them, and floats
            assert torch.allclose(gemm(x), expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("taps", [3, 5, 7])
def test_winograd_transforms_give_two_outputs_of_the_correlation(taps):
    at, g, bt = winograd_transforms(taps)
    rng = np.random.default_rng(0)
    d, w = rng.normal(size=taps + 1), rng.normal(size=taps)
    np.testing.assert_allclose(at @ ((g @ w) * (bt @ d)), [d[:taps] @ w, d[1:] @ w], atol=1e-12)


@pytest.mark.parametrize(
    ("kernel", "size", "batch", "activation"),
    [((7, 7), 16, 1, "relu"), ((3, 7), 12, 2, "leaky_relu"), ((7, 7), 20, 1, "none")],
)
def test_winograd_convolution_matches_the_convolution(kernel, size, batch, activation):
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 16, kernel)
    module, slope = ACTIVATION_MODULES[activation]
    winograd = WinogradConv2d(conv, activation, slope)
    x = torch.rand(batch, 32, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = module(conv(x))
        for count in (1, 1, 2):  # Winograd, again with its buffers, then the matrix product it holds
            with torch_threads(count):
                assert torch.allclose(winograd(x), expected, atol=1e-5), f"{count} threads"


def test_winograd_convolution_refuses_an_odd_output_width():
    winograd = WinogradConv2d(nn.Conv2d(4, 4, 7), "relu", 0.0)
    with torch_threads(1), torch.inference_mode(), pytest.raises(ValueError, match="pairs"):
        winograd(torch.rand(1, 4, 15, 15))


def test_threads_calling_one_encoder_at_once_get_their_own_encodings(frames):
    model = trained_like("Conv_Maxpool")
    encoder = build_frame_encoder(model, "cpu")
    expected = [eager_encode(model, frames[i:i + 1]) for i in range(2)]
    results: list[list[np.ndarray]] = [[], []]

    def encode_repeatedly(i: int) -> None:
        for _ in range(100):
            results[i].append(encoder(frames[i:i + 1]))

    workers = [threading.Thread(target=encode_repeatedly, args=(i,)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for i in range(2):
        assert max(np.abs(r - expected[i]).max() for r in results[i]) <= TOLERANCE


@pytest.mark.parametrize(
    ("name", "kernels"),
    [
        ("Conv_Unpool", {"OneDNNConv2d": 5, "read_uint8_frames": 0}),
        ("Conv_Maxpool", {"BlockConvPool2d": 2, "read_uint8_frames": 1}),
        ("Conv_No_Bottleneck", {"BlockConvPool2d": 2, "read_uint8_frames": 1}),
        ("Conv_Maxpool_Big", {"GemmConv2d|Im2colConv2d": 2, "WinogradConv2d|FFTConv2d": 1, "read_uint8_frames": 1}),
        ("VAE_Paper", {"GemmConv2d|OneDNNConv2d": 3, "GemmConv2d": 1, "read_uint8_frames": 1}),
    ],
)
def test_single_frames_take_the_measured_kernels(name, kernels):
    """Which layers read the uint8 frames themselves is part of the choice: the others get a FloatFrames step."""
    rewrites = build_frame_encoder(fresh_model(name).eval(), "cpu").rewrites
    assert {key: rewrites.get(key) for key in kernels} == kernels


def test_environments_and_load_model_use_the_fast_path(env_checkpoints):
    for env_id in ENV_ARCHITECTURES:
        env = gymnasium.make(f"gym_autoencoder:{env_id}", checkpoint=env_checkpoints[env_id], device="cpu")
        assert env.unwrapped.autoencoder.frame_encoder.path == CPU_PATH, env_id
        env.close()
    envs = gymnasium.make_vec(
        "gym_autoencoder:vae-alex-v0", num_envs=2, checkpoint=env_checkpoints["vae-alex-v0"], device="cpu"
    )
    assert envs.autoencoder.frame_encoder.path == CPU_PATH
    envs.close()
    assert load_model(env_checkpoints["auto-unpool-v0"]).frame_encoder.path == CPU_PATH


def test_the_autoencoder_pickles_with_its_encoder(frames):
    autoencoder = FrameAutoencoder(trained_like("Conv_Unpool"), {}, "cpu")
    copy = pickle.loads(pickle.dumps(autoencoder))
    assert copy.frame_encoder.path == CPU_PATH
    np.testing.assert_array_equal(copy.encode(frames[:4]), autoencoder.encode(frames[:4]))


def test_frames_that_are_not_uint8_rgb_are_refused(frames):
    encoder = build_frame_encoder(fresh_model("Conv_Maxpool").eval(), "cpu")
    with pytest.raises(FrameFormatError, match="uint8"):
        encoder(frames.astype(np.float32))
    with pytest.raises(FrameFormatError, match="shape"):
        encoder(frames[0])


class _DataDependentEncoder(BaseAutoencoder):
    """An encoder whose control flow depends on its input, which torch.fx cannot trace."""

    encoding_shape = (4,)

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 4)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        means = x.mean(dim=(2, 3))
        return self.linear(means) if means.sum() > 0 else -self.linear(means)


def test_an_untraceable_encoder_runs_eagerly_and_says_why(frames):
    model = _DataDependentEncoder().eval()
    with pytest.warns(UserWarning, match="runs eagerly"):
        encoder = build_frame_encoder(model, "cpu")
    assert encoder.path == EAGER_PATH
    assert "_DataDependentEncoder.encode cannot be traced" in encoder.fallback_reason
    np.testing.assert_allclose(encoder(frames), eager_encode(model, frames), atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_cuda_path_matches_the_eager_module(name, frames, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # TF32 rounding would swamp the comparison
    model = trained_like(name).cuda()
    encoder = build_frame_encoder(model, "cuda")
    assert encoder.path == CHANNELS_LAST_PATH
    for batch in (frames[:1], frames):
        assert np.abs(encoder(batch) - eager_encode(model, batch, "cuda")).max() <= TOLERANCE
