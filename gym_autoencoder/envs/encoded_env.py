"""``EncodedProcgenEnv``: a Gymnasium environment whose observations are autoencoder encodings.

Episode ends: Procgen moves to the next level inside the step that ends an episode and never
renders the ended episode's last frame. The step that returns ``terminated`` or ``truncated``
therefore returns the last frame that episode did show (the one the final action was taken
on) and its encoding; the next ``reset()`` returns the first frame of the level Procgen already
moved to, at no extra cost.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gym_autoencoder.envs.encoded_procgen import EncodedProcgen
from gym_autoencoder.envs.env_model import encoding_space, load_env_autoencoder
from gym_autoencoder.envs.errors import EnvUsageError, InvalidActionError
from gym_autoencoder.envs.rendering import RENDER_FPS, check_render_mode, open_human_window, side_by_side
from gym_autoencoder.procgen_games import NUM_ACTIONS, ProcgenOptions


class EncodedProcgenEnv(gym.Env[np.ndarray, np.int64]):
    """One Procgen game; observations are float32 encodings of its 64x64 RGB frames.

    ``architecture`` fixes which model a checkpoint must hold (None: any); ``checkpoint`` is a
    path or a shipped model's name (default: the shipped model of ``architecture``).
    ``info`` holds ``level_seed``, ``level_complete`` and, with ``include_frame=True``, the raw
    uint8 ``frame`` the observation encodes. ``terminated`` means the episode ended before the
    game's time limit (level completed or failed), ``truncated`` that it reached the limit.
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": RENDER_FPS}

    def __init__(
        self,
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
        self._init_kwargs = {key: value for key, value in locals().items() if key not in ("self", "__class__")}
        check_render_mode(render_mode, self.metadata["render_modes"])
        self.autoencoder = load_env_autoencoder(architecture, checkpoint, device)
        options = ProcgenOptions(game, distribution_mode, use_backgrounds, start_level, num_levels)
        self._procgen = EncodedProcgen(self.autoencoder, options, num=1, num_threads=0)
        self.observation_space = encoding_space(self.autoencoder)
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self.render_mode = render_mode
        self.include_frame = include_frame
        # None where there is no display: then "human" warns once, here, and shows nothing
        self._window = open_human_window(f"{game}: frame | reconstruction") if render_mode == "human" else None
        self._episode_over = False
        self._frame = self._procgen.frames[0]
        self._observation = self._procgen.encodings[0]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode on a new level; the same ``seed`` gives the same level and first frame."""
        super().reset(seed=seed)
        self._procgen.begin_episodes(self.np_random, seed is not None, at_first_frame=self._episode_over)
        self._episode_over = False
        self._frame, self._observation = self._procgen.frames[0], self._procgen.encodings[0]
        self._render_human()
        return self._observation, self._info(self._procgen.level_seeds[0], False)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self._procgen.started:
            raise EnvUsageError("step() called before reset(); call env.reset() first")
        if self._episode_over:
            raise EnvUsageError("the episode has ended; call env.reset() before the next step()")
        valid = type(action) is int and 0 <= action < NUM_ACTIONS  # the common case, without Discrete.contains' 5 µs
        if not (valid or self.action_space.contains(action)):
            raise InvalidActionError(
                f"action {action!r} is outside {self.action_space}; pass an int from 0 to {NUM_ACTIONS - 1}"
            )
        batch = self._procgen.step(np.array([action]))
        terminated, truncated = bool(batch.terminated[0]), bool(batch.truncated[0])
        self._episode_over = terminated or truncated
        if self._episode_over:  # the ended episode's last frame again (see the module docstring), as new data
            self._frame, self._observation = self._frame.copy(), self._observation.copy()
            info = self._info(batch.ended_level_seeds[0], bool(batch.level_complete[0]))
        else:
            self._frame, self._observation = batch.frames[0], batch.encodings[0]
            info = self._info(batch.level_seeds[0], False)
        self._render_human()
        return self._observation, float(batch.rewards[0]), terminated, truncated, info

    def _render_human(self) -> None:
        if self._window is not None:
            self.render()

    def _info(self, level_seed: np.integer, level_complete: bool) -> dict[str, Any]:
        info: dict[str, Any] = {"level_seed": int(level_seed), "level_complete": level_complete}
        if self.include_frame:
            info["frame"] = self._frame
        return info

    def render(self) -> np.ndarray | None:
        """``rgb_array``: uint8 (256, 512, 3), the frame left and its reconstruction right.

        ``human``: shows that image in the window and returns None (without a display, only None).
        """
        if self.render_mode is None:
            return None
        if not self._procgen.started:
            raise EnvUsageError("render() called before reset(); call env.reset() first")
        if self.render_mode == "human" and self._window is None:
            return None
        image = side_by_side(self.autoencoder, self._frame[None])[0]
        if self._window is not None:
            self._window.show(image)
            return None
        return image

    def close(self) -> None:
        self._procgen.close()
        if self._window is not None:
            self._window.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the constructor arguments and, once started, the exact game state."""
        running = None
        if self._procgen.started:
            running = {
                "procgen": self._procgen.snapshot(),
                "np_random": self.np_random.bit_generator.state,
                "episode_over": self._episode_over,
                "frame": self._frame,
                "observation": self._observation,
            }
        return {"init": self._init_kwargs, "running": running}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state["init"])
        running = state["running"]
        if running is not None:
            self._procgen.restore(running["procgen"])
            self.np_random.bit_generator.state = running["np_random"]
            self._episode_over = running["episode_over"]
            self._frame, self._observation = running["frame"], running["observation"]
