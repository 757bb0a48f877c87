"""Exact labels for captured Heist frames, read from the emulator state (see labels.LABEL_ARRAYS)."""

from __future__ import annotations

import numpy as np

from gym_autoencoder.data_generation.heist_render import (
    StateBatch,
    box_region,
    boxes_touching,
    object_classes,
    object_masks,
    occluder_boxes,
    pixel_counts,
)
from gym_autoencoder.data_generation.heist_oracle import oracle_directions
from gym_autoencoder.data_generation.labels import VISIBLE_FRACTION, WALLS_RADIUS
from gym_autoencoder.data_generation.procgen_rollout import Capture, Rollout
from gym_autoencoder.procgen_batch import ProcgenBatch
from gym_autoencoder.procgen_state import WALL_CELL, parse_heist_state, patch_entities


def walls_around(batch: StateBatch) -> np.ndarray:
    """(n, 9, 9) bool walls around each agent's cell, north row first (labels.LABEL_ARRAYS)."""
    r = WALLS_RADIUS
    grids = np.stack([s.grid for s in batch.states]) == WALL_CELL  # one distribution mode: one size
    padded = np.pad(grids, ((0, 0), (r, r), (r, r)), constant_values=True)  # outside = wall
    cell = np.floor(batch.agent_xy).astype(np.int64) + r
    offsets = np.arange(-r, r + 1)
    rows = cell[:, 1, None] - offsets  # north (larger y) first
    cols = cell[:, 0, None] + offsets
    frames = np.arange(len(batch))[:, None, None]
    return padded[frames, rows[:, :, None], cols[:, None, :]]


def settle_occlusion(
    games: ProcgenBatch, capture: Capture, states: list[bytes], batch: StateBatch, mask: np.ndarray
) -> None:
    """Clear the object pixels that the agent or a held-key icon hides.

    Frames where an occluder's box touches object pixels are drawn again without their objects;
    inside the boxes an object pixel stays only where the object changes the frame. The
    environment's state is restored afterwards.
    """
    frames, boxes = occluder_boxes(batch)
    touching = boxes_touching(mask, frames, boxes)
    for j in np.unique(frames[touching]):
        env, state, buf = capture.envs[j], batch.states[j], states[capture.envs[j]]
        is_object = object_classes(state.entities["type"], state.entities["image_theme"]) >= 0
        without = games.render_state(env, patch_entities(buf, state, is_object, x=-1000.0))
        games.render_state(env, buf)
        unchanged = (capture.frames[j] == without).all(axis=-1)
        mask[j][box_region(boxes[frames == j]) & unchanged] = 0


def label_capture(rollout: Rollout, capture: Capture) -> dict[str, np.ndarray]:
    """Labels of every frame in ``capture`` (a round of a Heist rollout), one row per frame."""
    states = rollout.games.states()
    parsed = [parse_heist_state(states[i]) for i in capture.envs]
    batch = StateBatch.of(parsed)
    mask, full_counts, object_xy = object_masks(batch)
    settle_occlusion(rollout.games, capture, states, batch, mask)
    counts = pixel_counts(mask)
    labels = {
        "level_seeds": np.array([s.level_seed for s in parsed], np.int64),
        "visible": (counts > 0) & (counts >= VISIBLE_FRACTION * full_counts),
        "pixel_counts": counts,
        "object_mask": mask,
        "object_xy": object_xy,
        "agent_xy": batch.agent_xy,
        "held_keys": np.stack([s.has_keys for s in parsed]),
        "walls": walls_around(batch),
        "level_steps": np.array([s.cur_time for s in parsed], np.int32),
        "oracle_direction": oracle_directions(parsed),
    }
    if not np.array_equal(labels["level_seeds"], capture.level_seeds):
        raise RuntimeError("emulator states and observations disagree on level seeds")
    return labels
