import numpy as np
import pytest
import torch

import gym_autoencoder
from gym_autoencoder import CheckpointError, frames_to_tensor, load_checkpoint, load_model, save_checkpoint
from gym_autoencoder.errors import DeviceError
from gym_autoencoder.model_stubs import MODEL_NAMES
from tests.helpers import fresh_model




@pytest.mark.parametrize("name", MODEL_NAMES)
def test_round_trip_keeps_weights_outputs_and_metadata(name, frames, tmp_path):
    model = fresh_model(name).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, {"data": "test frames", "metrics": {"psnr": 30.5}})
    loaded, metadata = load_checkpoint(path, expected_architecture=name)
    assert type(loaded).__name__ == name and not loaded.training
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    x = frames_to_tensor(frames[:4])
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), model.encode(x))
    assert metadata["metrics"] == {"psnr": 30.5}
    assert metadata["package_version"] == gym_autoencoder.__version__


def test_save_leaves_no_temporary_files(tmp_path):
    save_checkpoint(tmp_path / "a.pt", fresh_model("Conv_Maxpool"))
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_truncated_file(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, fresh_model("Conv_Maxpool"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="corrupt or truncated|not a gym_autoencoder"):
        load_checkpoint(path)


def test_plain_state_dict_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "state.pt"
    torch.save(fresh_model("Conv_Maxpool").state_dict(), path)
    with pytest.raises(CheckpointError, match="not a gym_autoencoder checkpoint"):
        load_checkpoint(path)


class Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_code_is_refused_not_run(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "gym_autoencoder.checkpoint", "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="not a gym_autoencoder checkpoint"):
        load_checkpoint(path)
    assert "code ran" not in capsys.readouterr().out


def test_checkpoint_of_another_architecture(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, fresh_model("Conv_Maxpool"))
    with pytest.raises(CheckpointError, match="holds a Conv_Maxpool model, expected Conv_Unpool"):
        load_checkpoint(path, expected_architecture="Conv_Unpool")


def test_weights_that_do_not_fit(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, fresh_model("Conv_Maxpool"))
    payload = torch.load(path, weights_only=True)
    payload["architecture"] = "Conv_Maxpool_Big"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not fit Conv_Maxpool_Big"):
        load_checkpoint(path)


def test_load_model_from_a_path_encodes_and_reconstructs_numpy_frames(frames, tmp_path):
    model = fresh_model("VAE_Paper").eval()
    path = tmp_path / "vae.pt"
    save_checkpoint(path, model)
    loaded = load_model(path)
    assert not loaded.training and loaded.encoding_shape == (22,)
    encoding = loaded.encode(frames)
    assert encoding.dtype == np.float32 and encoding.shape == (len(frames), 22)
    with torch.no_grad():
        expected = model.encode(frames_to_tensor(frames)).numpy()
    np.testing.assert_allclose(encoding, expected, atol=1e-5)
    recon = loaded.reconstruct(frames[:3])
    assert recon.dtype == np.uint8 and recon.shape == (3, 64, 64, 3)


def test_unknown_shipped_name():
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_model("conv-unpool-typo")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_load_model_on_an_absent_gpu_is_a_clear_error(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, fresh_model("Conv_Maxpool"))
    with pytest.raises(DeviceError, match="CUDA is not available"):
        load_model(path, device="cuda")
