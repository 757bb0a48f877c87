"""Errors raised when an environment is used the wrong way, and the one warning; one line each, naming the fix."""

from gym_autoencoder.errors import GymAutoencoderError


class EnvUsageError(GymAutoencoderError, RuntimeError):
    """A call out of order (step before reset, step after the episode ended) or a bad option."""


class InvalidActionError(GymAutoencoderError, ValueError):
    """An action outside the environment's action space."""


class EnvOptionError(GymAutoencoderError, ValueError):
    """An environment option that Procgen or this package cannot honour."""


class HeadlessRenderWarning(UserWarning):
    """``render_mode="human"`` where matplotlib has no display: the environment runs and shows nothing."""
