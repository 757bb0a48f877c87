"""How training steps run: data held on the device or memory-mapped, precision, layout, time budget."""

from __future__ import annotations

import pytest
import torch

from gym_autoencoder.training.acceleration import StepSettings
from gym_autoencoder.training.autoencoder_training import main
from gym_autoencoder.training.loop import read_state
from gym_autoencoder.checkpoint import read_checkpoint
from tests.helpers import training_args


def _trained(tmp_path, data_dir, config, name: str, *flags: str) -> dict:
    assert main(["--model", "Conv_Unpool", "--epochs", "1", "--skip-evaluation", "--name", name,
                 "--object-pixel-weight", "5", "--visibility-weight", "0.5",
                 *training_args(data_dir, tmp_path, config), *flags]) == 0
    return read_state(tmp_path / name / "checkpoints" / "last.pt")


def test_frames_held_on_the_device_train_exactly_as_memory_mapped_ones(small_data_dir, fast_config, tmp_path):
    held = _trained(tmp_path, small_data_dir, fast_config, "held", "--data-placement", "device")
    mapped = _trained(tmp_path, small_data_dir, fast_config, "mapped", "--data-placement", "memory_map")
    for part in ("model", "visibility_head"):
        for key, tensor in held[part].items():
            assert torch.equal(tensor, mapped[part][key]), (part, key)
    assert held["state"]["history"]["test_loss"] == mapped["state"]["history"]["test_loss"]
    recorded = read_checkpoint(tmp_path / "held" / "held.pt")["metadata"]["training"]
    assert recorded == {"device": "cpu", "precision": "float32", "memory_format": "channels_last", "data": "device"}
    assert read_checkpoint(tmp_path / "mapped" / "mapped.pt")["metadata"]["training"]["data"] == "memory_map"


def test_channels_last_and_bfloat16_steps_train_close_to_the_plain_ones(small_data_dir, fast_config, tmp_path):
    plain = _trained(tmp_path, small_data_dir, fast_config, "plain", "--memory-format", "contiguous")
    last = _trained(tmp_path, small_data_dir, fast_config, "last", "--memory-format", "channels_last")
    low = _trained(tmp_path, small_data_dir, fast_config, "low", "--precision", "bfloat16", "--memory-format",
                   "contiguous")
    # Adam moves each weight by up to about the learning rate (1e-3) a step whatever the gradient's
    # size, so after two steps rounding differences can show as up to 4e-3 in a weight; the losses
    # show the agreement
    for key, tensor in plain["model"].items():
        if tensor.is_floating_point():
            assert torch.allclose(tensor, last["model"][key], atol=5e-3), key
    assert low["model"][next(iter(low["model"]))].dtype == torch.float32  # weights stay float32
    for key in ("train_loss", "test_loss"):
        plain_loss, = plain["state"]["history"][key]
        assert last["state"]["history"][key][0] == pytest.approx(plain_loss, rel=1e-3)
        assert low["state"]["history"][key][0] == pytest.approx(plain_loss, rel=0.02)


def test_auto_settings_follow_the_device():
    cpu = StepSettings.resolve(torch.device("cpu"))
    assert (cpu.precision, cpu.memory_format) == ("float32", "channels_last")
    assert StepSettings.resolve(torch.device("cpu"), "bfloat16", "channels_last").layout == torch.channels_last


def test_a_time_budget_stops_within_an_epoch_of_it_and_the_run_resumes(data_dir, fast_config, tmp_path, capsys):
    budget = 0.04  # minutes: 2.4 s, a few epochs of 256 frames
    run = ["--model", "Conv_Maxpool", "--epochs", "1000", "--patience", "1000", "--lr-schedule", "cosine",
           "--skip-evaluation", "--threads", "1", *training_args(data_dir, tmp_path, fast_config)]
    assert main([*run, "--time-budget", str(budget)]) == 0
    assert "training stopped (time budget)" in capsys.readouterr().out
    state = read_state(tmp_path / "Conv_Maxpool" / "checkpoints" / "last.pt")["state"]
    seconds, rates = state["history"]["seconds"], state["history"]["lr"]
    assert state["train_seconds"] == pytest.approx(sum(seconds))
    assert 2 <= state["epoch"] < 1000
    # it stopped because one more epoch would have passed the budget, not before
    assert 60 * budget - max(seconds) <= state["train_seconds"] <= 60 * budget + 0.5 * max(seconds)
    # the cosine schedule spans the budget: from the full rate towards 0 at its end
    assert rates[0] == pytest.approx(1e-3) and all(b < a for a, b in zip(rates, rates[1:]))

    assert main([*run, "--time-budget", str(2 * budget), "--resume"]) == 0
    resumed = read_state(tmp_path / "Conv_Maxpool" / "checkpoints" / "last.pt")["state"]
    assert resumed["epoch"] > state["epoch"] and resumed["history"]["lr"][: state["epoch"]] == rates
    assert resumed["train_seconds"] <= 60 * 2 * budget + 0.5 * max(resumed["history"]["seconds"])
