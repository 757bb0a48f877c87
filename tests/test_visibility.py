"""The auxiliary visibility objective: its loss, its gradient into the encoder, its runs."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from gym_autoencoder import frames_to_tensor, load_checkpoint
from tests.helpers import copy_frames, fresh_model, training_args
from gym_autoencoder.training.autoencoder_training import main
from gym_autoencoder.training.config import default_config, resolve_recipe
from gym_autoencoder.training.data import DataError, open_dataset
from gym_autoencoder.training.loop import Objective, read_state
from gym_autoencoder.training.metrics import balanced_accuracy
from gym_autoencoder.training.ship_checkpoints import loss_text
from gym_autoencoder.training.visibility import VisibilityHead, head_accuracy, warm_start

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RECIPE = resolve_recipe(default_config(), "Conv_Maxpool")  # object pixel weight 1, mean loss, no head


def test_positives_weigh_by_their_class_s_rarity_and_the_loss_is_the_weighted_cross_entropy():
    visible = np.zeros((10, 7), np.float32)
    visible[:1, 0] = visible[:5, 1] = 1  # class 0: 1 of 10 visible, class 1: 5 of 10
    head = VisibilityHead((4,), visible, weight=0.5)
    assert head.pos_weight[:2].tolist() == [9.0, 1.0]
    logits = torch.zeros(10, 7)
    # at logit 0 each term is log 2, positives counted pos_weight times
    expected = 0.5 * np.log(2) * (9 * 1 + 9 + 1 * 5 + 5 + 5 * 10) / 70
    assert float(head.loss(logits, torch.as_tensor(visible))) == pytest.approx(expected, rel=1e-6)


def test_a_single_frame_is_standardised_by_the_running_statistics():
    head = VisibilityHead((3, 1, 1), np.eye(7, dtype=np.float32)[:4], weight=1.0).train()
    batch = torch.randn(8, 3, 1, 1)
    head(batch)  # updates the running statistics
    one = batch[:1]
    assert torch.allclose(head(one), head.eval()(one))


def test_the_head_s_accuracy_is_the_probe_s_balanced_accuracy_averaged_over_classes():
    rng = np.random.default_rng(0)
    visible = (rng.random((50, 7)) < 0.3).astype(np.float32)
    logits = torch.as_tensor(rng.normal(size=(50, 7)), dtype=torch.float32)
    expected = np.mean([balanced_accuracy(visible[:, k], logits[:, k].numpy() > 0) for k in range(7)])
    assert head_accuracy(logits, visible) == pytest.approx(expected)
    assert head_accuracy(torch.as_tensor(visible * 2 - 1), visible) == 1.0
    assert head_accuracy(torch.as_tensor(1 - visible * 2), visible) == 0.0


@pytest.mark.parametrize("name", ["Conv_Maxpool_Big", "VAE_Paper"])
def test_the_objective_adds_the_head_s_loss_and_its_gradient_reaches_the_encoder(name, data_dir):
    dataset = open_dataset(data_dir)
    model = fresh_model(name).eval()
    with_head = Objective.for_recipe(model, replace(RECIPE, visibility_weight=2.0), dataset)
    without = Objective.for_recipe(model, replace(RECIPE, visibility_weight=0.0), dataset)
    assert without.head is None and with_head.head is not None
    with_head.head.eval()
    rows = np.arange(16)
    x = dataset.train.batch(rows, torch.device("cpu"))
    total, logits = with_head.loss(model, dataset.train, x, rows, torch.device("cpu"))
    plain = without.loss(model, dataset.train, x, rows, torch.device("cpu"))[0]
    visible = torch.as_tensor(dataset.train.label("visible")[rows].astype(np.float32))
    assert torch.allclose(total, plain + with_head.head.loss(logits, visible))
    assert torch.allclose(logits, with_head.head(model.encode(x)))
    first_layer = next(model.parameters())
    (total - plain).backward()
    assert first_layer.grad is not None and first_layer.grad.abs().sum() > 0


def test_a_run_with_the_head_trains_it_records_its_accuracy_and_ships_the_plain_model(
    small_data_dir, fast_config, tmp_path
):
    common = ["--model", "Conv_Maxpool", "--visibility-weight", "0.5", "--epochs", "2", "--skip-evaluation",
              *training_args(small_data_dir, tmp_path, fast_config)]
    assert main([*common, "--name", "run"]) == 0
    assert main([*common, "--name", "still", "--lr", "0"]) == 0  # the same seed: the head's initial weights
    state = read_state(tmp_path / "run" / "checkpoints" / "last.pt")
    initial = read_state(tmp_path / "still" / "checkpoints" / "last.pt")["visibility_head"]
    accuracy = state["state"]["history"]["test_visibility_accuracy"]
    assert len(accuracy) == 2 and all(0 <= value <= 1 for value in accuracy)
    assert not torch.equal(state["visibility_head"]["linear.weight"], initial["linear.weight"])
    model, metadata = load_checkpoint(tmp_path / "run" / "run.pt")
    assert metadata["recipe"]["visibility_weight"] == 0.5
    assert model.encode(frames_to_tensor(np.zeros((1, 64, 64, 3), np.uint8))).shape == (1, 32)


def test_the_warm_start_fits_the_head_to_the_frozen_encoding(data_dir):
    train = open_dataset(data_dir).train
    model = fresh_model("Conv_Maxpool_Big")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    visible = train.label("visible").astype(np.float32)
    head = VisibilityHead(model.encoding_shape, visible, weight=1.0)
    with torch.no_grad():
        encodings = model.eval().encode(train.batch(slice(None), torch.device("cpu")))
        untrained = float(head.loss(head.train()(encodings), torch.as_tensor(visible)))
    fitted = warm_start(head, model, train, visible, torch.device("cpu"), frames=200)
    assert fitted < 0.9 * untrained
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not head.training


def test_a_run_from_trained_weights_starts_with_a_fitted_head(small_data_dir, fast_config, tmp_path, capsys):
    common = ["--model", "Conv_Maxpool", "--epochs", "1", "--skip-evaluation", "--visibility-weight", "1",
              *training_args(small_data_dir, tmp_path, fast_config)]
    assert main([*common, "--name", "base"]) == 0
    assert "visibility head fitted" not in capsys.readouterr().out
    assert main([*common, "--name", "tuned", "--init-from", str(tmp_path / "base" / "base.pt")]) == 0
    assert "tuned: visibility head fitted to the initial encoding" in capsys.readouterr().out


def test_the_head_changes_what_the_encoder_learns(small_data_dir, fast_config, tmp_path):
    common = ["--model", "Conv_Maxpool", "--epochs", "1", "--skip-evaluation",
              *training_args(small_data_dir, tmp_path, fast_config)]
    assert main([*common, "--name", "plain"]) == 0
    assert main([*common, "--name", "head", "--visibility-weight", "1"]) == 0
    plain = load_checkpoint(tmp_path / "plain" / "plain.pt")[0].state_dict()
    head = load_checkpoint(tmp_path / "head" / "head.pt")[0].state_dict()
    assert not torch.equal(plain["encoder.0.weight"], head["encoder.0.weight"])


def test_the_head_without_visibility_labels_says_what_is_missing(small_data_dir, fast_config, tmp_path, capsys):
    unlabelled = copy_frames(small_data_dir, tmp_path / "unlabelled")
    assert main(["--model", "Conv_Maxpool", "--epochs", "1", "--visibility-weight", "1",
                 *training_args(unlabelled, tmp_path, fast_config)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "visibility_weight 1.0 needs visible labels for training frames" in error
    assert "set visibility_weight: 0" in error
    with pytest.raises(DataError):
        Objective.for_recipe(fresh_model("Conv_Maxpool"), replace(RECIPE, visibility_weight=1.0),
                             open_dataset(unlabelled))


def test_a_negative_weight_is_refused(small_data_dir, fast_config, tmp_path, capsys):
    assert main(["--model", "Conv_Maxpool", "--visibility-weight", "-1",
                 *training_args(small_data_dir, tmp_path, fast_config)]) == 2
    assert "visibility_weight must be a number >= 0" in capsys.readouterr().err


def test_the_card_states_the_head_s_weight():
    recipe = {"object_pixel_weight": 20.0, "object_class_balance": True, "loss_reduction": "mean"}
    assert loss_text(recipe) == "object pixel weight 20.0 (class-balanced), loss reduction mean"
    assert loss_text({**recipe, "visibility_weight": 0.05}).endswith(", visibility head weight 0.05")
