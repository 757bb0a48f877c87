"""Training settings: a run's recipe as dataclasses, built from the shipped YAML, a user's file
over it and command-line flags over both.

Each field declares its type and its check; ``training_hyperparameters.yaml`` next to this file
holds every value (and says what each does), so a key it does not hold is an error. A run's
*recipe* is the result for one architecture; checkpoints store it as a plain dict
(:meth:`Recipe.to_dict`), read back with :func:`stored_recipe`.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_origin, get_type_hints

import yaml

from gym_autoencoder.autoencoder import resolve_device
from gym_autoencoder.errors import DeviceError, GymAutoencoderError
from gym_autoencoder.model_stubs import MODEL_NAMES
from gym_autoencoder.model_stubs.base import LOSS_REDUCTIONS
from gym_autoencoder.training.acceleration import MEMORY_FORMATS, PLACEMENTS, PRECISIONS

DEFAULT_CONFIG_PATH = Path(__file__).with_name("training_hyperparameters.yaml")
LR_SCHEDULES = ("constant", "cosine", "plateau")
# Settings a resumed run may change; any other difference would silently change the recipe.
RESUMABLE_CHANGES = frozenset(
    {"epochs", "early_stopping_patience", "learning_rate", "device", "threads", "log_interval",
     "eval_batch_size", "evaluation", "time_budget", "precision", "memory_format", "data_placement"}
)

MAX_SEED = 2**63 - 1  # seeds go to torch.manual_seed and numpy as 64-bit integers
MAX_THREADS = 1024  # torch starts this many threads; far more crash the process

# Settings added after runs were first stored, with the value those older runs trained under.
ADDED_SETTINGS = {
    "loss_reduction": "mean", "init_from": "", "object_class_balance": False, "visibility_weight": 0.0,
    "state_weight": 0.0, "time_budget": 0.0, "precision": "float32", "memory_format": "contiguous",
    "data_placement": "memory_map",
}


class ConfigError(GymAutoencoderError, ValueError):
    """A configuration file or command-line setting is unknown or has a bad value."""


def _setting(check: Callable[[Any], bool] | None = None, meaning: str = "",
            convert: Callable[[Any], Any] | None = None) -> Any:
    """A field whose value, once of the field's type, goes through ``convert`` and must pass
    ``check`` (``meaning`` says what that asks for, in the error)."""
    return field(metadata={"check": check, "meaning": meaning, "convert": convert})


def _positive(meaning: str = "a positive integer") -> Any:
    return _setting(lambda value: value > 0, meaning)


def _at_least(bound: float, meaning: str) -> Any:
    return _setting(lambda value: value >= bound, meaning)


def _from_to(low: int, high: int, meaning: str) -> Any:
    return _setting(lambda value: low <= value <= high, meaning)


def _between(low: float, high: float) -> Any:
    return _setting(lambda value: low < value < high, f"a number between {low} and {high}")


def _one_of(choices: tuple[str, ...]) -> Any:
    return _setting(lambda value: value in choices, f"one of {', '.join(choices)}")


def _device(value: str) -> bool:
    try:
        resolve_device(value)
    except DeviceError:
        return False
    return True


DEVICE_CHOICES = "auto, cpu, or cuda / cuda:N on a machine with CUDA"


def check_device(value: Any, name: str = "device") -> str:
    """``value`` if torch can run on that device here, else one ``ConfigError`` line."""
    return _checked(name, str, value, {"check": _device, "meaning": DEVICE_CHOICES})


def _absolute(path: str) -> str:
    """Relative paths are taken from the working directory."""
    return str(Path(path).expanduser().resolve())


def _checked(name: str, kind: Any, value: Any, metadata: Mapping[str, Any]) -> Any:
    """``value`` of setting ``name`` coerced to type ``kind``, converted and checked."""
    if kind is float and isinstance(value, str):
        with contextlib.suppress(ValueError):  # YAML reads 1e-4 (no dot) as text: the number meant
            value = float(value)
    expected = get_origin(kind) or kind
    if not isinstance(value, (int, float) if kind is float else expected) or (
        isinstance(value, bool) != (kind is bool)
    ):
        raise ConfigError(f"{name} must be {expected.__name__}, got {value!r}")
    value = expected(value)
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if metadata.get("convert"):
        value = metadata["convert"](value)
    if metadata.get("check") and not metadata["check"](value):
        raise ConfigError(f"{name} must be {metadata['meaning']}, got {value!r}")
    return value


class Settings:
    """A group of settings: built from a mapping with every value checked, stored as a plain dict."""

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], prefix: str = "", checked: bool = True) -> Any:
        """The settings of ``values`` (one key per field; others are ignored), each coerced to its
        field's type and checked unless ``checked`` is false. ``prefix`` names them in errors."""
        built = {}
        hints = get_type_hints(cls)
        for item in fields(cls):
            kind, value = hints[item.name], values[item.name]
            if is_dataclass(kind):
                built[item.name] = kind.from_dict(value, f"{prefix}{item.name}.", checked)
            else:
                built[item.name] = (
                    _checked(prefix + item.name, kind, value, item.metadata) if checked else value
                )
        return cls(**built)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain data, as checkpoints store them."""
        return asdict(self)


@dataclass(frozen=True)
class GenerateSettings(Settings):
    """What --generate-data writes into data_dir when its files are missing (the balanced generator)."""

    num_samples: int = _at_least(2, "an integer >= 2")
    test_fraction: float = _between(0, 1)
    random_actions: int = _at_least(0, "an integer >= 0")
    distribution_mode: str


@dataclass(frozen=True)
class EvaluationSettings(Settings):
    """The evaluation after training (and of ``training/evaluate.py RUN_DIR``)."""

    video_frames: int = _positive()
    video_fps: int = _positive()
    video_scale: int = _positive()
    timing_repeats: int = _positive()
    timing_warmup: int = _at_least(0, "an integer >= 0")
    vae_samples: int = _positive()
    latent_walk_steps: int = _at_least(2, "an integer >= 2")


@dataclass(frozen=True)
class Recipe(Settings):
    """Everything a run of one architecture trains under; training_hyperparameters.yaml says what
    each setting does. ``arch`` (constructor arguments) and ``model`` come from the models section
    and the architecture chosen."""

    data_dir: str = _setting(convert=_absolute)
    save_dir: str = _setting(convert=_absolute)
    seed: int = _from_to(0, MAX_SEED, f"an integer from 0 to {MAX_SEED}")
    device: str = _setting(_device, DEVICE_CHOICES)
    threads: int = _from_to(0, MAX_THREADS, f"an integer from 0 to {MAX_THREADS} (0 = PyTorch's default)")
    precision: str = _one_of(PRECISIONS)
    memory_format: str = _one_of(MEMORY_FORMATS)
    data_placement: str = _one_of(PLACEMENTS)
    batch_size: int = _positive()
    epochs: int = _positive()
    time_budget: float = _at_least(0, "a number of minutes >= 0 (0 = no budget)")
    learning_rate: float = _at_least(0, "a number >= 0")
    weight_decay: float = _at_least(0, "a number >= 0")
    lr_schedule: str = _one_of(LR_SCHEDULES)
    lr_plateau_patience: int = _positive()
    lr_plateau_factor: float = _between(0, 1)
    early_stopping_patience: int = _positive()
    log_interval: int = _positive()
    eval_batch_size: int = _positive()
    object_pixel_weight: float = _positive("a number > 0 (1 = plain MSE)")
    object_class_balance: bool
    visibility_weight: float = _at_least(0, "a number >= 0 (0 = no visibility head)")
    state_weight: float = _at_least(0, "a number >= 0 (0 = no state head)")
    loss_reduction: str = _one_of(LOSS_REDUCTIONS)
    init_from: str
    generate: GenerateSettings
    evaluation: EvaluationSettings
    arch: dict[str, Any] = _setting(
        lambda arch: all(math.isfinite(v) for v in arch.values() if isinstance(v, float)),
        "architecture arguments whose numbers are finite",
    )
    model: str


SECTIONS = tuple(name for name, kind in get_type_hints(Recipe).items() if is_dataclass(kind))


def flag_settings() -> list[tuple[tuple[str, ...], type]]:
    """Every single-valued setting a file or a flag sets, as (path, type), in the recipe's order:
    ``(("epochs",), int)``, ``(("generate", "num_samples"), int)``."""
    found = []
    for name, kind in get_type_hints(Recipe).items():
        if is_dataclass(kind):
            found += [((name, key), sub) for key, sub in get_type_hints(kind).items()]
        elif name not in ("arch", "model"):
            found.append(((name,), kind))
    return found


def stored_recipe(values: Mapping[str, Any], checked: bool = True) -> Recipe:
    """The recipe a checkpoint or training state stored, with the value of each setting added
    since (:data:`ADDED_SETTINGS`). ``checked=False`` takes it as stored, e.g. its device even
    where that is absent."""
    return Recipe.from_dict({**ADDED_SETTINGS, **values}, checked=checked)


def _unknown(key: str, where: str, known: list[str]) -> ConfigError:
    return ConfigError(f"unknown setting {key!r} in {where}; known settings: {', '.join(known)}")


def _mapping(value: Any, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping of settings, got {value!r}")
    return value


def _merge_models(base: dict, override: Any, source: str) -> dict:
    result, known = copy.deepcopy(base["models"]), [key for key in base if key not in (*SECTIONS, "models")]
    for name, entry in _mapping(override, f"models in {source}").items():
        if name not in MODEL_NAMES:
            raise _unknown(name, f"models in {source}", list(MODEL_NAMES))
        for key, value in _mapping(entry, f"models.{name} in {source}").items():
            if key == "arch":
                result[name]["arch"].update(_mapping(value, f"models.{name}.arch in {source}"))
            elif key in known:
                result[name][key] = value
            else:
                raise _unknown(key, f"models.{name} in {source}", ["arch", *known])
    return result


def merge_config(base: dict, override: Mapping, source: str) -> dict:
    """``base`` with the settings of ``override`` (read from ``source``) applied, every value
    checked in the recipe of each model."""
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
                result[key][sub] = sub_value
        else:
            result[key] = value
    for name in MODEL_NAMES:
        resolve_recipe(result, name)
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
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text (byte {err.start}); save it as UTF-8 YAML") from None
    except OSError as err:
        raise ConfigError(
            f"cannot read config file {path} ({err.strerror or err}); pass a readable YAML file"
        ) from None
    return dict(_mapping(data or {}, str(path)))


def default_config() -> dict:
    """The shipped hyperparameters."""
    return read_yaml(DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike | None = None) -> dict:
    """The shipped hyperparameters with those of the file at ``path`` (if any) applied."""
    config = default_config()
    return config if path is None else merge_config(config, read_yaml(path), str(path))


def _overlay(values: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with ``overrides`` over them, a section's settings one by one."""
    return {**values, **{key: {**values[key], **value} if key in SECTIONS else value
                         for key, value in overrides.items()}}


