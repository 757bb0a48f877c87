"""Atomic file writes: a reader sees the old file or the complete new one, never a part.

A writer works on a temporary file beside its target, named ``.NAME.XXXXXXXX.tmp[suffix]`` and
locked (``flock``) for as long as the writer lives. A temporary that no live writer holds was
left by an interrupted one: the next writer of the same target removes it. ``commit_together``
renames several temporaries as one step, so a set of files (a data set) changes all or none.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from gym_autoencoder.errors import StorageError

COMMIT_JOURNAL = ".commit.json"
_RANDOM = re.compile(r"^[a-z0-9_]{8}$")  # mkstemp's random part
# What a full disk or an unwritable directory (read-only, not ours, not a directory) raises
_STORAGE_ERRNOS = (
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST, errno.ENOENT,
)


def is_temporary_of(name: str, target: str) -> bool:
    """Whether the file ``name`` is a temporary of ``target`` (``.TARGET.XXXXXXXX.tmp...``)."""
    prefix = f".{target}."
    if not name.startswith(prefix):
        return False
    random, dot, rest = name[len(prefix):].partition(".")
    return bool(dot and _RANDOM.match(random) and rest.startswith("tmp"))


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``path`` that no live writer holds; return those removed."""
    target = Path(path)
    removed = []
    if not target.parent.is_dir():
        return removed
    for candidate in target.parent.iterdir():
        if not is_temporary_of(candidate.name, target.name):
            continue
        try:
            fd = os.open(candidate, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
        except OSError:  # a live writer holds it (or it cannot be removed): leave it
            pass
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def temporary_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a new temporary file beside ``path``, locked while this process lives; it is removed
    on leaving the block unless it was renamed meanwhile. Stale temporaries of ``path`` go first."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    while True:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
        fcntl.flock(fd, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.stat(tmp_name)):
                break  # still ours: no other writer took it for stale before the lock
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; give the usual permissions
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)
        os.close(fd)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    ``suffix`` keeps an extension that a writer insists on (``np.save`` adds ``.npy``).
    """
    with temporary_path(path, suffix) as tmp:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def commit_together(directory: str | os.PathLike, temporaries: Mapping[str, Path]) -> None:
    """Rename each temporary (of ``temporary_path``) onto its name in ``directory``, in order, as
    one step: the list of renames is written first, and from then on the new files count as
    written; ``finish_commit`` completes the renames after a crash."""
    directory = Path(directory)
    for tmp in temporaries.values():
        _fsync(tmp)
    atomic_write_text(directory / COMMIT_JOURNAL,
                      json.dumps({name: Path(tmp).name for name, tmp in temporaries.items()}))
    _fsync_directory(directory)
    finish_commit(directory)


def finish_commit(directory: str | os.PathLike) -> bool:
    """Complete the renames of a ``commit_together`` that was interrupted in ``directory``;
    whether there was one."""
    directory = Path(directory)
    journal = directory / COMMIT_JOURNAL
    if not journal.is_file():
        return False
    try:
        renames = json.loads(journal.read_text(encoding="utf-8"))
    except ValueError:  # not written by commit_together, which writes it whole
        renames = {}
    for name, tmp_name in (renames.items() if isinstance(renames, dict) else ()):
        if not isinstance(name, str) or not isinstance(tmp_name, str) or "/" in name + tmp_name \
                or not is_temporary_of(tmp_name, name):
            continue  # not a journal of commit_together: leave the files alone
        with contextlib.suppress(FileNotFoundError):  # renamed before the interruption
            os.replace(directory / tmp_name, directory / name)
    _fsync_directory(directory)
    journal.unlink(missing_ok=True)  # a concurrent reader may have finished first
    return True


def reserve_space(path: str | os.PathLike, size: int) -> None:
    """Allocate ``size`` bytes to the file ``path`` now, so that a full disk shows here as an
    OSError (ENOSPC) rather than later, when a memory-mapped write would kill the process.
    Where the system has no ``posix_fallocate`` (macOS) nothing is reserved."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)


@contextlib.contextmanager
def storage_errors(directory: str | os.PathLike, fix: str) -> Iterator[None]:
    """Turn a full disk or a read-only directory met in the block into one ``StorageError`` line
    that names ``directory`` and ``fix``."""
    try:
        yield
    except StorageError:
        raise
    except OSError as err:
        if err.errno not in _STORAGE_ERRNOS:
            raise
        raise StorageError(f"cannot write to {directory} ({os.strerror(err.errno)}); {fix}") from None


def check_writable(directory: str | os.PathLike, fix: str, reserve: int = 0) -> Path:
    """Create ``directory`` if needed and prove that a file of ``reserve`` bytes can be written
    there, or raise one ``StorageError`` line naming ``fix``."""
    directory = Path(directory)
    with storage_errors(directory, fix):
        directory.mkdir(parents=True, exist_ok=True)
        with temporary_path(directory / ".write-check") as probe:
            if reserve:
                reserve_space(probe, reserve)
    return directory
