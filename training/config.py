"""Training hyperparameters: the shipped YAML, a user's file over it, command-line overrides last.

The shipped ``training_hyperparameters.yaml`` is the schema: a key it does not hold is an
error, and each value must have the type of the shipped one and pass the checks below.
A run's *recipe* is the flat result for one architecture, stored in its checkpoints.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from gym_autoencoder.errors import GymAutoencoderError
from gym_autoencoder.model_stubs import MODEL_NAMES
from gym_autoencoder.model_stubs.base import LOSS_REDUCTIONS

DEFAULT_CONFIG_PATH = Path(__file__).with_name("training_hyperparameters.yaml")
SECTIONS = ("generate", "evaluation")
LR_SCHEDULES = ("constant", "cosine", "plateau")
# Settings a resumed run may change; any other difference would silently change the recipe.
RESUMABLE_CHANGES = frozenset(
    {"epochs", "early_stopping_patience", "learning_rate", "device", "threads", "log_interval",
     "eval_batch_size", "evaluation"}
)

# Settings added after runs were first stored, with the value those older runs trained under.
ADDED_SETTINGS = {
    "loss_reduction": "mean", "init_from": "", "object_class_balance": False, "visibility_weight": 0.0,
}


class ConfigError(GymAutoencoderError, ValueError):
    """A configuration file or command-line setting is unknown or has a bad value."""


def _positive(value: Any) -> bool:
    return value > 0


def _non_negative(value: Any) -> bool:
    return value >= 0


def _device(value: str) -> bool:
    if value == "auto":
        return True
    try:
        device = torch.device(value)
    except RuntimeError:
        return False
    return device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_available())


CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "batch_size": (_positive, "a positive integer"),
    "epochs": (_positive, "a positive integer"),
    "learning_rate": (_non_negative, "a number >= 0"),
    "weight_decay": (_non_negative, "a number >= 0"),
    "lr_schedule": (lambda v: v in LR_SCHEDULES, f"one of {', '.join(LR_SCHEDULES)}"),
    "lr_plateau_patience": (_positive, "a positive integer"),
    "lr_plateau_factor": (lambda v: 0 < v < 1, "a number between 0 and 1"),
    "early_stopping_patience": (_positive, "a positive integer"),
    "log_interval": (_positive, "a positive integer"),
    "eval_batch_size": (_positive, "a positive integer"),
    "object_pixel_weight": (_positive, "a number > 0 (1 = plain MSE)"),
    "visibility_weight": (_non_negative, "a number >= 0 (0 = no visibility head)"),
    "loss_reduction": (lambda v: v in LOSS_REDUCTIONS, f"one of {', '.join(LOSS_REDUCTIONS)}"),
    "seed": (_non_negative, "an integer >= 0"),
    "threads": (_non_negative, "an integer >= 0 (0 = PyTorch's default)"),
    "device": (_device, "auto, cpu, or cuda / cuda:N on a machine with CUDA"),
    "generate.num_samples": (lambda v: v >= 2, "an integer >= 2"),
    "generate.test_fraction": (lambda v: 0 < v < 1, "a number between 0 and 1"),
    "generate.random_actions": (_non_negative, "an integer >= 0"),
    "evaluation.video_frames": (_positive, "a positive integer"),
    "evaluation.video_fps": (_positive, "a positive integer"),
    "evaluation.video_scale": (_positive, "a positive integer"),
    "evaluation.timing_repeats": (_positive, "a positive integer"),
    "evaluation.timing_warmup": (_non_negative, "an integer >= 0"),
    "evaluation.vae_samples": (_positive, "a positive integer"),
    "evaluation.latent_walk_steps": (lambda v: v >= 2, "an integer >= 2"),
}


def _float_or_text(text: str) -> float | str:
    """YAML reads ``1e-4`` (no dot) as text; take it as the number its writer meant."""
    try:
        return float(text)
    except ValueError:
        return text


def check_value(name: str, default: Any, value: Any) -> Any:
    """``value`` for setting ``name``, coerced to the type of ``default`` and checked."""
    expected = type(default)
    if expected is float and isinstance(value, str):
        value = _float_or_text(value)
    if isinstance(value, bool) != isinstance(default, bool):
        ok = False
    elif expected is float:
        ok = isinstance(value, (int, float))
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise ConfigError(f"{name} must be {expected.__name__} (like {default!r}), got {value!r}")
    value = expected(value)
    check = CHECKS.get(name)
    if check is not None and not check[0](value):
        raise ConfigError(f"{name} must be {check[1]}, got {value!r}")
    return value


def _unknown(key: str, where: str, known: list[str]) -> ConfigError:
    return ConfigError(f"unknown setting {key!r} in {where}; known settings: {', '.join(known)}")


def _mapping(value: Any, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping of settings, got {value!r}")
    return value


def scalar_keys(config: Mapping) -> list[str]:
    """The top-level settings that are single values (not sections)."""
    return [key for key, value in config.items() if not isinstance(value, Mapping)]


def _merge_models(base: dict, override: Any, source: str) -> dict:
    result = copy.deepcopy(base["models"])
    for name, entry in _mapping(override, f"models in {source}").items():
        if name not in MODEL_NAMES:
            raise _unknown(name, f"models in {source}", list(MODEL_NAMES))
        for key, value in _mapping(entry, f"models.{name} in {source}").items():
            if key == "arch":
                result[name]["arch"].update(_mapping(value, f"models.{name}.arch in {source}"))
            elif key in scalar_keys(base):
                result[name][key] = check_value(key, base[key], value)
            else:
                raise _unknown(key, f"models.{name} in {source}", ["arch", *scalar_keys(base)])
    return result


def merge_config(base: dict, override: Mapping, source: str) -> dict:
    """``base`` with the settings of ``override`` (read from ``source``) validated and applied."""
    result = copy.deepcopy(base)
    for key, value in _mapping(override, source).items():
        if key not in base:
            raise _unknown(key, source, list(base))
        if key == "models":
            result["models"] = _merge_models(base, value, source)
        elif key in SECTIONS:
            for sub, sub_value in _mapping(value, f"{key} in {source}").items():
                if sub not in base[key]:
                    raise _unknown(sub, f"{key} in {source}", list(base[key]))
                result[key][sub] = check_value(f"{key}.{sub}", base[key][sub], sub_value)
        else:
            result[key] = check_value(key, base[key], value)
    return result


def read_yaml(path: str | os.PathLike) -> dict:
    """The mapping in the YAML file at ``path``, or a clear error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}; pass the path of a YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML ({str(err).splitlines()[0]}); fix its syntax") from None
    return dict(_mapping(data or {}, str(path)))


