"""The oracle direction in Heist: the first step of a shortest path to the agent's current goal.

The goal is the gem when it is reachable through open cells and doors whose key is held, else
the nearest reachable key not yet held. The direction is an evaluation label (the policy probe
of ``training/metrics.py`` asks how well an encoding tells it); training never sees it.

Cells are (x, y) with y pointing up, as in the emulator: a door sits on its cell, a key or the
gem inside one, and the agent is in the cell that holds its centre.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from gym_autoencoder.procgen_state import GEM, KEY, LOCK, WALL_CELL, HeistState

DIRECTIONS = ("up", "down", "left", "right")
STEPS = ((0, 1), (0, -1), (-1, 0), (1, 0))  # (dx, dy) of each direction
NO_DIRECTION = -1  # the agent stands on its goal's cell, or no goal is reachable

Cell = tuple[int, int]


@dataclass(frozen=True)
class Maze:
    """What decides the oracle direction: open cells, doors and keys by colour, the gem, held keys."""

    open: np.ndarray  # (height, width) bool, open[y, x]: not a wall
    agent: Cell
    gem: Cell | None = None
    doors: dict[Cell, int] = field(default_factory=dict)  # cell -> colour of a closed door
    keys: dict[Cell, int] = field(default_factory=dict)  # cell -> colour of a key still lying there
    held: tuple[bool, ...] = (False, False, False)  # blue, green, red

    @classmethod
    def of(cls, state: HeistState) -> Maze:
        """The maze of a parsed Heist state; entities about to be erased (a taken key, an opened
        door) no longer count."""
        live = state.entities[state.entities["will_erase"] == 0]

        def cells(kind: int) -> dict[Cell, int]:
            chosen = live[live["type"] == kind]
            return {(int(x), int(y)): int(colour)
                    for x, y, colour in zip(np.floor(chosen["x"]), np.floor(chosen["y"]), chosen["image_theme"])}

        gems = list(cells(GEM))
        agent = state.agent
        return cls(
            open=state.grid != WALL_CELL, agent=(int(np.floor(agent["x"])), int(np.floor(agent["y"]))),
            gem=gems[0] if gems else None, doors=cells(LOCK), keys=cells(KEY),
            held=tuple(bool(h) for h in state.has_keys),
        )

    def passable(self, cell: Cell) -> bool:
        x, y = cell
        height, width = self.open.shape
        if not (0 <= x < width and 0 <= y < height and self.open[y, x]):
            return False
        colour = self.doors.get(cell)
        return colour is None or self.held[colour]


def first_step(maze: Maze) -> int:
    """The index in DIRECTIONS of the first step towards the goal, or NO_DIRECTION.

    One breadth-first search from the agent's cell; neighbours are tried in DIRECTIONS order, so
    among shortest paths the first step is fixed.
    """
    first: dict[Cell, int] = {maze.agent: NO_DIRECTION}  # the first step of the path found to a cell
    order = [maze.agent]
    queue = deque(order)
    while queue:
        x, y = queue.popleft()
        for direction, (dx, dy) in enumerate(STEPS):
            cell = (x + dx, y + dy)
            if cell not in first and maze.passable(cell):
                first[cell] = direction if (x, y) == maze.agent else first[(x, y)]
                order.append(cell)
                queue.append(cell)
    if maze.gem in first:
        return first[maze.gem]
    wanted = [cell for cell in order if maze.keys.get(cell) is not None and not maze.held[maze.keys[cell]]]
    return first[wanted[0]] if wanted else NO_DIRECTION


def oracle_directions(states: list[HeistState]) -> np.ndarray:
    """(n,) int8 oracle direction of each state (labels.LABEL_ARRAYS["oracle_direction"])."""
    return np.array([first_step(Maze.of(state)) for state in states], np.int8)
