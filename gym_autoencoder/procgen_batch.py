"""``ProcgenBatch``: N games in one native ``ProcgenGym3Env``, acted on and observed together.

The environments (``envs.encoded_procgen``) and the data generators (``data_generation.procgen_rollout``)
both play Procgen through this class. Procgen moves a game to its next level by itself when its
episode ends; ``Observation`` reports, per game, the level now played and the one that ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gym_autoencoder.procgen_games import MAX_SEED, ProcgenOptionError, ProcgenOptions, check_count, import_procgen
from gym_autoencoder.procgen_state import read_state_header

PROCGEN_THREADS = 4  # Procgen's own default for stepping its games in parallel
MAX_GAMES = 1 << 20  # far more games than memory holds (each needs about 1 MB); beyond, Procgen fails
MAX_THREADS = 1024


@dataclass
class Observation:
    """What all N games show after the last act; on ``first`` rows a new episode has begun."""

    rewards: np.ndarray  # float32 (N,) of the last step
    frames: np.ndarray  # uint8 (N, 64, 64, 3) RGB
    first: np.ndarray  # bool (N,): the last step ended the game's episode and began a new level
    level_seeds: np.ndarray  # int64 (N,) of the levels now played
    prev_level_seeds: np.ndarray  # int64 (N,) of the levels whose episodes ended (rows with ``first``)
    prev_level_complete: np.ndarray  # bool (N,): the ended episode completed its level


class ProcgenBatch:
    """``num`` games of ``options`` whose sequence of levels is fixed by ``rand_seed``.

    Every value is checked first (``ProcgenOptionError``): Procgen aborts the process on a game
    and distribution mode it lacks or a value of the wrong type. ``env`` is the native ``ProcgenGym3Env``.
    """

    def __init__(
        self, options: ProcgenOptions, num: int, rand_seed: int, num_threads: int = PROCGEN_THREADS
    ) -> None:
        options.check(ProcgenOptionError)
        num = check_count("the number of games", num, 1, MAX_GAMES, ProcgenOptionError)
        rand_seed = check_count("rand_seed", rand_seed, 0, MAX_SEED, ProcgenOptionError)
        num_threads = check_count("num_threads", num_threads, 0, MAX_THREADS, ProcgenOptionError)
        levels = (
            {} if options.distribution_mode == "exploration"
            else {"start_level": options.start_level, "num_levels": options.num_levels}
        )
        self.env: Any = import_procgen().ProcgenGym3Env(
            num=num, env_name=options.game, distribution_mode=options.distribution_mode,
            use_backgrounds=options.use_backgrounds, rand_seed=rand_seed, num_threads=num_threads,
            **levels,
        )
        self.num = num

    def act(self, actions: np.ndarray) -> None:
        """Step every game with its action: (N,) ints below NUM_ACTIONS, or FORCE_NEW_EPISODE."""
        self.env.act(np.asarray(actions, dtype=np.int32))

    def observe(self) -> Observation:
        """The frames, rewards and levels of all games now."""
        rewards, observation, first = self.env.observe()
        infos = self.env.get_info()
        return Observation(
            rewards=rewards,
            frames=observation["rgb"],
            first=first.astype(bool),
            level_seeds=_column(infos, "level_seed", np.int64),
            prev_level_seeds=_column(infos, "prev_level_seed", np.int64),
            prev_level_complete=_column(infos, "prev_level_complete", bool),
        )

    def level_seeds(self) -> np.ndarray:
        """int64 (N,): the level each game plays now."""
        return _column(self.env.get_info(), "level_seed", np.int64)

    def states(self) -> list[bytes]:
        """Every game's emulator state (``procgen_state`` reads them)."""
        return self.env.get_state()

    def set_states(self, states: list[bytes]) -> None:
        """Continue every game from its state in ``states``."""
        self.env.set_state(states)

    def render_state(self, index: int, state: bytes) -> np.ndarray:
        """The frame ``state`` shows, drawn by game ``index`` (which then continues from ``state``)."""
        self.env.call_c_func("set_state", index, state, len(state))
        return self.env.observe()[1]["rgb"][index]

    def time_limit(self) -> int:
        """The steps after which the games' episodes end, read from game 0's state."""
        return read_state_header(self.env.get_state()[0]).time_limit

    def close(self) -> None:
        self.env.close()


def _column(infos: list[dict[str, Any]], key: str, dtype: type) -> np.ndarray:
    return np.array([info[key] for info in infos], dtype=dtype)
