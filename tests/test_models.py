import math

import pytest
import torch

from gym_autoencoder import frames_to_tensor
from gym_autoencoder.errors import UnknownModelError
from gym_autoencoder.model_stubs import MODEL_NAMES, build_model
from tests.helpers import fresh_model
from gym_autoencoder.training.metrics import psnr

ENCODING_SHAPES = {
    "Conv_Unpool": (32, 6, 6),
    "Conv_Maxpool": (32,),
    "Conv_Maxpool_Big": (32,),
    "Conv_No_Bottleneck": (128, 1, 1),
    "VAE_Paper": (22,),
    "VAE_Alex": (64,),
}




@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shapes_and_finite_loss_on_real_frames(name, frames):
    model = fresh_model(name).eval()
    x = frames_to_tensor(frames)
    with torch.no_grad():
        encoding = model.encode(x)
        output = model(x)
        losses = model.loss_function(x, output)
    assert model.encoding_shape == ENCODING_SHAPES[name]
    assert encoding.shape == (len(frames), *ENCODING_SHAPES[name])
    assert output["recon"].shape == x.shape
    assert torch.equal(output["encoding"], encoding)  # what training reads is what agents see
    assert all(math.isfinite(float(v)) for v in losses.values())


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.slow
def test_a_gradient_step_reduces_the_loss(name, frames):
    model = fresh_model(name).train()
    x = frames_to_tensor(frames[:16])
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same reparameterisation noise for both evaluations
        return model.loss_function(x, model(x))["loss"]

    before = loss()
    optimiser.zero_grad()
    before.backward()
    optimiser.step()
    with torch.no_grad():
        after = loss()
    assert float(after) < float(before.detach())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_reconstruct_is_deterministic_in_eval_mode(name, frames):
    model = fresh_model(name).eval()
    x = frames_to_tensor(frames[:4])
    with torch.no_grad():
        assert torch.equal(model.reconstruct(x), model.reconstruct(x))


def test_pixel_weights_change_the_loss(frames):
    model = fresh_model("Conv_Maxpool").eval()
    x = frames_to_tensor(frames[:4])
    with torch.no_grad():
        output = model(x)
        plain = model.loss_function(x, output)["loss"]
        weight = torch.ones(4, 1, 64, 64)
        assert torch.allclose(model.loss_function(x, output, weight)["loss"], plain)
        weight[:, :, :8] = 20.0
        assert not torch.allclose(model.loss_function(x, output, weight)["loss"], plain)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.slow
def test_the_frame_log_loss_is_finite_and_differentiable_for_every_model(name, frames):
    model = fresh_model(name).train()
    x = frames_to_tensor(frames[:4])
    loss = model.loss_function(x, model(x), torch.ones(4, 1, 64, 64), "frame_log")["loss"]
    loss.backward()
    assert math.isfinite(loss.item())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_the_frame_log_loss_is_the_negative_mean_psnr_up_to_a_constant(frames):
    model = fresh_model("Conv_Maxpool").eval()
    x = frames_to_tensor(frames[:8])
    with torch.no_grad():
        output = model(x)
        log_loss = model.loss_function(x, output, None, "frame_log")["loss"]
        weighted = model.loss_function(x, output, torch.full((8, 1, 64, 64), 3.0), "frame_log")["loss"]
        assert float(log_loss) == pytest.approx(-math.log(10) / 10 * float(psnr(x, output["recon"]).mean()),
                                                rel=1e-5)
        # a uniform weight leaves each frame's mean alone
        assert float(weighted) == pytest.approx(float(log_loss), rel=1e-6)
        # it is not the log of the batch's mean error: frames are averaged after the log
        assert float(log_loss) < math.log(float(model.loss_function(x, output)["loss"]))
        with pytest.raises(ValueError, match="reduction must be one of"):
            model.loss_function(x, output, None, "median")


def test_vaes_decode_from_latents_and_unpool_cannot():
    for name in ("VAE_Paper", "VAE_Alex", "Conv_Maxpool"):
        model = fresh_model(name).eval()
        z = torch.randn(2, *model.encoding_shape)
        assert model.decode(z).shape == (2, 3, 64, 64)
    with pytest.raises(NotImplementedError, match="cannot decode"):
        fresh_model("Conv_Unpool").decode(torch.zeros(1, 32, 6, 6))


def test_unknown_model_and_bad_arguments():
    with pytest.raises(UnknownModelError, match="choose one of: .*Conv_Unpool"):
        build_model("Conv_Unknown")
    with pytest.raises(UnknownModelError, match="bad arguments for Conv_Maxpool"):
        build_model("Conv_Maxpool", latent=3)
