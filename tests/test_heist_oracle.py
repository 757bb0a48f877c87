"""The oracle direction: hand-made mazes with known answers, and real Heist states."""

from __future__ import annotations

import numpy as np
import pytest

from gym_autoencoder.data_generation.heist_oracle import DIRECTIONS, NO_DIRECTION, STEPS, Maze, first_step
from gym_autoencoder.data_generation.procgen_rollout import Rollout
from gym_autoencoder.procgen_state import parse_heist_state

BLUE, GREEN, RED = 0, 1, 2


def maze(rows: list[str], **kwargs) -> Maze:
    """A maze drawn north row first: '#' wall, anything else open; 'A' marks the agent, 'G' the gem."""
    drawn = np.array([list(row) for row in rows])[::-1]  # row 0 of the array is y = 0, the south
    at = {mark: (int(x), int(y)) for y, x in zip(*np.nonzero(drawn != "#")) for mark in drawn[y, x]}
    return Maze(open=drawn != "#", agent=at["A"], gem=at.get("G"), **kwargs)


def direction(m: Maze) -> str | None:
    step = first_step(m)
    return None if step == NO_DIRECTION else DIRECTIONS[step]


def test_a_corridor_leads_straight_to_the_gem():
    assert direction(maze(["#######",
                           "#A...G#",
                           "#######"])) == "right"
    assert direction(maze(["###",
                           "#G#",
                           "#.#",
                           "#A#",
                           "###"])) == "up"


def test_the_shortest_of_two_ways_is_taken():
    rows = ["#######",
            "#.....#",
            "#.###.#",
            "#A..G##",
            "#######"]
    assert direction(maze(rows)) == "right"


def test_a_door_without_its_key_sends_the_agent_to_the_key():
    rows = ["#####",
            "#...#",  # the blue key lies at (2, 3), up and right of the agent
            "#A#.#",
            "#.#G#",
            "#####"]
    door_before_gem = {(3, 2): BLUE}
    assert direction(maze(rows, doors=door_before_gem, keys={(2, 3): BLUE})) == "up"
    assert direction(maze(rows, doors=door_before_gem, held=(True, False, False))) == "up"  # door open: gem
    assert direction(maze(rows, doors={(3, 2): BLUE}, keys={(1, 1): GREEN})) == "down"  # only a green key
    assert direction(maze(rows, doors={(3, 2): BLUE})) is None  # no key to fetch: no way to the gem


def test_a_key_behind_a_door_is_out_of_reach_until_that_door_opens():
    rows = ["#########",
            "#.A.....#",
            "#########"]
    red_door = {(4, 1): RED}  # between the agent and the green key at (5, 1)
    assert direction(maze(rows, doors=red_door, keys={(5, 1): GREEN})) is None
    assert direction(maze(rows, doors=red_door, keys={(5, 1): GREEN, (1, 1): RED})) == "left"  # red first
    assert direction(maze(rows, doors=red_door, keys={(5, 1): GREEN}, held=(False, False, True))) == "right"


def test_the_nearest_key_not_held_is_the_goal_and_standing_on_it_has_no_direction():
    rows = ["#########",
            "#...A...#",
            "#########"]
    assert direction(maze(rows, keys={(1, 1): BLUE, (6, 1): GREEN})) == "right"
    assert direction(maze(rows, keys={(1, 1): BLUE, (6, 1): GREEN}, held=(False, True, False))) == "left"
    assert direction(maze(rows, keys={(4, 1): BLUE})) is None


@pytest.fixture(scope="module")
def real_mazes() -> list[Maze]:
    rollout = Rollout("heist", num_envs=32, seed=3, random_actions=20)
    mazes = []
    for _ in range(3):
        capture = rollout.run_round()
        states = rollout.games.states()
        mazes += [Maze.of(parse_heist_state(states[env])) for env in capture.envs]
    return mazes


def test_on_real_states_each_step_leads_one_cell_nearer_to_the_same_goal(real_mazes):
    directed = [m for m in real_mazes if first_step(m) != NO_DIRECTION]
    assert len(directed) >= 0.9 * len(real_mazes)
    assert len({first_step(m) for m in directed}) == 4
    for m in directed[:40]:
        path = [m.agent]
        while first_step(m) != NO_DIRECTION and len(path) < m.open.size:
            dx, dy = STEPS[first_step(m)]
            cell = (m.agent[0] + dx, m.agent[1] + dy)
            assert m.passable(cell)
            m = Maze(m.open, cell, m.gem, m.doors, m.keys, m.held)
            path.append(cell)
        assert len(set(path)) == len(path)  # no cell twice: every step shortens the way
        assert m.agent == m.gem or m.keys.get(m.agent) is not None
