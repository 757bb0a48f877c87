"""Read Procgen's emulator states: the header every game's state begins with, and all of Heist's.

``ProcgenGym3Env.get_state()`` returns one byte string per game, written by procgen 0.10's
``serialize`` methods: packed little-endian int32/float32, strings as length + bytes, and the end
marker 0xCAFECAFE. Reading it gives exact ground truth (the time limit, entity positions, colours,
held keys, the maze) instead of guesses from pixels. docs/procgen_state.md describes the layout.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from gym_autoencoder.errors import GymAutoencoderError

END_MARKER = 0xCAFECAFE

# Entity record, 124 bytes, packed little-endian (procgen src/entity.cpp, Entity::serialize).
ENTITY_DTYPE = np.dtype(
    [
        ("x", "<f4"), ("y", "<f4"), ("vx", "<f4"), ("vy", "<f4"), ("rx", "<f4"), ("ry", "<f4"),
        ("type", "<i4"), ("image_type", "<i4"), ("image_theme", "<i4"), ("render_z", "<i4"),
        ("will_erase", "<i4"), ("collides", "<i4"),
        ("collision_margin", "<f4"), ("rotation", "<f4"), ("vrot", "<f4"),
        ("is_reflected", "<i4"), ("fire_time", "<i4"), ("spawn_time", "<i4"), ("life_time", "<i4"),
        ("expire_time", "<i4"), ("use_abs_coords", "<i4"),
        ("friction", "<f4"),
        ("smart_step", "<i4"), ("avoids_collisions", "<i4"), ("auto_erase", "<i4"),
        ("alpha", "<f4"), ("health", "<f4"), ("theta", "<f4"), ("grow_rate", "<f4"),
        ("alpha_decay", "<f4"), ("climber_spawn_x", "<f4"),
    ]
)
assert ENTITY_DTYPE.itemsize == 124

# Heist entity types (procgen src/games/heist.cpp) and grid cells.
AGENT, LOCK, KEY, GEM, HELD_KEY_ICON = 0, 1, 2, 9, 11
WALL_CELL = 51

_INT = struct.Struct("<i")
_HEADER_OPTIONS = struct.Struct("<12i5i")  # 12 options, grid_step, seed low/high, game_type, game_n
_STEP_BLOCK = struct.Struct("<f9if4i")  # reward ... is_waiting_for_step
_BASIC_MIDDLE_SIZE = 19 * 4  # 2 ints, 3 floats, 3 ints, 8 floats, 3 ints
_VIEW = struct.Struct("<3i6f")  # main_width, main_height, out_of_bounds_object, unit ... min_visibility

Parsed = TypeVar("Parsed")


class ProcgenStateError(GymAutoencoderError, ValueError):
    """A state byte string does not have the layout procgen 0.10 writes (for the game expected)."""


@dataclass(frozen=True)
class StateHeader:
    """The part every Procgen game's state begins with (class Game in procgen's src/game.cpp)."""

    game: str
    distribution_mode: int  # 0 easy, 1 hard, 2 extreme, 10 memory (exploration is hard on one level)
    center_agent: bool
    level_seed: int
    time_limit: int  # steps after which the episode ends (Game::timeout)
    cur_time: int  # steps taken on this level
    header_end: int  # byte offset where the game's own section starts


@dataclass(frozen=True)
class HeistState(StateHeader):
    """The parts of one Heist emulator state that decide what a frame shows."""

    entities: np.ndarray  # structured ENTITY_DTYPE, in draw order
    entity_offset: int  # byte offset of the first entity record in the state
    agent_index: int  # the agent's row in ``entities``
    grid: np.ndarray  # (main_height, main_width) int32 cells, grid[y, x], y pointing up
    visibility: float
    world_dim: int
    has_keys: np.ndarray  # (3,) bool: blue, green, red key held

    @property
    def agent(self) -> np.void:
        """The agent's entity record."""
        return self.entities[self.agent_index]


def read_state_header(buf: bytes) -> StateHeader:
    """The header of one ``get_state`` byte string of any game; ProcgenStateError names the fix."""
    return _parsing("Procgen", _header, buf)


