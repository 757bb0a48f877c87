"""``EncodedProcgenVectorEnv``: num_envs games in one Procgen instance, encoded in one batch per step.

Autoreset mode SAME_STEP, which is what Procgen does natively: in the step where a game's
episode ends, ``obs[i]`` is already the first observation of its next episode and ``info``
describes that new episode. ``info["final_obs"][i]`` and ``info["final_info"]`` (masked by
``info["_final_obs"]``) describe the ended one: as Procgen never renders an episode's last frame,
``final_obs[i]`` is the last observation that episode did show (the one the final action was
taken on), exactly what the scalar environment returns on its last step.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from gym_autoencoder.envs.encoded_procgen import EncodedProcgen, StepBatch
from gym_autoencoder.envs.env_model import encoding_space, load_env_autoencoder
from gym_autoencoder.envs.errors import EnvOptionError, EnvUsageError, InvalidActionError
from gym_autoencoder.envs.rendering import RENDER_FPS, check_render_mode, side_by_side
from gym_autoencoder.procgen_batch import PROCGEN_THREADS
from gym_autoencoder.procgen_games import NUM_ACTIONS, ProcgenOptions


class EncodedProcgenVectorEnv(VectorEnv):
    """``num_envs`` copies of :class:`~gym_autoencoder.envs.encoded_env.EncodedProcgenEnv`, batched.

    Takes the scalar environment's keywords. Sub-environment 0 after ``reset(seed=s)`` plays
    exactly what the scalar environment plays after ``reset(seed=s)``.
    """

    metadata = {
        "render_modes": ["rgb_array"],
        "render_fps": RENDER_FPS,
        "autoreset_mode": AutoresetMode.SAME_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        architecture: str | None = None,
        checkpoint: str | os.PathLike | None = None,
        game: str = "heist",
        distribution_mode: str = "memory",
        use_backgrounds: bool = False,
        start_level: int = 0,
        num_levels: int = 0,
        device: str = "auto",
        render_mode: str | None = None,
        include_frame: bool = False,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise EnvOptionError(f"num_envs must be at least 1 and an integer, got {num_envs!r}")
        check_render_mode(render_mode, self.metadata["render_modes"])
        self.autoencoder = load_env_autoencoder(architecture, checkpoint, device)
        options = ProcgenOptions(game, distribution_mode, use_backgrounds, start_level, num_levels)
        self._procgen = EncodedProcgen(self.autoencoder, options, num=num_envs, num_threads=PROCGEN_THREADS)
        self.num_envs = num_envs
        self.single_observation_space = encoding_space(self.autoencoder)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.single_action_space = spaces.Discrete(NUM_ACTIONS)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = render_mode
        self.include_frame = include_frame

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new episode in every game; the same int ``seed`` gives the same levels."""
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise EnvOptionError(
                f"seed must be an int or None, got {seed!r}: all games share one Procgen instance, "
                "whose single seed fixes every game's levels"
            )
        super().reset(seed=seed)
        self._procgen.begin_episodes(self.np_random, seed is not None)
        procgen = self._procgen
        return procgen.encodings, self._infos(procgen.level_seeds, procgen.frames)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._procgen.started:
            raise EnvUsageError("step() called before reset(); call envs.reset() first")
        batch = self._procgen.step(self._checked(actions))
        infos = self._infos(batch.level_seeds, batch.frames)
        if batch.done.any():
            self._add_final(infos, batch)
        return batch.encodings, batch.rewards, batch.terminated, batch.truncated, infos

    def _checked(self, actions: Any) -> np.ndarray:
        array = np.asarray(actions)
        if (
            array.shape != (self.num_envs,)
            or not np.issubdtype(array.dtype, np.integer)
            or (array < 0).any()
            or (array >= NUM_ACTIONS).any()
        ):
            raise InvalidActionError(
                f"actions must be {self.num_envs} ints from 0 to {NUM_ACTIONS - 1} (one per game), "
                f"got {array.dtype} of shape {array.shape}; use envs.action_space.sample() for an example"
            )
        return array

    def _infos(self, level_seeds: np.ndarray, frames: np.ndarray) -> dict[str, Any]:
        """Gymnasium's vector info: one array per key, with a ``_key`` mask of the games it is for."""
        every = np.ones(self.num_envs, dtype=bool)
        infos = {
            "level_seed": level_seeds, "_level_seed": every,
            "level_complete": np.zeros(self.num_envs, dtype=bool), "_level_complete": every,
        }
        if self.include_frame:
            infos.update(frame=frames, _frame=every)
        return infos

    def _add_final(self, infos: dict[str, Any], batch: StepBatch) -> None:
        done = batch.done
        final_obs = np.full(self.num_envs, None, dtype=object)
        for index in np.flatnonzero(done):
            final_obs[index] = batch.previous_encodings[index].copy()  # new data, as Gymnasium requires
        final_info = {
            "level_seed": batch.ended_level_seeds, "_level_seed": done,
            "level_complete": batch.level_complete, "_level_complete": done,
        }
        if self.include_frame:
            final_info.update(frame=batch.previous_frames.copy(), _frame=done)
        infos.update(final_obs=final_obs, _final_obs=done, final_info=final_info, _final_info=done)

    def render(self) -> tuple[np.ndarray, ...] | None:
        """``rgb_array``: one uint8 (256, 512, 3) image per game, frame left, reconstruction right."""
        if self.render_mode is None:
            return None
        if not self._procgen.started:
            raise EnvUsageError("render() called before reset(); call envs.reset() first")
        return tuple(side_by_side(self.autoencoder, self._procgen.frames))

    def close_extras(self, **kwargs: Any) -> None:
        self._procgen.close()
