"""Labelling workers: the generators write the same bytes with any number of them, and stop them cleanly."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from gym_autoencoder.data_generation.arguments import GenerationError
from gym_autoencoder.data_generation.heist_labels import draft_states, join_drafts, join_rows, path_labels
from gym_autoencoder.data_generation.label_pool import STOP_SECONDS, LabelPool
from gym_autoencoder.data_generation.procgen_rollout import Rollout
from gym_autoencoder.data_generation.sample_generator_heist import generate_balanced_dataset
from gym_autoencoder.data_generation.sample_generator_heist_basic import generate_basic_dataset
from gym_autoencoder.procgen_state import HeistState, parse_heist_state


def tree_bytes(directory) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


@pytest.mark.parametrize(
    "generate, arguments",
    [
        (generate_basic_dataset, dict(num_samples=200, seed=3, num_envs=24)),
        (generate_balanced_dataset, dict(num_samples=300, seed=4, num_envs=24)),
    ],
)
def test_one_and_two_workers_write_the_same_bytes(generate, arguments, tmp_path):
    reports = [generate(tmp_path / f"w{n}", workers=n, progress=False, **arguments) for n in (1, 2)]
    one, two = tree_bytes(tmp_path / "w1"), tree_bytes(tmp_path / "w2")
    assert len(one) == 5 and one == two
    assert reports[0] == reports[1]
    assert multiprocessing.active_children() == []  # the worker has stopped


@pytest.fixture(scope="module")
def round_states() -> list[HeistState]:
    """The parsed states of a round's frames."""
    rollout = Rollout("heist", 24, 6, 10, "memory")
    capture = rollout.run_round()
    states = rollout.games.states()
    return [parse_heist_state(states[i]) for i in capture.envs]


def test_drafts_joined_from_chunks_equal_the_whole_draft():
    rollout = Rollout("heist", 64, 6, 10, "memory")
    buffers = []
    for _ in range(4):
        capture = rollout.run_round()
        states = rollout.games.states()
        buffers += [states[i] for i in capture.envs]
    whole = draft_states(buffers)
    assert len({r.frame * 3 // len(buffers) for r in whole.redraws}) > 1  # redrawn frames in several chunks
    with LabelPool(4, 64) as pool:
        joined = pool.submit(buffers, draft_states, join_drafts)()
    assert joined.labels.keys() == whole.labels.keys()
    for name, rows in whole.labels.items():
        np.testing.assert_array_equal(joined.labels[name], rows, err_msg=name)
    np.testing.assert_array_equal(joined.full_counts, whole.full_counts)
    assert [r.frame for r in joined.redraws] == [r.frame for r in whole.redraws]
    for mine, theirs in zip(joined.redraws, whole.redraws):
        assert mine.without_objects == theirs.without_objects
        np.testing.assert_array_equal(mine.region, theirs.region)


def test_a_chunk_that_fails_raises_its_error_and_the_pool_stays_in_step(round_states):
    whole = path_labels(round_states)
    broken = round_states[:-1] + [None]
    with LabelPool(3, 64) as pool:
        for bad in (broken, broken[::-1]):  # the second worker's chunk fails, then the first's
            with pytest.raises(AttributeError):
                pool.submit(bad, path_labels, join_rows)()
            again = pool.submit(round_states, path_labels, join_rows)()  # not a late reply of the failed call
            assert again.keys() == whole.keys()
            for name, rows in whole.items():
                np.testing.assert_array_equal(again[name], rows, err_msg=name)
    assert multiprocessing.active_children() == []


def test_leaving_the_pool_by_an_interrupt_stops_the_workers(round_states):
    with pytest.raises(KeyboardInterrupt):
        with LabelPool(3, 64):
            assert len(multiprocessing.active_children()) == 2
            raise KeyboardInterrupt
    assert multiprocessing.active_children() == []
    start = time.perf_counter()
    with LabelPool(3, 64) as pool:
        pool.submit(round_states * 4, path_labels, join_rows)  # replies never read: the workers may be blocked sending
    assert multiprocessing.active_children() == [] and time.perf_counter() - start < STOP_SECONDS


def test_workers_must_be_a_positive_integer(tmp_path):
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(GenerationError, match="workers must be a positive integer"):
            generate_basic_dataset(tmp_path, 20, workers=bad, progress=False)
    assert not any(tmp_path.iterdir())


def test_a_script_without_a_main_guard_gets_one_error_not_a_hang(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        from gym_autoencoder.data_generation.sample_generator_heist_basic import generate_basic_dataset
        generate_basic_dataset({str(tmp_path / "out")!r}, 40, num_envs=8, workers=2, progress=False)
    """))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert run.stderr.strip().splitlines()[-1].endswith(
        "a labelling worker process stopped (a script that starts a generator with workers must do so under "
        "`if __name__ == '__main__':`; see the error above); fix that or use --workers 1"
    )
