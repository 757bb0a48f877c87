"""training/ship_checkpoints.py: evaluated runs become shipped checkpoints with a model card."""

from pathlib import Path

import pytest

from gym_autoencoder import load_model
from tests.test_evaluate import FAST, untrained_run
from tests.test_training_data import copy_frames, write_dataset
from gym_autoencoder.training.evaluate import evaluate_run
from gym_autoencoder.training.ship_checkpoints import ShipError, epochs_text, lineage_text, main, rates_text, ship

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"), 24, 48)


@pytest.fixture(scope="module")
def evaluated_runs(data_dir, tmp_path_factory) -> list[Path]:
    runs = tmp_path_factory.mktemp("runs")
    dirs = [untrained_run(runs / name, name, data_dir) for name in ("VAE_Paper", "Conv_Unpool")]
    for run in dirs:
        evaluate_run(run, evaluation=FAST)
    return dirs


def test_shipping_copies_models_and_grids_and_writes_the_card(evaluated_runs, tmp_path):
    entries = ship(evaluated_runs, tmp_path)
    assert [e["architecture"] for e in entries] == ["Conv_Unpool", "VAE_Paper"]  # the registry's order
    assert {p.name for p in tmp_path.iterdir()} == {
        "conv_unpool.pt", "conv_unpool_recon_grid.png", "vae_paper.pt", "vae_paper_recon_grid.png", "README.md"}
    model = load_model(tmp_path / "conv_unpool.pt")
    card = (tmp_path / "README.md").read_text()
    psnr = model.metadata["metrics"]["test"]["psnr_db"]
    assert "| Conv_Unpool | `auto-unpool-v0` | 1152 | 43,011 |" in card
    assert f"PSNR {psnr:.2f} dB" in card and "PSNR with the latent zeroed" in card
    assert "## VAE_Paper (`vae-paper-v0`)" in card and "![VAE_Paper reconstructions](vae_paper_recon_grid.png)" in card
    assert "| PSNR >= 33 dB |" in card and "| **mean** |" in card


def test_untrained_models_are_reported_as_missing_the_bars(evaluated_runs, tmp_path, capsys):
    assert main([*map(str, evaluated_runs), "--out", str(tmp_path)]) == 0
    assert "PSNR >= 22 dB" in capsys.readouterr().out
    assert "| **no** |" in (tmp_path / "README.md").read_text()


def test_a_run_without_evaluation_is_refused(data_dir, tmp_path, capsys):
    run = untrained_run(tmp_path / "Conv_Maxpool", "Conv_Maxpool", data_dir)
    with pytest.raises(ShipError, match="python training/evaluate.py"):
        ship([run], tmp_path / "out")
    assert main([str(run), "--out", str(tmp_path / "out")]) == 1
    assert "has no evaluation metrics" in capsys.readouterr().err


def test_a_run_evaluated_without_labels_is_refused(data_dir, tmp_path):
    unlabelled = copy_frames(data_dir, tmp_path / "unlabelled")
    run = untrained_run(tmp_path / "Conv_Maxpool", "Conv_Maxpool", unlabelled)
    evaluate_run(run, evaluation=FAST)
    with pytest.raises(ShipError, match="without labels"):
        ship([run], tmp_path / "out")


def test_a_run_without_its_training_state_has_no_stop_reason_on_the_card(evaluated_runs, tmp_path):
    ship(evaluated_runs, tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert not (evaluated_runs[0] / "checkpoints" / "last.pt").exists()
    assert "stopped: not recorded (evaluated apart from its training state)." in card
    assert "stopped: None" not in card


def test_the_card_counts_the_epochs_behind_a_fine_tuned_model():
    lineage = {"epochs": 42, "psnr_db": 32.0, "recipe": {"learning_rate": 0.001, "lr_schedule": "cosine",
                                                         "object_pixel_weight": 10.0,
                                                         "object_class_balance": True}}
    assert epochs_text({"epochs_trained": 12, "initialised_from": lineage}) == "42 + 12"
    assert epochs_text({"epochs_trained": 12, "initialised_from": None}) == "12"
    text = lineage_text({"initialised_from": lineage})
    assert ("trained 42 epochs (PSNR 32.00 dB; lr 0.001 (cosine), object pixel weight 10.0 (class-balanced), "
            "loss reduction mean)") in text
    assert lineage_text({"initialised_from": None}) == ""
    unevaluated = lineage_text({"initialised_from": {**lineage, "psnr_db": None}})
    assert "trained 42 epochs (lr 0.001 (cosine)" in unevaluated


def test_the_card_states_the_learning_rates_a_run_used_not_only_its_last_recipe():
    recipe = {"learning_rate": 0.001, "lr_schedule": "cosine"}  # resumed with 0.001 after epochs at 2e-4
    assert rates_text(recipe, [2e-4, 1.5e-4, 5e-5]) == "lr 0.0002 down to 5e-05 (cosine)"
    assert rates_text({"learning_rate": 0.001, "lr_schedule": "constant"}, [1e-3, 1e-3]) == "lr 0.001 (constant)"
    assert rates_text(recipe, None) == "lr 0.001 (cosine)"
    lineage = {"epochs": 5, "psnr_db": None, "recipe": recipe, "learning_rates": [3e-4, 1e-4]}
    assert "trained 5 epochs (lr 0.0003 down to 0.0001 (cosine), object pixel weight" in lineage_text(
        {"initialised_from": lineage})
