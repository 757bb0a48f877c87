"""The Heist state parser and the object-pixel labels, checked against real Procgen renders."""

from __future__ import annotations

import numpy as np
import pytest

from gym_autoencoder.data_generation.heist_labels import label_capture
from gym_autoencoder.data_generation.heist_render import StateBatch, object_classes, object_masks
from gym_autoencoder.data_generation.labels import OBJECT_CLASSES
from gym_autoencoder.data_generation.procgen_rollout import Capture, Rollout
from gym_autoencoder.procgen_state import (
    AGENT,
    GEM,
    WALL_CELL,
    ProcgenStateError,
    parse_heist_state,
    patch_entities,
)

RANDOM_ACTIONS = 10
GEM_CLASS = OBJECT_CLASSES.index("gem")


@pytest.fixture(scope="module")
def memory_round() -> tuple[Rollout, Capture, dict]:
    """One round of 48 fresh memory-mode levels, labelled."""
    rollout = Rollout("heist", 48, 5, RANDOM_ACTIONS, "memory")
    capture = rollout.run_round()
    return rollout, capture, label_capture(rollout, capture)


def frame_without_objects(rollout: Rollout, env: int) -> np.ndarray:
    """The frame of environment ``env`` drawn again with every key, lock and gem moved away."""
    buf = rollout.games.states()[env]
    state = parse_heist_state(buf)
    is_object = object_classes(state.entities["type"], state.entities["image_theme"]) >= 0
    frame = rollout.games.render_state(env, patch_entities(buf, state, is_object, x=-1000.0)).copy()
    rollout.games.render_state(env, buf)
    return frame


def test_parsed_state_matches_what_procgen_reports(memory_round):
    rollout, capture, labels = memory_round
    states = [parse_heist_state(buf) for buf in rollout.games.states()]
    assert [states[i].level_seed for i in capture.envs] == capture.level_seeds.tolist()
    for state in states:
        assert state.distribution_mode == 10 and state.center_agent and state.world_dim == 23
        assert state.grid.shape == (23, 23) and set(np.unique(state.grid)) <= {WALL_CELL, 100}
        assert (state.entities["type"] == AGENT).sum() == 1
        assert state.grid[int(state.agent["y"]), int(state.agent["x"])] != WALL_CELL
    # a fresh level, then exactly RANDOM_ACTIONS steps
    assert (labels["level_steps"] == RANDOM_ACTIONS).all()


def test_broken_or_foreign_states_get_one_clear_error(memory_round):
    rollout, _, _ = memory_round
    buf = rollout.games.states()[0]
    for bad in (buf[:-4] + b"\0\0\0\0", buf[: len(buf) // 2], b""):
        with pytest.raises(ProcgenStateError, match="procgen-mirror==0.10.7"):
            parse_heist_state(bad)
    coinrun = Rollout("coinrun", 1, 0, 0, "easy").games.states()[0]
    with pytest.raises(ProcgenStateError, match="not heist"):
        parse_heist_state(coinrun)


@pytest.mark.parametrize("mode", ["memory", "easy", "hard"])
def test_object_mask_is_exactly_what_the_objects_change_on_screen(mode):
    rollout = Rollout("heist", 32, 9, RANDOM_ACTIONS, mode)
    for _ in range(6):  # stay on the levels, so that agents pick up keys and icons show
        capture = rollout.run_round()
        rollout.keep[:] = True
    labels = label_capture(rollout, capture)
    assert (labels["object_mask"] > 0).any() and labels["held_keys"].any()
    for j, env in enumerate(capture.envs):
        changed = (capture.frames[j] != frame_without_objects(rollout, env)).any(axis=-1)
        assert np.array_equal(labels["object_mask"][j] > 0, changed), f"frame {j}"


def test_pixels_hidden_by_the_agent_are_not_object_pixels(memory_round):
    rollout, capture, _ = memory_round
    env = capture.envs[0]
    buf = rollout.games.states()[env]
    state = parse_heist_state(buf)
    # move the gem half under the agent, which is drawn after it
    gem = state.entities["type"] == GEM
    moved = patch_entities(buf, state, gem, x=state.agent["x"] + 0.3, y=state.agent["y"])
    frame = rollout.games.render_state(env, moved).copy()
    staged = Capture(envs=np.array([env]), frames=frame[None], level_seeds=capture.level_seeds[:1],
                     frames_on_level=np.ones(1, np.int64))
    mask = label_capture(rollout, staged)["object_mask"][0]
    changed = (frame != frame_without_objects(rollout, env)).any(axis=-1)
    uncovered, _, _ = object_masks(StateBatch.of([parse_heist_state(moved)]))
    rollout.games.render_state(env, buf)
    assert np.array_equal(mask > 0, changed)
    assert 0 < (mask == GEM_CLASS + 1).sum() < (uncovered[0] == GEM_CLASS + 1).sum()


def test_walls_are_the_maze_cells_around_the_agent(memory_round):
    rollout, capture, labels = memory_round
    for j, env in enumerate(capture.envs):
        state = parse_heist_state(rollout.games.states()[env])
        ax, ay = int(np.floor(state.agent["x"])), int(np.floor(state.agent["y"]))
        for row in range(9):
            for col in range(9):
                x, y = ax + col - 4, ay + 4 - row
                inside = 0 <= x < 23 and 0 <= y < 23
                assert labels["walls"][j, row, col] == (not inside or state.grid[y, x] == WALL_CELL)
    assert not labels["walls"][:, 4, 4].any()
