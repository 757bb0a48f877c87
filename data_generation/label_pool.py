"""Labelling a Heist rollout's captures on several cores, with the same labels as on one.

Procgen steps all environments of a rollout in one process (on its own native threads); what
the labels cost is Python work per frame (``heist_labels.draft_labels``: parsing the states,
object masks, walls, the oracle's path search). ``LabelPool`` splits each capture into
consecutive chunks, drafts the first here and the others in worker processes, and joins the
drafts in order, so the labels do not depend on the number of workers. Workers start with
'spawn' (not fork, which would copy a process whose Procgen threads hold locks).
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from gym_autoencoder.data_generation.arguments import GenerationError, check_workers
from gym_autoencoder.data_generation.heist_labels import DraftLabels, draft_labels, label_capture
from gym_autoencoder.data_generation.procgen_rollout import Capture, Rollout


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the main process, which then stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LabelPool:
    """Labels captures using ``workers`` processes: this one and up to ``workers - 1`` started ones.

    A capture of at most ``max_chunks`` frames is split into no more chunks than that.
    ``workers=1`` starts no process. Use as a context manager: leaving it, normally or by an
    error or Ctrl-C, stops the workers.
    """

    def __init__(self, workers: int, max_chunks: int) -> None:
        check_workers(workers)
        self.chunks = min(workers, max_chunks)
        self._executor = None
        if self.chunks > 1:
            self._executor = ProcessPoolExecutor(
                self.chunks - 1, multiprocessing.get_context("spawn"), initializer=_ignore_interrupts
            )

    def label(self, rollout: Rollout, capture: Capture) -> dict[str, np.ndarray]:
        """The labels of ``capture``, a round that ``rollout`` just played (``heist_labels.label_capture``)."""
        return label_capture(rollout, capture, self.draft)

    def draft(self, states: Sequence[bytes]) -> DraftLabels:
        """``draft_labels(states)``, its chunks drafted side by side."""
        bounds = np.linspace(0, len(states), min(self.chunks, len(states)) + 1).round().astype(int)
        chunks = [states[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        if self._executor is None or len(chunks) == 1:
            return draft_labels(states)
        pending = [self._executor.submit(draft_labels, chunk) for chunk in chunks[1:]]
        first = draft_labels(chunks[0])
        try:
            return DraftLabels.join([first, *(future.result() for future in pending)])
        except BrokenProcessPool:
            raise GenerationError(
                "a labelling worker process stopped (a script that starts the generator must do so under "
                "`if __name__ == '__main__':`, see the error above); fix that or use --workers 1"
            ) from None

    def close(self) -> None:
        """Stop the workers (a no-op without them)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> LabelPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
