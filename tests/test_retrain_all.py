"""training/retrain_all.py end to end at tiny size: generate, train the six, evaluate, compare, ship."""

from __future__ import annotations

import pytest
import yaml

from gym_autoencoder import load_model
from gym_autoencoder.checkpoint import read_checkpoint
from gym_autoencoder.model_stubs import MODEL_NAMES
from gym_autoencoder.training.retrain_all import main
from tests.helpers import RUN_EVALUATION


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"batch_size": 16, "log_interval": 1000, "evaluation": RUN_EVALUATION}))
    return path


@pytest.mark.slow
def test_the_command_generates_trains_the_six_and_ships_them_with_a_card(tmp_path, tiny_config, capsys):
    out, data = tmp_path / "shipped", tmp_path / "data"
    out.mkdir()
    # 0.03 minutes in all: each run stops after the epoch past its share (0.3 s), evaluated
    assert main(["--time-budget", "0.03", "--num-samples", "96", "--data-dir", str(data),
                 "--save-dir", str(tmp_path / "runs"), "--out", str(out), "--config", str(tiny_config),
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "generating 96 frames" in printed and "training 6 models, 1 at a time" in printed
    assert (data / "training_samples.npy").is_file()
    for name in MODEL_NAMES:
        model = load_model(out / f"{name.lower()}.pt", device="cpu")
        assert model.architecture == name
        metadata = read_checkpoint(out / f"{name.lower()}.pt")["metadata"]
        assert metadata["recipe"]["time_budget"] == pytest.approx(0.005) and "metrics" in metadata
        assert (out / f"{name.lower()}_recon_grid.png").is_file()
    card = (out / "README.md").read_text()
    assert all(name in card for name in MODEL_NAMES)

    # a second round continues the shipped weights and ships only what beats them
    before = (out / "conv_maxpool.pt").read_bytes()
    assert main(["--time-budget", "0.005", "--data-dir", str(data), "--save-dir", str(tmp_path / "again"),
                 "--out", str(out), "--config", str(tiny_config), "--device", "cpu",
                 "--models", "Conv_Maxpool"]) == 0
    printed = capsys.readouterr().out
    lineage = read_checkpoint(tmp_path / "again" / "Conv_Maxpool" / "Conv_Maxpool.pt")["metadata"]
    assert lineage["initialised_from"]["checkpoint"] == str((out / "conv_maxpool.pt").resolve())
    comparison = next(line for line in printed.splitlines() if line.startswith("Conv_Maxpool "))
    assert "shipped" in comparison and ("not better" in comparison) == (
        (out / "conv_maxpool.pt").read_bytes() == before)


def test_bad_arguments_give_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_sise: 16\n")
    assert main(["--time-budget", "1", "--config", str(bad), "--save-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "unknown setting 'batch_sise'" in error
    assert main(["--time-budget", "0", "--save-dir", str(tmp_path)]) == 2
    assert "--time-budget must be a positive number of minutes" in capsys.readouterr().err
