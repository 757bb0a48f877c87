"""Exceptions with one-line messages that name the problem and the fix, and how the command
lines report them (:func:`report_error`)."""

from __future__ import annotations

import argparse
import sys


class GymAutoencoderError(Exception):
    """Base class of every error this package raises on bad input."""

    exit_status = 2  # what a command line that stops on it exits with: the input cannot work


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


def report_error(err: Exception, prog: str | None = None) -> int:
    """Print ``err`` as one line, ``[PROG: ]error: MESSAGE``, on stderr; return the exit status:
    the error's own for this package's errors (2: bad input), 1 for any other (an I/O failure)."""
    text = str(err).strip()
    message = text.splitlines()[0] if text else type(err).__name__
    print(f"{prog + ': ' if prog else ''}error: {message}", file=sys.stderr)
    return err.exit_status if isinstance(err, GymAutoencoderError) else 1


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``error: ...``, with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message}; see --help\n")