def default_config() -> dict:
    """The shipped hyperparameters."""
    return read_yaml(DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike | None = None) -> dict:
    """The shipped hyperparameters with those of the file at ``path`` (if any) applied."""
    config = default_config()
    return config if path is None else merge_config(config, read_yaml(path), str(path))


def resolve_recipe(
    config: dict, model_name: str, overrides: Mapping | None = None, arch: Mapping | None = None
) -> dict:
    """The flat recipe of ``model_name``: top-level settings, its ``models`` entry, then ``overrides``.

    ``overrides`` (command-line settings, already validated) win over the per-model entry;
    ``arch`` adds constructor arguments. ``data_dir`` and ``save_dir`` become absolute paths.
    """
    entry = config["models"][model_name]
    recipe = {key: config[key] for key in scalar_keys(config)}
    recipe.update({key: value for key, value in entry.items() if key != "arch"})
    recipe.update({key: copy.deepcopy(config[key]) for key in SECTIONS})
    for key, value in (overrides or {}).items():
        recipe[key] = {**recipe[key], **value} if key in SECTIONS else value
    recipe["arch"] = {**entry["arch"], **(arch or {})}
    recipe["model"] = model_name
    for key in ("data_dir", "save_dir"):
        recipe[key] = str(Path(recipe[key]).expanduser().resolve())
    return recipe


def apply_resume_overrides(stored: dict, overrides: Mapping, arch: Mapping | None = None) -> dict:
    """The stored recipe of a run with the command-line ``overrides`` a resumed run may change."""
    recipe = {**ADDED_SETTINGS, **copy.deepcopy(stored)}
    changed = []
    for key, value in overrides.items():
        if key in ("data_dir", "save_dir"):
            value = str(Path(value).expanduser().resolve())
        new = {**recipe[key], **value} if key in SECTIONS else value
        if new == recipe[key]:
            continue
        if key not in RESUMABLE_CHANGES:
            changed.append(f"{key} (stored {recipe[key]!r}, given {new!r})")
        recipe[key] = new
    if arch and {**recipe["arch"], **arch} != recipe["arch"]:
        changed.append(f"arch (stored {recipe['arch']!r})")
    if changed:
        raise ConfigError(
            f"a resumed run keeps its recipe, but {'; '.join(changed)} differ; drop those flags "
            f"or start a new run with --name (resumable changes: {', '.join(sorted(RESUMABLE_CHANGES))})"
        )
    return recipe
