"""Labelling a Heist rollout's rounds on several cores, with the same labels as on one.

Procgen steps all environments of a rollout in one process (on its own native threads); what
the labels cost is Python work per frame (``heist_labels``: parsing the states, object masks,
walls, the oracle's path search). ``LabelPool`` runs such a task on a round's states in
consecutive chunks, one per worker process, and joins the results in order, so the labels do
not depend on the number of workers.
While the next round is played, the workers draft a round's labels from its states and this
process then settles them (``labelled_rounds``, the basic generator); the balanced generator,
whose choice of the next round needs a round's visibility at once, sends the workers only the
costliest labels, ``path_labels`` (walls, the oracle's path search), and finds the rest here
(``label_round``).

Workers start with 'spawn' (fork would copy a process whose Procgen threads may hold locks) and
talk over one pipe each, sent to and read from this thread: a pool's helper threads would wait
for the interpreter lock while this thread drafts, which costs more than the chunk saves.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from multiprocessing.connection import Connection

import numpy as np

from gym_autoencoder.data_generation.arguments import GenerationError, check_workers
from gym_autoencoder.data_generation.heist_labels import (
    draft_labels,
    draft_states,
    join_drafts,
    join_rows,
    path_labels,
    settle_labels,
)
from gym_autoencoder.data_generation.procgen_rollout import Capture, Rollout
from gym_autoencoder.procgen_state import parse_heist_state

STOP_SECONDS = 5  # how long a worker may take to finish its chunk and exit before it is killed
T = TypeVar("T")
WORKER_STOPPED = (
    "a labelling worker process stopped (a script that starts a generator with workers must do so under "
    "`if __name__ == '__main__':`; see the error above); fix that or use --workers 1"
)


def _run(task: Callable[[Sequence[Any]], T], items: Sequence[Any]) -> T | Exception:
    """``task(items)``, or the error it raised (raised later, once every chunk is back)."""
    try:
        return task(items)
    except Exception as err:  # noqa: BLE001 - raised again by the waiting LabelPool
        return err


def _serve(connection: Connection) -> None:
    """A worker: run each (task, items) received and send back the result (or error), until None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process, which stops the workers
    try:
        while (request := connection.recv()) is not None:
            connection.send(_run(*request))
    except (EOFError, OSError):
        pass  # the main process has gone


class LabelPool:
    """Labels rounds in ``workers - 1`` worker processes while this one plays Procgen.

    Rounds have at most ``max_chunks`` frames, so more workers than that would idle.
    ``workers=1`` starts no process. Use as a context manager: leaving it, normally or by an
    error or Ctrl-C, stops the workers.
    """

    def __init__(self, workers: int, max_chunks: int) -> None:
        check_workers(workers)
        self._workers: list[tuple[multiprocessing.Process, Connection]] = []
        self._waiting: list[Connection] = []  # workers whose reply has not been read
        context = multiprocessing.get_context("spawn")
        try:
            for _ in range(min(workers - 1, max_chunks)):
                mine, theirs = context.Pipe()
                process = context.Process(target=_serve, args=(theirs,), daemon=True)
                process.start()
                theirs.close()
                self._workers.append((process, mine))
        except BaseException:
            self.close()
            raise

    @property
    def started(self) -> int:
        """The worker processes running (0 with ``workers=1`` or once closed)."""
        return len(self._workers)

    def submit(
        self,
        items: Sequence[Any],
        task: Callable[[Sequence[Any]], T],
        join: Callable[[Sequence[T]], T],
    ) -> Callable[[], T]:
        """Start ``task(items)`` (say ``draft_states`` of a round's states) in the workers, one chunk each;
        the function returned gives its result, the chunks' results put together by ``join``.
        Without workers the function runs the task here. Read each result before the next submit:
        a worker's unread reply would block it.
        """
        parts = min(len(self._workers), len(items))
        if parts == 0:
            return lambda: task(items)
        bounds = np.linspace(0, len(items), parts + 1).round().astype(int)
        chunks = [list(items[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        asked = [connection for _, connection in self._workers[:parts]]
        try:
            for connection, chunk in zip(asked, chunks):
                connection.send((task, chunk))
                self._waiting.append(connection)
        except OSError:
            self._stopped()

        def result() -> T:
            results = []
            try:
                for connection in asked:
                    results.append(connection.recv())
                    self._waiting.remove(connection)
            except (EOFError, OSError):
                self._stopped()
            for part in results:
                if isinstance(part, Exception):
                    raise part
            return join(results)

        return result

    def _stopped(self) -> None:
        self.close()
        raise GenerationError(WORKER_STOPPED) from None

    def close(self) -> None:
        """Stop the workers (a no-op without them); the pool then drafts in this process.

        A worker whose reply was not read (the run stopped before it) is killed: it may be
        blocked sending that reply, and nothing it holds is wanted.
        """
        for process, connection in self._workers:
            if connection in self._waiting:
                process.kill()
            else:
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
        self._workers, self._waiting = [], []

    def __enter__(self) -> LabelPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def label_round(
    rollout: Rollout, pool: LabelPool, capture: Capture
) -> tuple[dict[str, np.ndarray], Callable[[], dict[str, np.ndarray]]]:
    """The labels of ``capture``, the round ``rollout`` just played: those found here, and a
    function giving the rest (``path_labels``, found by the workers meanwhile; with no workers,
    all are found here and the function gives nothing). Call it before the next round's."""
    states = rollout.games.states()
    captured = [states[i] for i in capture.envs]
    parsed = [parse_heist_state(buf) for buf in captured]  # a seventh of the bytes to send
    remote = pool.started > 0
    rest = pool.submit(parsed, path_labels, join_rows) if remote else dict
    draft = draft_labels(captured, parsed, paths=not remote)
    return settle_labels(draft, rollout.games, capture, captured), rest


def labelled_rounds(
    rollout: Rollout, pool: LabelPool, labels: bool = True
) -> Iterator[tuple[Capture, dict[str, np.ndarray], int]]:
    """The rounds of ``rollout`` that captured frames, each with its labels and its number.

    ``labels=False`` gives ``level_seeds`` only (any game). A round's labels are drafted from
    its states (``draft_states``) by the workers while the next round is played, then settled
    here (redraws by games that have played on, set back to their state now), so a round is
    given once the next one has been played and the caller must not change ``rollout.keep``.
    """
    last = None  # the last round captured, the function giving its draft, its number
    while True:
        capture = rollout.run_round()
        if len(capture.envs) == 0:
            continue
        if not labels:
            yield capture, {"level_seeds": capture.level_seeds}, rollout.rounds
            continue
        states = rollout.games.states()
        draft = None if last is None else last[1]()  # read before the next submit
        drafted = pool.submit([states[i] for i in capture.envs], draft_states, join_drafts)
        if last is not None:
            done = last[0]
            yield done, settle_labels(draft, rollout.games, done, [states[i] for i in done.envs]), last[2]
        last = (capture, drafted, rollout.rounds)
