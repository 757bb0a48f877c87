"""Labelling a Heist rollout's captures on several cores, with the same labels as on one.

Procgen steps all environments of a rollout in one process (on its own native threads); what
the labels cost is Python work per frame (``heist_labels.draft_labels``: parsing the states,
object masks, walls, the oracle's path search). ``LabelPool`` splits each capture into
consecutive chunks, drafts the first here and each other one in a worker process, and joins the
drafts in order, so the labels do not depend on the number of workers.

Workers start with 'spawn' (fork would copy a process whose Procgen threads may hold locks) and
talk over one pipe each, sent to and read from this thread: a pool's helper threads would wait
for the interpreter lock while this thread drafts, which costs more than the chunk saves.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Sequence
from multiprocessing.connection import Connection

import numpy as np

from gym_autoencoder.data_generation.arguments import GenerationError, check_workers
from gym_autoencoder.data_generation.heist_labels import DraftLabels, draft_labels, label_capture
from gym_autoencoder.data_generation.procgen_rollout import Capture, Rollout

STOP_SECONDS = 5  # how long a worker may take to finish its chunk and exit before it is killed


def _draft_or_error(states: Sequence[bytes]) -> DraftLabels | Exception:
    """``draft_labels(states)``, or the error it raised (raised later, once every chunk is back)."""
    try:
        return draft_labels(states)
    except Exception as err:  # noqa: BLE001 - raised again by LabelPool.draft
        return err


def _serve(connection: Connection) -> None:
    """A worker: draft each chunk of states received and send back the draft (or error), until None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process, which stops the workers
    while (states := connection.recv()) is not None:
        connection.send(_draft_or_error(states))


class LabelPool:
    """Labels captures using ``workers`` processes: this one and up to ``workers - 1`` started ones.

    A capture of at most ``max_chunks`` frames is split into no more chunks than that.
    ``workers=1`` starts no process. Use as a context manager: leaving it, normally or by an
    error or Ctrl-C, stops the workers.
    """

    def __init__(self, workers: int, max_chunks: int) -> None:
        check_workers(workers)
        self.chunks = min(workers, max_chunks)
        self._workers: list[tuple[multiprocessing.Process, Connection]] = []
        context = multiprocessing.get_context("spawn")
        try:
            for _ in range(self.chunks - 1):
                mine, theirs = context.Pipe()
                process = context.Process(target=_serve, args=(theirs,), daemon=True)
                process.start()
                theirs.close()
                self._workers.append((process, mine))
        except BaseException:
            self.close()
            raise

    def label(self, rollout: Rollout, capture: Capture) -> dict[str, np.ndarray]:
        """The labels of ``capture``, a round that ``rollout`` just played (``heist_labels.label_capture``)."""
        return label_capture(rollout, capture, self.draft)

    def draft(self, states: Sequence[bytes]) -> DraftLabels:
        """``draft_labels(states)``, its chunks drafted side by side."""
        bounds = np.linspace(0, len(states), min(self.chunks, len(states)) + 1).round().astype(int)
        chunks = [states[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        if len(chunks) <= 1:
            return draft_labels(states)
        workers = [connection for _, connection in self._workers[: len(chunks) - 1]]
        try:
            for connection, chunk in zip(workers, chunks[1:]):
                connection.send(list(chunk))
            drafts = [_draft_or_error(chunks[0]), *(connection.recv() for connection in workers)]
        except (EOFError, OSError):
            self.close()
            raise GenerationError(
                "a labelling worker process stopped (a script that starts a generator with workers must do so "
                "under `if __name__ == '__main__':`; see the error above); fix that or use --workers 1"
            ) from None
        for draft in drafts:
            if isinstance(draft, Exception):
                raise draft
        return DraftLabels.join(drafts)

    def close(self) -> None:
        """Stop the workers (a no-op without them); the pool then drafts in this process."""
        self.chunks = 1
        for _, connection in self._workers:
            try:
                connection.send(None)
            except OSError:
                pass  # the worker has gone already
        for process, connection in self._workers:
            process.join(STOP_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
            connection.close()
        self._workers = []

    def __enter__(self) -> LabelPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
