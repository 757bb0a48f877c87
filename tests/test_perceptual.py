import pytest
import torch

from gym_autoencoder.model_stubs import build_model
from gym_autoencoder.model_stubs.perceptual import (
    WEIGHTS_ENV_VAR,
    PerceptualFeaturesError,
    load_perceptual_features,
)


def test_imagenet_source_without_weights_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENV_VAR, str(tmp_path / "absent.pth"))
    with pytest.raises(PerceptualFeaturesError, match="perceptual_features: random"):
        load_perceptual_features("imagenet", download=False)


def test_imagenet_source_reads_torchvision_weight_files(tmp_path):
    torch.manual_seed(0)
    state = {
        "features.0.weight": torch.randn(64, 3, 11, 11),
        "features.0.bias": torch.randn(64),
        "features.3.weight": torch.randn(192, 64, 5, 5),
        "features.3.bias": torch.randn(192),
        "classifier.1.weight": torch.randn(4, 4),
    }
    path = tmp_path / "alexnet.pth"
    torch.save(state, path)
    features = load_perceptual_features("imagenet", weights_path=path)
    assert torch.equal(features.conv2.weight, state["features.3.weight"])
    assert features(torch.rand(2, 3, 64, 64)).shape == (2, 192, 7, 7)
    assert not any(p.requires_grad for p in features.parameters())


def test_broken_weight_file_fails_clearly(tmp_path):
    path = tmp_path / "alexnet.pth"
    torch.save({"something": torch.zeros(1)}, path)
    with pytest.raises(PerceptualFeaturesError, match="not a readable torchvision AlexNet"):
        load_perceptual_features("imagenet", weights_path=path)


def test_random_source_is_fixed():
    a, b = load_perceptual_features("random"), load_perceptual_features("random")
    assert torch.equal(a.conv1.weight, b.conv1.weight)


def test_unknown_source():
    with pytest.raises(PerceptualFeaturesError, match="unknown perceptual feature source"):
        load_perceptual_features("vgg")


def test_vae_alex_trains_after_its_features_were_first_loaded_in_inference_mode():
    # An evaluation's loss (a held-out loss before the first epoch) may be the first to load them.
    model = build_model("VAE_Alex", perceptual_features="random")
    x = torch.rand(4, 3, 64, 64)
    with torch.inference_mode():
        model.loss_function(x, model(x))
    loss = model.loss_function(x, model(x))["loss"]
    loss.backward()
    assert next(model.parameters()).grad is not None
