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

from gym_autoencoder.data_generation.arguments import check_game_mode
from gym_autoencoder.procgen_import import import_procgen

NUM_ACTIONS = 15  # procgen's full action space
STAND_STILL = 4  # the empty key combination
FORCE_RESET = -1  # procgen's Game::step ends the episode and loads a new level


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
    2^31 levels), which makes every run with the same arguments identical.
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
        procgen = import_procgen()
        self.env = procgen.ProcgenGym3Env(
            num=num_envs, env_name=game, distribution_mode=distribution_mode,
            num_levels=0, start_level=0, rand_seed=seed, use_backgrounds=use_backgrounds,
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
        first_action = np.where(self.keep, STAND_STILL, FORCE_RESET).astype(np.int32)
        actions = self.rng.integers(0, NUM_ACTIONS, (self.random_actions, self.num_envs), dtype=np.int32)
        self.env.act(first_action)
        start = self._level_seeds()
        for step_actions in actions:
            self.env.act(step_actions)
        _, observation, _ = self.env.observe()
        end = self._level_seeds()
        interrupted = (start != end) | (self.keep & (start != self.level_seeds))
        self.level_seeds = end
        self.frames_on_level[~self.keep | interrupted] = 0
        self.frames_on_level[~interrupted] += 1
        self.keep[:] = False
        self.rounds += 1
        envs = np.flatnonzero(~interrupted)
        return Capture(
            envs=envs,
            frames=observation["rgb"][envs],
            level_seeds=end[envs],
            frames_on_level=self.frames_on_level[envs].copy(),
        )

    def _level_seeds(self) -> np.ndarray:
        return np.array([info["level_seed"] for info in self.env.get_info()], np.int64)

    def states(self) -> list[bytes]:
        """The emulator state of every environment (procgen's get_state)."""
        return self.env.callmethod("get_state")

    def render_state(self, env_index: int, state: bytes) -> np.ndarray:
        """The frame that ``state`` shows, drawn by environment ``env_index`` (whose state is then ``state``)."""
        self.env.call_c_func("set_state", env_index, state, len(state))
        return self.env.observe()[1]["rgb"][env_index]
