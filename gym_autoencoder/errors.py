"""Exceptions with one-line messages that name the problem and the fix."""


class GymAutoencoderError(Exception):
    """Base class of every error this package raises on bad input."""


class CheckpointError(GymAutoencoderError, ValueError):
    """A checkpoint is missing, corrupt, of the wrong kind or of another architecture."""


class FrameFormatError(GymAutoencoderError, ValueError):
    """Frames are not uint8 RGB arrays of shape (N, 64, 64, 3)."""


class DeviceError(GymAutoencoderError, ValueError):
    """The requested torch device is not available on this machine."""


class UnknownModelError(GymAutoencoderError, KeyError):
    """A model name is not in the registry."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class StorageError(GymAutoencoderError, OSError):
    """An output cannot be written: its directory is read-only, or the disk is full."""