def resolve_recipe(
    config: dict, model_name: str, overrides: Mapping | None = None, arch: Mapping | None = None
) -> Recipe:
    """The recipe of ``model_name``: top-level settings, its ``models`` entry, then ``overrides``.

    ``overrides`` (command-line settings) win over the per-model entry; ``arch`` adds
    constructor arguments. ``data_dir`` and ``save_dir`` become absolute paths.
    """
    entry = config["models"][model_name]
    values = {key: value for key, value in config.items() if key != "models"}
    values.update({key: value for key, value in entry.items() if key != "arch"})
    values = _overlay(values, overrides or {})
    return Recipe.from_dict({**values, "arch": {**entry["arch"], **(arch or {})}, "model": model_name})


def apply_resume_overrides(stored: Mapping, overrides: Mapping, arch: Mapping | None = None) -> Recipe:
    """The stored recipe of a run with the command-line ``overrides`` a resumed run may change."""
    old = {**ADDED_SETTINGS, **stored}
    recipe = Recipe.from_dict(_overlay(old, overrides))
    new = recipe.to_dict()
    changed = [f"{key} (stored {old[key]!r}, given {new[key]!r})" for key in overrides
               if new[key] != old[key] and key not in RESUMABLE_CHANGES]
    if arch and {**old["arch"], **arch} != old["arch"]:
        changed.append(f"arch (stored {old['arch']!r})")
    if changed:
        raise ConfigError(
            f"a resumed run keeps its recipe, but {'; '.join(changed)} differ; drop those flags "
            f"or start a new run with --name (resumable changes: {', '.join(sorted(RESUMABLE_CHANGES))})"
        )
    return recipe
