"""Many Procgen environments in one native ``ProcgenGym3Env``, stepped in synchronised rounds.

A round is one step that starts a fresh level in every environment told to (action -1 makes
procgen reset), or stands still in the others, then ``random_actions`` uniformly random actions
in all of them. At the end of a round every environment whose level did not end on its own
shows a frame taken exactly ``random_actions`` random actions after its level started (or after
its previous capture, for environments kept on their level). Keeping all environments in step
means one vectorised call serves them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gym_autoencoder.data_generation.arguments import GenerationError, check_game_mode
from gym_autoencoder.procgen_batch import ProcgenBatch
from gym_autoencoder.procgen_games import FORCE_NEW_EPISODE, NUM_ACTIONS, STAND_STILL, ProcgenOptions


@dataclass
class Capture:
    """Frames captured at the end of a round."""

    envs: np.ndarray  # (m,) int environment indices
    frames: np.ndarray  # (m, 64, 64, 3) uint8 RGB
    level_seeds: np.ndarray  # (m,) int64
    frames_on_level: np.ndarray  # (m,) int captures on this level so far, this one included


class Rollout:
    """``num_envs`` environments of ``game``, each on its own procgen-chosen level.

    Levels come from procgen's level generator seeded with ``seed`` (num_levels=0, so any of
    2^31 levels), which makes every run with the same arguments identical. ``games`` gives the
    environments' states and draws frames of other states.
    """

    def __init__(
        self,
        game: str,
        num_envs: int,
        seed: int,
        random_actions: int,
        distribution_mode: str = "memory",
        use_backgrounds: bool = False,
    ) -> None:
        check_game_mode(game, distribution_mode)
        self.games = ProcgenBatch(ProcgenOptions(game, distribution_mode, use_backgrounds), num_envs, seed)
        time_limit = self.games.time_limit()
        if random_actions >= time_limit:
            self.games.close()
            raise GenerationError(
                f"random_actions {random_actions} reaches {game}'s time limit of {time_limit} steps, so every "
                f"level would end before its frame; use fewer than {time_limit} random actions"
            )
        self.num_envs = num_envs
        self.random_actions = random_actions
        self.rng = np.random.default_rng(seed)
        self.keep = np.zeros(num_envs, bool)  # stay on the current level next round
        self.frames_on_level = np.zeros(num_envs, np.int64)
        self.level_seeds = np.full(num_envs, -1, np.int64)
        self.rounds = 0

    def run_round(self) -> Capture:
        """Play one round; return the frames of the environments that completed it.

        Environments with ``keep`` set stay on their level this round; ``keep`` is then cleared.
        An environment whose level ended by itself during the round (its level seed changed)
        is left out: its frame would not follow the round's random actions.
        """
        actions = self.rng.integers(0, NUM_ACTIONS, (self.random_actions, self.num_envs), dtype=np.int32)
        self.games.act(np.where(self.keep, STAND_STILL, FORCE_NEW_EPISODE))
        start = self.games.level_seeds()
        for step_actions in actions:
            self.games.act(step_actions)
        observation = self.games.observe()
        end = observation.level_seeds
        interrupted = (start != end) | (self.keep & (start != self.level_seeds))
        self.level_seeds = end
        self.frames_on_level[~self.keep | interrupted] = 0
        self.frames_on_level[~interrupted] += 1
        self.keep[:] = False
        self.rounds += 1
        envs = np.flatnonzero(~interrupted)
        return Capture(
            envs=envs,
            frames=observation.frames[envs],
            level_seeds=end[envs],
            frames_on_level=self.frames_on_level[envs].copy(),
        )
