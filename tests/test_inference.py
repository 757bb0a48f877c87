"""The inference path: ONNX Runtime on CPU, PyTorch on CUDA and as the fallback, all equal to the plain module."""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import gymnasium
import numpy as np
import pytest
import torch
from torch import nn

from gym_autoencoder import FrameAutoencoder, FrameFormatError, load_model, save_checkpoint
from gym_autoencoder.inference import (
    ONNX_PATH,
    TOLERANCE,
    TORCH_PATH,
    TorchFrameEncoder,
    build_frame_encoder,
    cached_graph_paths,
    eager_encode,
    export_onnx,
    relative_difference,
    torch_threads,
)
from gym_autoencoder.model_stubs import MODEL_NAMES, BaseAutoencoder
from gym_autoencoder.registration import ENV_ARCHITECTURES
from tests.helpers import fresh_model, heist_frames


@pytest.fixture(scope="module", autouse=True)
def collect_garbage_after_the_module():
    """Free this module's unclosed objects now: a Procgen instance that the garbage collector
    frees while another is being made deadlocks in gym3's cffi lock."""
    yield
    gc.collect()


@pytest.fixture(scope="module")
def frames_37() -> np.ndarray:
    """A batch of 37 real frames: not a power of two."""
    return heist_frames(37, seed=1)


def trained_like(name: str, seed: int = 1) -> BaseAutoencoder:
    """A fresh model whose batch norms hold non-trivial statistics and affine terms: the graph must use them."""
    model = fresh_model(name, seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            size = bn.num_features
            bn.running_mean.copy_(torch.randn(size, generator=generator) * 0.5)
            bn.running_var.copy_(torch.rand(size, generator=generator) * 2 + 0.1)
            bn.weight.copy_(torch.randn(size, generator=generator) * 0.5 + 1)
            bn.bias.copy_(torch.randn(size, generator=generator) * 0.2)
    return model.eval()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_encode_matches_the_plain_module_with_the_shipped_weights(name, frames):
    """Trained weights give encodings up to about 70: the relative tolerance holds on 1 and 2 threads."""
    autoencoder = load_model(name)
    assert autoencoder.frame_encoder.path == ONNX_PATH
    for count in (1, 2):
        with torch_threads(count):
            for batch in (frames[:1], frames):
                encoding = autoencoder.encode(batch)
                expected = eager_encode(autoencoder.model, batch)
                assert encoding.dtype == np.float32 and encoding.shape == expected.shape
                difference = relative_difference(encoding, expected)
                assert difference <= TOLERANCE, f"batch of {len(batch)}, {count} threads"


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("path", [ONNX_PATH, TORCH_PATH])
def test_both_paths_match_the_plain_module_on_real_frames(name, path, frames, frames_37):
    model = trained_like(name)
    encoder = build_frame_encoder(model, "cpu") if path == ONNX_PATH else TorchFrameEncoder(model, "cpu")
    assert encoder.path == path
    for batch in (frames[:1], frames[:3], frames_37):
        assert relative_difference(encoder(batch), eager_encode(model, batch)) <= TOLERANCE, len(batch)


def test_threads_follow_torch_unless_fixed(frames):
    model = trained_like("Conv_No_Bottleneck")
    following, fixed = build_frame_encoder(model, "cpu"), build_frame_encoder(model, "cpu", threads=1)
    expected = eager_encode(model, frames)
    for count in (1, 2, 1):
        with torch_threads(count):
            for encoder in (following, fixed):
                assert relative_difference(encoder(frames), expected) <= TOLERANCE
            assert following.session().get_session_options().intra_op_num_threads == count
            assert fixed.session().get_session_options().intra_op_num_threads == 1
    spinning = following.session().get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
    assert spinning == "0"


def cached_files(directory) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.glob("*.onnx")}


def test_a_checkpoint_is_exported_once_and_reexported_when_it_changes(tmp_path, frames):
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, trained_like("Conv_Maxpool", seed=1))
    first = load_model(checkpoint)
    files = cached_files(tmp_path)
    assert list(files) == [cached_graph_paths(checkpoint)[0].name]
    again = load_model(checkpoint)
    assert cached_files(tmp_path) == files  # read, not written again
    np.testing.assert_array_equal(again.encode(frames), first.encode(frames))

    changed = trained_like("Conv_Maxpool", seed=2)
    save_checkpoint(checkpoint, changed)
    reloaded = load_model(checkpoint)
    assert len(cached_files(tmp_path)) == 2  # a new graph under the new content's key
    assert relative_difference(reloaded.encode(frames), eager_encode(changed, frames)) <= TOLERANCE
    assert relative_difference(first.encode(frames), eager_encode(changed, frames)) > TOLERANCE


def test_a_cached_graph_that_does_not_match_is_exported_again(tmp_path, frames):
    checkpoint = tmp_path / "model.pt"
    model = trained_like("Conv_Maxpool", seed=1)
    save_checkpoint(checkpoint, model)
    cache = cached_graph_paths(checkpoint)[0]
    wrong = export_onnx(trained_like("Conv_Maxpool", seed=2))
    cache.write_bytes(wrong)
    autoencoder = load_model(checkpoint)
    assert autoencoder.frame_encoder.path == ONNX_PATH
    assert relative_difference(autoencoder.encode(frames), eager_encode(model, frames)) <= TOLERANCE
    assert cache.read_bytes() != wrong


