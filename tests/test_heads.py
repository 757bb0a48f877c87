"""The auxiliary heads (visibility, state): their labels, loss, gradient into the encoder, runs."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from gym_autoencoder import frames_to_tensor, load_checkpoint
from tests.helpers import copy_frames, fresh_model, training_args
from gym_autoencoder.training.acceleration import StepSettings
from gym_autoencoder.training.autoencoder_training import main
from gym_autoencoder.training.config import default_config, resolve_recipe
from gym_autoencoder.training.data import DataError, Split, open_dataset
from gym_autoencoder.training.loop import Objective, read_state
from gym_autoencoder.training.metrics import balanced_accuracy
from gym_autoencoder.training.ship_checkpoints import loss_text
from gym_autoencoder.training.heads import LabelHead, head_accuracy, state_labels, warm_start

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RECIPE = resolve_recipe(default_config(), "Conv_Maxpool")  # object pixel weight 1, mean loss, no head


def test_positives_weigh_by_their_class_s_rarity_and_the_loss_is_the_weighted_cross_entropy():
    visible = np.zeros((10, 7), np.float32)
    visible[:1, 0] = visible[:5, 1] = 1  # class 0: 1 of 10 visible, class 1: 5 of 10
    head = LabelHead((4,), visible, weight=0.5)
    assert head.pos_weight[:2].tolist() == [9.0, 1.0]
    logits = torch.zeros(10, 7)
    # at logit 0 each term is log 2, positives counted pos_weight times
    expected = 0.5 * np.log(2) * (9 * 1 + 9 + 1 * 5 + 5 + 5 * 10) / 70
    assert float(head.loss(logits, torch.as_tensor(visible))) == pytest.approx(expected, rel=1e-6)


def test_a_single_frame_is_standardised_by_the_running_statistics():
    head = LabelHead((3, 1, 1), np.eye(7, dtype=np.float32)[:4], weight=1.0).train()
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
    steps = StepSettings.resolve(torch.device("cpu"))
    with_head = Objective.for_recipe(model, replace(RECIPE, visibility_weight=2.0), dataset, steps)
    without = Objective.for_recipe(model, replace(RECIPE, visibility_weight=0.0), dataset, steps)
    assert without.heads == {} and set(with_head.heads) == {"visibility"}
    head = with_head.heads["visibility"].eval()
    rows = np.arange(16)
    x = dataset.train.batch(rows, torch.device("cpu"))
    total, logits = with_head.loss(model, dataset.train, x, rows)
    plain = without.loss(model, dataset.train, x, rows)[0]
    visible = torch.as_tensor(dataset.train.label("visible")[rows].astype(np.float32))
    assert torch.allclose(total, plain + head.loss(logits, visible))
    assert torch.allclose(logits, head(model.encode(x)))
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
    head = LabelHead(model.encoding_shape, visible, weight=1.0)
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
                             open_dataset(unlabelled), StepSettings.resolve(torch.device("cpu")))


def test_a_negative_weight_is_refused(small_data_dir, fast_config, tmp_path, capsys):
    assert main(["--model", "Conv_Maxpool", "--visibility-weight", "-1",
                 *training_args(small_data_dir, tmp_path, fast_config)]) == 2
    assert "visibility_weight must be a number >= 0" in capsys.readouterr().err


def test_the_card_states_the_head_s_weight():
    recipe = {"object_pixel_weight": 20.0, "object_class_balance": True, "loss_reduction": "mean"}
    assert loss_text(recipe) == "object pixel weight 20.0 (class-balanced), loss reduction mean"
    assert loss_text({**recipe, "visibility_weight": 0.05}).endswith(", visibility head weight 0.05")
    assert loss_text({**recipe, "visibility_weight": 0.3, "state_weight": 1.0}).endswith(
        ", visibility head weight 0.3, state head weight 1.0")


def test_the_state_labels_map_walls_objects_and_held_keys_around_the_agent(tmp_path):
    walls = np.zeros((2, 9, 9), bool)
    walls[0, 0, :] = True  # the row north of the agent's view
    object_xy = np.full((2, 7, 2), np.nan, np.float32)
    object_xy[0, 0] = (12.3, 10.9)  # blue key: 2 cells east, 1 cell north of the agent's cell (10, 9)
    object_xy[0, 6] = (10.5, 5.5)  # gem: 4 cells south
    object_xy[1, 3] = (30.5, 9.5)  # blue lock, outside the 9 x 9 cells
    np.savez(tmp_path / "labels.npz", walls=walls, object_xy=object_xy,
             agent_xy=np.array([[10.6, 9.2], [10.6, 9.2]], np.float32),
             held_keys=np.array([[False, True, False], [False, False, False]]))
    split = Split("training", np.zeros((2, 64, 64, 3), np.uint8), tmp_path / "labels.npz")
    labels = state_labels(split, 1.0)
    assert labels.shape == (2, 81 + 7 * 81 + 3) and labels.dtype == np.float32
    assert np.array_equal(labels[:, :81].reshape(2, 9, 9), walls)
    maps = labels[:, 81:-3].reshape(2, 7, 9, 9)
    assert maps[0, 0, 4 - 1, 4 + 2] == 1 and maps[0, 6, 4 + 4, 4] == 1
    assert maps[0].sum() == 2 and maps[1].sum() == 0
    assert labels[:, -3:].tolist() == [[0, 1, 0], [0, 0, 0]]


def test_a_run_with_the_state_head_trains_it_resumes_it_and_ships_the_plain_model(small_data_dir, fast_config, tmp_path):
    common = ["--model", "Conv_Maxpool", "--skip-evaluation", "--state-weight", "0.5",
              *training_args(small_data_dir, tmp_path, fast_config)]
    assert main([*common, "--epochs", "1"]) == 0
    state = read_state(tmp_path / "Conv_Maxpool" / "checkpoints" / "last.pt")
    assert state["state_head"]["linear.weight"].shape == (81 + 7 * 81 + 3, 32) and state["visibility_head"] == {}
    assert main([*common, "--epochs", "2", "--resume"]) == 0
    model, metadata = load_checkpoint(tmp_path / "Conv_Maxpool" / "Conv_Maxpool.pt")
    assert metadata["recipe"]["state_weight"] == 0.5 and metadata["epoch"] in (1, 2)
    assert set(model.state_dict()) == set(fresh_model("Conv_Maxpool").state_dict())
