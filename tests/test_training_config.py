"""training/config.py: the shipped YAML as schema, per-model settings, precedence, resumption."""

from pathlib import Path

import pytest

from gym_autoencoder.checkpoint import shipped_checkpoint_path
from gym_autoencoder.checkpoint import read_checkpoint
from gym_autoencoder.model_stubs import MODEL_NAMES
from gym_autoencoder.training.autoencoder_training import build, build_parser, command_line_settings, parse_arch
from gym_autoencoder.training.config import (
    ADDED_SETTINGS,
    ConfigError,
    apply_resume_overrides,
    default_config,
    flag_settings,
    load_config,
    merge_config,
    resolve_recipe,
    stored_recipe,
)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_shipped_recipe_of_every_model_builds_on_this_machine(name):
    recipe = resolve_recipe(default_config(), name)
    model = build(name, recipe)
    assert type(model).__name__ == name and model.config == {**model.config, **recipe.arch}


def test_every_setting_has_a_flag_and_the_shipped_file_holds_every_setting():
    defaults = default_config()
    argv = []
    for path, _ in flag_settings():
        value = defaults[path[0]] if len(path) == 1 else defaults[path[0]][path[1]]
        argv += ["--" + "-".join(path).replace("_", "-"), str(value)]
    given = command_line_settings(build_parser(defaults).parse_args(argv))
    assert given == {key: value for key, value in defaults.items() if key != "models"}


def test_a_recipe_is_stored_as_plain_data_and_read_back_as_the_shipped_checkpoints_hold_it():
    recipe = resolve_recipe(default_config(), "VAE_Alex")
    assert stored_recipe(recipe.to_dict()) == recipe and recipe.generate.num_samples == 50000
    for name in MODEL_NAMES:
        stored = read_checkpoint(shipped_checkpoint_path(name))["metadata"]["recipe"]
        assert stored_recipe(stored).to_dict() == {**ADDED_SETTINGS, **stored}


def test_per_model_settings_apply_to_that_model_and_the_command_line_wins(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("learning_rate: 3e-4\nmodels:\n  VAE_Paper:\n    learning_rate: 0.01\n"
                    "    arch: {kl_weight: 0.001}\n")
    config = load_config(path)
    # YAML reads "3e-4" as text; the config takes it as the number it means
    assert resolve_recipe(config, "Conv_Maxpool").learning_rate == 3e-4
    vae = resolve_recipe(config, "VAE_Paper")
    assert vae.learning_rate == 0.01 and vae.arch == {"kl_weight": 0.001, "recon_loss": "mse"}
    given = resolve_recipe(config, "VAE_Paper", {"learning_rate": 0.02, "evaluation": {"video_frames": 5}},
                           parse_arch(["recon_loss=l4"]))
    assert given.learning_rate == 0.02 and given.arch["recon_loss"] == "l4"
    assert given.evaluation.video_frames == 5 and given.evaluation.video_fps == 10


def test_relative_paths_are_taken_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = resolve_recipe(default_config(), "Conv_Unpool", {"data_dir": "here/data"})
    assert Path(recipe.data_dir) == tmp_path / "here" / "data"
    assert Path(recipe.save_dir) == tmp_path / "runs"


@pytest.mark.parametrize("override, message", [
    ({"batch_size": True}, "batch_size must be int"),
    ({"batch_size": 2.5}, "batch_size must be int"),
    ({"learning_rate": "fast"}, "learning_rate must be float"),
    ({"device": "tpu"}, "device must be auto, cpu, or cuda"),
    ({"evaluation": {"frames": 3}}, "unknown setting 'frames' in evaluation"),
    ({"models": {"Conv_Big": {}}}, "unknown setting 'Conv_Big' in models"),
    ({"generate": 5}, "generate in here must be a mapping"),
    ({"loss_reduction": "sum"}, "loss_reduction must be one of mean, frame_log"),
])
def test_bad_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        merge_config(default_config(), override, "here")


def test_a_resumed_run_may_change_its_schedule_length_but_not_its_recipe():
    stored = resolve_recipe(default_config(), "VAE_Paper").to_dict()
    same_batch = stored["batch_size"]
    resumed = apply_resume_overrides(stored, {"epochs": 500, "learning_rate": 1e-4, "batch_size": same_batch})
    assert resumed.epochs == 500 and resumed.learning_rate == 1e-4
    with pytest.raises(ConfigError, match="object_pixel_weight"):
        apply_resume_overrides(stored, {"object_pixel_weight": 10.0})
    with pytest.raises(ConfigError, match="arch"):
        apply_resume_overrides(stored, {}, {"kl_weight": 1.0})


def test_a_run_stored_before_a_setting_existed_resumes_with_the_value_it_trained_under():
    stored = resolve_recipe(default_config(), "Conv_Maxpool").to_dict()
    del stored["loss_reduction"], stored["init_from"]
    resumed = apply_resume_overrides(stored, {"loss_reduction": "mean"})
    assert resumed.loss_reduction == "mean" and resumed.init_from == ""
    with pytest.raises(ConfigError, match="loss_reduction"):
        apply_resume_overrides(stored, {"loss_reduction": "frame_log"})