def test_a_read_only_checkpoint_folder_caches_in_the_user_cache(tmp_path, monkeypatch, make_read_only):
    folder = tmp_path / "read_only"
    folder.mkdir()
    checkpoint = folder / "model.pt"
    save_checkpoint(checkpoint, trained_like("Conv_Maxpool"))
    make_read_only(folder)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    load_model(checkpoint)
    assert not cached_files(folder)
    cached = cached_graph_paths(checkpoint)[1]
    assert cached.parent == tmp_path / "cache" / "gym_autoencoder"
    files = cached_files(cached.parent)
    assert list(files) == [cached.name]
    load_model(checkpoint)
    assert cached_files(cached.parent) == files  # read from the user cache, not exported again


def test_the_autoencoder_pickles_without_its_sessions(frames):
    autoencoder = FrameAutoencoder(trained_like("Conv_Unpool"), {}, "cpu")
    expected = autoencoder.encode(frames[:4])  # makes a session
    state = autoencoder.frame_encoder.__getstate__()
    assert set(state) == {"graph", "threads"}
    copy = pickle.loads(pickle.dumps(autoencoder))
    assert copy.frame_encoder.path == ONNX_PATH
    np.testing.assert_array_equal(copy.encode(frames[:4]), expected)


_INHERITED: dict[str, FrameAutoencoder] = {}


def _encode_inherited(frames: np.ndarray, queue: multiprocessing.Queue) -> None:
    queue.put(_INHERITED["autoencoder"].encode(frames))


def test_a_forked_process_makes_its_own_session(frames):
    autoencoder = FrameAutoencoder(trained_like("VAE_Paper"), {}, "cpu")
    with torch_threads(2):
        expected = autoencoder.encode(frames)  # the parent's session, with a worker thread
        _INHERITED["autoencoder"] = autoencoder
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_encode_inherited, args=(frames, queue))
        child.start()
        encoding = queue.get(timeout=60)
        child.join(timeout=60)
    assert child.exitcode == 0
    np.testing.assert_array_equal(encoding, expected)
    np.testing.assert_array_equal(autoencoder.encode(frames), expected)


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
        assert max(relative_difference(r, expected[i]) for r in results[i]) <= TOLERANCE


FALLBACK_SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    sys.modules["onnxruntime"] = None  # "import onnxruntime" raises ImportError, as where it is not installed
    warnings.simplefilter("always")
    import numpy as np
    from gym_autoencoder.inference import eager_encode, relative_difference
    from tests.helpers import fresh_model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from gym_autoencoder import FrameAutoencoder
        autoencoders = [FrameAutoencoder(fresh_model(name).eval(), {}, "cpu") for name in sys.argv[1:]]
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    print(json.dumps({
        "paths": [a.frame_encoder.path for a in autoencoders],
        "warnings": [str(w.message) for w in caught if "onnxruntime" in str(w.message)],
        "differences": [relative_difference(a.encode(frames), eager_encode(a.model, frames)) for a in autoencoders],
    }))
""")


def test_without_onnxruntime_encoders_run_through_pytorch_with_one_warning():
    names = ["Conv_Maxpool", "VAE_Paper"]
    ran = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT, *names], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result["paths"] == [TORCH_PATH, TORCH_PATH]
    assert len(result["warnings"]) == 1 and "pip install onnxruntime" in result["warnings"][0]
    assert max(result["differences"]) <= TOLERANCE


class _UnexportableEncoder(BaseAutoencoder):
    """An encoder using an operation the ONNX exporter has no translation for."""

    encoding_shape = (4,)

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 4)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.cumprod(x.mean(dim=(2, 3)), dim=1))


def test_an_encoder_onnx_cannot_take_runs_through_pytorch_and_says_why(frames):
    model = _UnexportableEncoder().eval()
    with pytest.warns(UserWarning, match="_UnexportableEncoder encoder cannot run through ONNX Runtime"):
        encoder = build_frame_encoder(model, "cpu")
    assert encoder.path == TORCH_PATH
    np.testing.assert_allclose(encoder(frames), eager_encode(model, frames), atol=1e-6)


def test_environments_and_load_model_use_onnx_runtime(env_checkpoints):
    for env_id in ENV_ARCHITECTURES:
        env = gymnasium.make(f"gym_autoencoder:{env_id}", checkpoint=env_checkpoints[env_id], device="cpu")
        assert env.unwrapped.autoencoder.frame_encoder.path == ONNX_PATH, env_id
        env.close()
    envs = gymnasium.make_vec(
        "gym_autoencoder:vae-alex-v0", num_envs=2, checkpoint=env_checkpoints["vae-alex-v0"], device="cpu"
    )
    assert envs.autoencoder.frame_encoder.path == ONNX_PATH
    envs.close()
    folder = env_checkpoints["vae-alex-v0"].parent  # each checkpoint's graph was exported once, beside it
    assert {cached_graph_paths(path)[0].name for path in env_checkpoints.values()} <= set(cached_files(folder))
    assert load_model(env_checkpoints["auto-unpool-v0"]).frame_encoder.path == ONNX_PATH


@pytest.mark.parametrize("path", [ONNX_PATH, TORCH_PATH])
def test_frames_that_are_not_uint8_rgb_are_refused(path, frames):
    model = fresh_model("Conv_Maxpool").eval()
    encoder = build_frame_encoder(model, "cpu") if path == ONNX_PATH else TorchFrameEncoder(model, "cpu")
    with pytest.raises(FrameFormatError, match="uint8"):
        encoder(frames.astype(np.float32))
    with pytest.raises(FrameFormatError, match="shape"):
        encoder(frames[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_cuda_path_matches_the_eager_module(name, frames, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # TF32 rounding would swamp the comparison
    model = trained_like(name).cuda()
    encoder = build_frame_encoder(model, "cuda")
    assert encoder.path == TORCH_PATH
    for batch in (frames[:1], frames):
        assert relative_difference(encoder(batch), eager_encode(model, batch, "cuda")) <= TOLERANCE
