"""One native Procgen instance of N games whose frames are encoded in one batch per step.

Both environments sit on this: the scalar one with N = 1, the vectorised one with N = num_envs.
Procgen resets a game by itself when its episode ends: the frame it returns on that step is
already the first frame of the next level, and the last frame of the ended episode is never
rendered. ``StepBatch`` therefore carries the frames and encodings from before the step too,
the last ones the ended episodes showed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from gym_autoencoder.autoencoder import FrameAutoencoder
from gym_autoencoder.envs.errors import EnvOptionError
from gym_autoencoder.errors import GymAutoencoderError
from gym_autoencoder.procgen_import import import_procgen

NUM_ACTIONS = 15
FORCE_NEW_EPISODE = -1  # Procgen steps with its default action, then ends the episode
MAX_RAND_SEED = 2**31 - 1
# Procgen aborts the whole process (C++ fassert) on these combinations, so they are checked here.
MODE_GAMES = {
    "memory": ("caveflyer", "dodgeball", "heist", "jumper", "maze", "miner"),
    "extreme": ("chaser", "dodgeball", "leaper", "starpilot"),
}
STATE_END_MARKER = struct.pack("<I", 0xCAFECAFE)


@dataclass(frozen=True)
class ProcgenOptions:
    """The Procgen game and level distribution an environment plays."""

    game: str = "heist"
    distribution_mode: str = "memory"
    use_backgrounds: bool = False
    start_level: int = 0
    num_levels: int = 0

    def __post_init__(self) -> None:
        procgen = import_procgen()
        if self.game not in procgen.env.ENV_NAMES:
            raise EnvOptionError(
                f"unknown Procgen game {self.game!r}; choose one of {', '.join(procgen.env.ENV_NAMES)}"
            )
        modes = procgen.env.DISTRIBUTION_MODE_DICT
        if self.distribution_mode not in modes:
            raise EnvOptionError(
                f"unknown distribution_mode {self.distribution_mode!r}; choose one of {', '.join(modes)}"
            )
        supported = MODE_GAMES.get(self.distribution_mode) or (
            tuple(procgen.env.EXPLORATION_LEVEL_SEEDS)
            if self.distribution_mode == "exploration" else None
        )
        if supported is not None and self.game not in supported:
            raise EnvOptionError(
                f"{self.game} has no {self.distribution_mode!r} mode; use it with one of "
                f"{', '.join(supported)}, or pick distribution_mode 'easy' or 'hard'"
            )
        if self.start_level < 0 or self.num_levels < 0:
            raise EnvOptionError(
                f"start_level and num_levels must be >= 0, got {self.start_level} and {self.num_levels}; "
                "num_levels=0 means unlimited levels"
            )
        if self.distribution_mode == "exploration" and (self.start_level, self.num_levels) != (0, 0):
            raise EnvOptionError(
                "exploration mode fixes its own level; leave start_level and num_levels at 0"
            )

    def make(self, num: int, rand_seed: int, num_threads: int) -> Any:
        """A ``ProcgenGym3Env`` of ``num`` games whose level sequence is fixed by ``rand_seed``."""
        levels = (
            {} if self.distribution_mode == "exploration"
            else {"start_level": self.start_level, "num_levels": self.num_levels}
        )
        return import_procgen().ProcgenGym3Env(
            num=num, env_name=self.game, distribution_mode=self.distribution_mode,
            use_backgrounds=self.use_backgrounds, rand_seed=rand_seed, num_threads=num_threads,
            **levels,
        )


def procgen_rand_seed(np_random: np.random.Generator) -> int:
    """The Procgen ``rand_seed`` an environment draws from its Gymnasium generator on a seeded reset."""
    return int(np_random.integers(0, MAX_RAND_SEED))


def _skip_string(state: bytes, offset: int) -> int:
    (length,) = struct.unpack_from("<i", state, offset)
    return offset + 4 + length


def read_time_limit(state: bytes) -> int:
    """The episode time limit stored in a Procgen game state (see /work/shared/heist_state.md)."""
    if state[-4:] != STATE_END_MARKER or struct.unpack_from("<i", state, 0)[0] != 0:
        raise GymAutoencoderError(
            "unsupported Procgen state format; install the procgen-mirror version in setup.py"
        )
    offset = _skip_string(state, 4)  # serialize version, game name
    offset += 17 * 4  # 12 options, grid_step, level seed bounds, game_type, game_n
    for _ in range(2):  # two random generators: is_seeded flag, text state
        offset = _skip_string(state, offset + 4)
    offset += 4 * 4  # reward, done, level_complete, action
    return struct.unpack_from("<i", state, offset)[0]


@dataclass
class StepBatch:
    """What one step of all N games produced; ``done`` rows have already moved to a new level."""

    frames: np.ndarray  # uint8 (N, 64, 64, 3) on screen now
    encodings: np.ndarray  # float32 (N, *encoding_shape) of ``frames``
    previous_frames: np.ndarray  # the frames before the step: the last ones an ended episode showed
    previous_encodings: np.ndarray
    rewards: np.ndarray  # float32 (N,)
    terminated: np.ndarray  # bool (N,): the episode ended before the time limit
    truncated: np.ndarray  # bool (N,): the episode ran into the game's time limit
    level_seeds: np.ndarray  # int64 (N,) of the levels now played
    ended_level_seeds: np.ndarray  # int64 (N,) of the levels whose episodes ended (rows with done)
    level_complete: np.ndarray  # bool (N,): the ended episode completed its level

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class EncodedProcgen:
    """N Procgen games stepped together; every step encodes all N frames in one batch."""

    def __init__(
        self, autoencoder: FrameAutoencoder, options: ProcgenOptions, num: int, num_threads: int
    ) -> None:
        self.autoencoder = autoencoder
        self.options = options
        self.num = num
        self.num_threads = num_threads
        self.env: Any = None
        self.time_limit = 0
        self.episode_steps = np.zeros(num, dtype=np.int64)
        self.frames = np.zeros((num, 64, 64, 3), dtype=np.uint8)
        self.encodings = np.zeros((num, *autoencoder.encoding_shape), dtype=np.float32)
        self.level_seeds = np.zeros(num, dtype=np.int64)

    @property
    def started(self) -> bool:
        return self.env is not None

    def begin_episodes(self, np_random: np.random.Generator, seeded: bool, at_first_frame: bool = False) -> None:
        """Begin an episode in every game: on a seeded (or the first) reset on a fresh instance
        seeded from ``np_random``, else on each game's next level, which the games already
        show when ``at_first_frame`` (Procgen moved on by itself when their episodes ended)."""
        if seeded or not self.started:
            self.reseed(procgen_rand_seed(np_random))
        elif not at_first_frame:
            self.new_episodes()

    def reseed(self, rand_seed: int) -> None:
        """Start over on a fresh Procgen instance whose levels follow from ``rand_seed``."""
        self.close()
        self.env = self.options.make(self.num, rand_seed, self.num_threads)
        self.time_limit = read_time_limit(self.env.get_state()[0])
        self._start_episodes()

    def new_episodes(self) -> None:
        """End every running episode and move each game to its next level."""
        self.env.act(np.full(self.num, FORCE_NEW_EPISODE, dtype=np.int32))
        self._start_episodes()

    def _start_episodes(self) -> None:
        self.episode_steps[:] = 0
        self._observe()

    def _observe(self) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
        rewards, obs, first = self.env.observe()
        infos = self.env.get_info()
        self.frames = obs["rgb"]
        self.encodings = self.autoencoder.encode(self.frames)
        self.level_seeds = np.array([info["level_seed"] for info in infos], dtype=np.int64)
        return rewards, first.astype(bool), infos

    def step(self, actions: np.ndarray) -> StepBatch:
        """Act with one valid action per game (int array of shape (N,)) and encode the new frames."""
        previous_frames, previous_encodings = self.frames, self.encodings
        self.env.act(actions.astype(np.int32))
        rewards, done, infos = self._observe()
        self.episode_steps += 1
        level_complete = done & np.array([info["prev_level_complete"] for info in infos], dtype=bool)
        truncated = done & ~level_complete & (self.episode_steps >= self.time_limit)
        self.episode_steps[done] = 0
        return StepBatch(
            frames=self.frames, encodings=self.encodings, previous_frames=previous_frames,
            previous_encodings=previous_encodings, rewards=rewards, terminated=done & ~truncated,
            truncated=truncated, level_seeds=self.level_seeds,
            ended_level_seeds=np.array([info["prev_level_seed"] for info in infos], dtype=np.int64),
            level_complete=level_complete,
        )

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the games are now (for pickling)."""
        return {"states": self.env.get_state(), "episode_steps": self.episode_steps.copy()}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Continue from ``snapshot`` on a fresh Procgen instance of the same options."""
        self.reseed(0)
        self.env.set_state(snapshot["states"])
        self._observe()
        self.episode_steps = snapshot["episode_steps"].copy()

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None
