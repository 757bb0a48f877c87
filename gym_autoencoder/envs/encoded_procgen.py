"""One native Procgen instance of N games whose frames are encoded in one batch per step.

Both environments sit on this: the scalar one with N = 1, the vectorised one with N = num_envs.
Procgen resets a game by itself when its episode ends: the frame it returns on that step is
already the first frame of the next level, and the last frame of the ended episode is never
rendered. ``StepBatch`` therefore carries the frames and encodings from before the step too,
the last ones the ended episodes showed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gym_autoencoder.autoencoder import FrameAutoencoder
from gym_autoencoder.envs.errors import EnvOptionError
from gym_autoencoder.procgen_batch import Observation, ProcgenBatch
from gym_autoencoder.procgen_games import FORCE_NEW_EPISODE, MAX_SEED, ProcgenOptions


def procgen_rand_seed(np_random: np.random.Generator) -> int:
    """The Procgen ``rand_seed`` an environment draws from its Gymnasium generator on a seeded reset."""
    return int(np_random.integers(0, MAX_SEED))


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
        options.check(EnvOptionError)
        self.autoencoder = autoencoder
        self.options = options
        self.num = num
        self.num_threads = num_threads
        self.games: ProcgenBatch | None = None
        self.time_limit = 0
        self.episode_steps = np.zeros(num, dtype=np.int64)
        self.frames = np.zeros((num, 64, 64, 3), dtype=np.uint8)
        self.encodings = np.zeros((num, *autoencoder.encoding_shape), dtype=np.float32)
        self.level_seeds = np.zeros(num, dtype=np.int64)

    @property
    def started(self) -> bool:
        return self.games is not None

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
        self.games = ProcgenBatch(self.options, self.num, rand_seed, self.num_threads)
        self.time_limit = self.games.time_limit()
        self._start_episodes()

    def new_episodes(self) -> None:
        """End every running episode and move each game to its next level."""
        self.games.act(np.full(self.num, FORCE_NEW_EPISODE))
        self._start_episodes()

    def _start_episodes(self) -> None:
        self.episode_steps[:] = 0
        self._observe()

    def _observe(self) -> Observation:
        observation = self.games.observe()
        self.frames = observation.frames
        self.encodings = self.autoencoder.encode(self.frames)
        self.level_seeds = observation.level_seeds
        return observation

    def step(self, actions: np.ndarray) -> StepBatch:
        """Act with one valid action per game (int array of shape (N,)) and encode the new frames."""
        previous_frames, previous_encodings = self.frames, self.encodings
        self.games.act(actions)
        observation = self._observe()
        done = observation.first
        self.episode_steps += 1
        level_complete = done & observation.prev_level_complete
        truncated = done & ~level_complete & (self.episode_steps >= self.time_limit)
        self.episode_steps[done] = 0
        return StepBatch(
            frames=self.frames, encodings=self.encodings, previous_frames=previous_frames,
            previous_encodings=previous_encodings, rewards=observation.rewards, terminated=done & ~truncated,
            truncated=truncated, level_seeds=self.level_seeds, ended_level_seeds=observation.prev_level_seeds,
            level_complete=level_complete,
        )

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the games are now (for pickling)."""
        return {"states": self.games.states(), "episode_steps": self.episode_steps.copy()}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Continue from ``snapshot`` on a fresh Procgen instance of the same options."""
        self.reseed(0)
        self.games.set_states(snapshot["states"])
        self._observe()
        self.episode_steps = snapshot["episode_steps"].copy()

    def close(self) -> None:
        if self.games is not None:
            self.games.close()
            self.games = None
