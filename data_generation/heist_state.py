"""Parse the emulator state of a Procgen Heist game into numpy arrays.

``ProcgenGym3Env.callmethod("get_state")`` returns one byte string per environment, written by
procgen 0.10's ``serialize`` methods (src/game.cpp, src/basic-abstract-game.cpp, src/entity.cpp,
src/games/heist.cpp): packed little-endian int32/float32, strings as length + bytes, and the
end marker 0xCAFECAFE. Reading it gives exact ground truth (entity positions, colours, held
keys, the maze) instead of guesses from pixels.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

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


class HeistStateError(GymAutoencoderError, ValueError):
    """A state byte string does not have the layout of a procgen 0.10 Heist game."""


@dataclass(frozen=True)
class HeistState:
    """The parts of one Heist emulator state that decide what a frame shows."""

    level_seed: int
    distribution_mode: int
    center_agent: bool
    cur_time: int
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


def _string_end(buf: bytes, offset: int) -> int:
    (length,) = _INT.unpack_from(buf, offset)
    return offset + 4 + length


def _skip_random_generator(buf: bytes, offset: int) -> int:
    return _string_end(buf, offset + 4)  # int is_seeded, then the generator state as text


def parse_heist_state(buf: bytes) -> HeistState:
    """Parse one ``get_state`` byte string of a Heist environment.

    Raises HeistStateError (naming the fix) if the layout is not procgen 0.10's.
    """
    try:
        return _parse(buf)
    except (struct.error, ValueError, IndexError) as err:
        raise HeistStateError(
            f"cannot parse a Heist state ({err}); install procgen-mirror==0.10.7, "
            "the version whose state layout this parser reads"
        ) from None


def _parse(buf: bytes) -> HeistState:
    if len(buf) < 8 or _INT.unpack_from(buf, len(buf) - 4)[0] & 0xFFFFFFFF != END_MARKER:
        raise ValueError("no 0xCAFECAFE end marker")
    offset = 4  # serialize version
    name_end = _string_end(buf, offset)
    name = buf[offset + 4 : name_end]
    if name != b"heist":
        raise ValueError(f"state of game {name.decode(errors='replace')!r}, not heist")
    options = _HEADER_OPTIONS.unpack_from(buf, name_end)
    offset = _skip_random_generator(buf, name_end + _HEADER_OPTIONS.size)
    offset = _skip_random_generator(buf, offset)
    step = _STEP_BLOCK.unpack_from(buf, offset)
    offset += _STEP_BLOCK.size + 4  # + grid_size
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
        level_seed=step[5],
        distribution_mode=options[7],
        center_agent=bool(options[5]),
        cur_time=step[13],
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
