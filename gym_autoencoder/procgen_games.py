"""What this package knows about Procgen's games: actions, seeds, the distribution modes each game
implements, the checks on a game's options, and a quiet import of ``procgen``.

Procgen aborts the whole process (a C++ assertion, or ``fatal: invalid dtype`` for a float) on a
game/mode combination it lacks or a value of the wrong type or range, so every ``ProcgenGym3Env``
this package makes is made from values that passed ``ProcgenOptions.check`` and ``check_count``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from gym_autoencoder.errors import GymAutoencoderError

NUM_ACTIONS = 15  # Procgen's action space: 9 movement combinations (one of them none), 6 other keys
STAND_STILL = 4  # the empty button combination
FORCE_NEW_EPISODE = -1  # Procgen steps with its default action, then ends the episode and loads a new level
MAX_SEED = 2**31 - 1  # Procgen's rand_seed is an int32

# Distribution modes each game implements (procgen's README and env.py); others silently behave
# like "hard" or abort the process. "exploration" plays one fixed level per game.
GAME_MODES = {
    "bigfish": ("easy", "hard"),
    "bossfight": ("easy", "hard"),
    "caveflyer": ("easy", "hard", "memory", "exploration"),
    "chaser": ("easy", "hard", "extreme"),
    "climber": ("easy", "hard", "exploration"),
    "coinrun": ("easy", "hard", "exploration"),
    "dodgeball": ("easy", "hard", "extreme", "memory"),
    "fruitbot": ("easy", "hard"),
    "heist": ("easy", "hard", "memory", "exploration"),
    "jumper": ("easy", "hard", "memory", "exploration"),
    "leaper": ("easy", "hard", "extreme", "exploration"),
    "maze": ("easy", "hard", "memory", "exploration"),
    "miner": ("easy", "hard", "memory"),
    "ninja": ("easy", "hard", "exploration"),
    "plunder": ("easy", "hard"),
    "starpilot": ("easy", "hard", "extreme"),
}
DISTRIBUTION_MODES = ("easy", "hard", "extreme", "memory", "exploration")


class ProcgenOptionError(GymAutoencoderError, ValueError):
    """A value that Procgen cannot take (it would abort the process or fail an assertion)."""


def check_count(name: str, value: Any, low: int, high: int, error: type[Exception]) -> int:
    """``value`` as an int, or ``error`` unless it is an integer (not a bool) from ``low`` to ``high``:
    Procgen reads its options as 32-bit integers."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise error(f"{name} must be >= {low} and <= {high}, an integer, got {value!r}")
    return int(value)


def import_procgen() -> ModuleType:
    """The ``procgen`` module, imported without the notice about the unmaintained ``gym`` that it prints.

    procgen also leaves its version file open (a ResourceWarning, which Gymnasium's ``check_env``
    would report while the first environment imports it): ignored here too.
    """
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            import procgen
    return procgen


def check_game_mode(game: str, distribution_mode: str, error: type[Exception]) -> None:
    """Raise ``error`` (the caller's error class) unless ``game`` implements ``distribution_mode``."""
    if not isinstance(game, str) or game not in GAME_MODES:
        raise error(f"unknown Procgen game {game!r}; choose one of {', '.join(GAME_MODES)}")
    if not isinstance(distribution_mode, str) or distribution_mode not in DISTRIBUTION_MODES:
        raise error(
            f"unknown distribution_mode {distribution_mode!r}; choose one of {', '.join(DISTRIBUTION_MODES)}"
        )
    if distribution_mode not in GAME_MODES[game]:
        others = [name for name, modes in GAME_MODES.items() if distribution_mode in modes]
        raise error(
            f"{game} has no {distribution_mode!r} distribution mode; choose one of {', '.join(GAME_MODES[game])}, "
            f"or play {distribution_mode!r} with one of {', '.join(others)}"
        )


@dataclass(frozen=True)
class ProcgenOptions:
    """The Procgen game and level distribution a batch of games plays (num_levels=0: unlimited levels)."""

    game: str = "heist"
    distribution_mode: str = "memory"
    use_backgrounds: bool = False
    start_level: int = 0
    num_levels: int = 0

    def check(self, error: type[Exception]) -> None:
        """Raise ``error`` (the caller's error class), one line naming the fix, unless Procgen can play these."""
        check_game_mode(self.game, self.distribution_mode, error)
        if not isinstance(self.use_backgrounds, (bool, np.bool_)):
            raise error(f"use_backgrounds must be True or False, got {self.use_backgrounds!r}")
        check_count("start_level", self.start_level, 0, MAX_SEED, error)
        check_count("num_levels (0: unlimited levels)", self.num_levels, 0, MAX_SEED, error)
        if self.distribution_mode == "exploration" and (self.start_level, self.num_levels) != (0, 0):
            raise error("exploration mode fixes its own level; leave start_level and num_levels at 0")