def parse_heist_state(buf: bytes) -> HeistState:
    """Parse one ``get_state`` byte string of a Heist game; ProcgenStateError names the fix."""
    return _parsing("Heist", _heist, buf)


def _parsing(what: str, parse: Callable[[bytes], Parsed], buf: bytes) -> Parsed:
    try:
        return parse(buf)
    except (struct.error, ValueError, IndexError) as err:
        raise ProcgenStateError(
            f"cannot parse a {what} state ({err}); install procgen-mirror==0.10.7, "
            "the version whose state layout this parser reads"
        ) from None


def _string_end(buf: bytes, offset: int) -> int:
    (length,) = _INT.unpack_from(buf, offset)
    return offset + 4 + length


def _skip_random_generator(buf: bytes, offset: int) -> int:
    return _string_end(buf, offset + 4)  # int is_seeded, then the generator state as text


def _header(buf: bytes) -> StateHeader:
    if len(buf) < 8 or _INT.unpack_from(buf, len(buf) - 4)[0] & 0xFFFFFFFF != END_MARKER:
        raise ValueError("no 0xCAFECAFE end marker")
    (version,) = _INT.unpack_from(buf, 0)
    if version != 0:
        raise ValueError(f"serialize version {version}, not 0")
    name_end = _string_end(buf, 4)
    options = _HEADER_OPTIONS.unpack_from(buf, name_end)
    offset = _skip_random_generator(buf, name_end + _HEADER_OPTIONS.size)
    offset = _skip_random_generator(buf, offset)
    step = _STEP_BLOCK.unpack_from(buf, offset)
    return StateHeader(
        game=buf[8:name_end].decode(errors="replace"),
        distribution_mode=options[7],
        center_agent=bool(options[5]),
        level_seed=step[5],
        time_limit=step[4],
        cur_time=step[13],
        header_end=offset + _STEP_BLOCK.size,
    )


def _heist(buf: bytes) -> HeistState:
    header = _header(buf)
    if header.game != "heist":
        raise ValueError(f"state of game {header.game!r}, not heist")
    offset = header.header_end + 4  # grid_size
    (count,) = _INT.unpack_from(buf, offset)
    entity_offset = offset + 4
    entities = np.frombuffer(buf, ENTITY_DTYPE, count, entity_offset)
    agents = np.flatnonzero(entities["type"] == AGENT)
    if len(agents) != 1:
        raise ValueError(f"{len(agents)} agents among {count} entities")
    offset = _skip_random_generator(buf, entity_offset + count * ENTITY_DTYPE.itemsize + _BASIC_MIDDLE_SIZE)
    view = _VIEW.unpack_from(buf, offset)
    offset += _VIEW.size
    width, height, cells = struct.unpack_from("<3i", buf, offset)
    if width * height != cells:
        raise ValueError(f"grid {width}x{height} holds {cells} cells")
    grid = np.frombuffer(buf, "<i4", cells, offset + 12).reshape(height, width)
    offset += 12 + 4 * cells
    _num_keys, world_dim, held_count = struct.unpack_from("<3i", buf, offset)
    held = np.frombuffer(buf, "<i4", held_count, offset + 12) > 0
    if offset + 12 + 4 * held_count + 4 != len(buf):
        raise ValueError("trailing bytes before the end marker")
    has_keys = np.zeros(3, bool)
    has_keys[: min(held_count, 3)] = held[:3]
    return HeistState(
        **vars(header),
        entities=entities,
        entity_offset=entity_offset,
        agent_index=int(agents[0]),
        grid=grid,
        visibility=view[7],
        world_dim=world_dim,
        has_keys=has_keys,
    )


def patch_entities(buf: bytes, state: HeistState, select: np.ndarray, **fields: float) -> bytes:
    """A copy of the state ``buf`` (parsed as ``state``) with ``fields`` set on the selected entities.

    For example ``patch_entities(buf, state, state.entities["type"] == GEM, x=-1000.0)`` moves
    the gem out of sight; ``set_state`` with the result draws the frame without it.
    """
    patched = bytearray(buf)
    entities = np.frombuffer(patched, ENTITY_DTYPE, len(state.entities), state.entity_offset)
    for name, value in fields.items():
        entities[name][select] = value
    return bytes(patched)
