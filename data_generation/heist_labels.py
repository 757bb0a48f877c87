"""Exact labels for captured Heist frames, read from the emulator state (see labels.LABEL_ARRAYS).

Labelling runs in two steps so that the costly one can run in other processes:
``draft_labels`` needs only the frames' emulator states (a pure function of them), and
``settle_labels`` clears the object pixels the agent hides, which needs the game that drew
the frames (``data_generation.label_pool`` spreads the drafts, or their costliest part
``path_labels``, over worker processes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

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
from gym_autoencoder.data_generation.labels import LABEL_ARRAYS, VISIBLE_FRACTION, WALLS_RADIUS
from gym_autoencoder.data_generation.procgen_rollout import Capture, Rollout
from gym_autoencoder.procgen_batch import ProcgenBatch
from gym_autoencoder.procgen_state import WALL_CELL, HeistState, parse_heist_state, patch_entities


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


@dataclass
class Redraw:
    """A frame whose occluders touch object pixels: its state without objects, and the occluders' pixels."""

    frame: int  # row of the frame in its batch
    without_objects: bytes  # the frame's emulator state with every key, lock and gem moved away
    region: np.ndarray  # (64, 64) bool pixels inside the boxes of the agent and the held-key icons


@dataclass
class DraftLabels:
    """Labels of a batch of frames before occlusion: ``object_mask`` still holds hidden pixels."""

    labels: dict[str, np.ndarray]  # the labels.LABEL_ARRAYS rows except visible and pixel_counts
    full_counts: np.ndarray  # (n, 7) int32 pixels of each present object's whole sprite
    redraws: list[Redraw]


def _path_labels(parsed: Sequence[HeistState], batch: StateBatch) -> dict[str, np.ndarray]:
    return {"walls": walls_around(batch), "oracle_direction": oracle_directions(list(parsed))}


def path_labels(parsed: Sequence[HeistState]) -> dict[str, np.ndarray]:
    """``walls`` and ``oracle_direction`` of frames from their parsed states: the costliest labels
    (the oracle's path search), which no choice of the balanced generator needs."""
    return _path_labels(parsed, StateBatch.of(list(parsed)))


def join_rows(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Label rows of consecutive batches as one set of rows."""
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def draft_labels(states: Sequence[bytes], parsed: Sequence[HeistState], paths: bool = True) -> DraftLabels:
    """The labels of the frames whose emulator states are ``states`` (``parsed``: those parsed),
    before occlusion (without ``path_labels`` unless ``paths``)."""
    batch = StateBatch.of(list(parsed))
    mask, full_counts, object_xy = object_masks(batch)
    frames, boxes = occluder_boxes(batch)
    redraws = []
    for j in np.unique(frames[boxes_touching(mask, frames, boxes)]):
        state = parsed[j]
        is_object = object_classes(state.entities["type"], state.entities["image_theme"]) >= 0
        redraws.append(Redraw(int(j), patch_entities(states[j], state, is_object, x=-1000.0),
                              box_region(boxes[frames == j])))
    labels = {
        "level_seeds": np.array([s.level_seed for s in parsed], np.int64),
        "object_mask": mask,
        "object_xy": object_xy,
        "agent_xy": batch.agent_xy,
        "held_keys": np.stack([s.has_keys for s in parsed]),
        "level_steps": np.array([s.cur_time for s in parsed], np.int32),
        **(_path_labels(parsed, batch) if paths else {}),
    }
    return DraftLabels(labels, full_counts, redraws)


def draft_states(states: Sequence[bytes]) -> DraftLabels:
    """``draft_labels`` of frames from their emulator states alone (what a labelling worker is sent)."""
    return draft_labels(states, [parse_heist_state(buf) for buf in states])


def join_drafts(parts: Sequence[DraftLabels]) -> DraftLabels:
    """Drafts of consecutive batches as one draft."""
    starts = np.cumsum([0] + [len(part.full_counts) for part in parts[:-1]])
    redraws = [replace(redraw, frame=redraw.frame + int(start)) for part, start in zip(parts, starts)
               for redraw in part.redraws]
    return DraftLabels(join_rows([part.labels for part in parts]),
                       np.concatenate([part.full_counts for part in parts]), redraws)


def in_label_order(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``rows`` in the order of labels.LABEL_ARRAYS (the order of the arrays in a label file)."""
    return {name: rows[name] for name in LABEL_ARRAYS if name in rows}


def settle_labels(
    draft: DraftLabels, games: ProcgenBatch, capture: Capture, restore: Sequence[bytes]
) -> dict[str, np.ndarray]:
    """The labels of ``capture`` from their draft (rows in label order).

    Inside the occluders' boxes of a redrawn frame an object pixel stays only where the objects
    change the frame. Each redraw uses the game that showed the frame, which is then set back
    to its state in ``restore`` (one per frame: the frame's own state, or the game's state now
    when it has played on since).
    """
    mask = draft.labels["object_mask"]
    for redraw in draft.redraws:
        j, env = redraw.frame, capture.envs[redraw.frame]
        without = games.render_state(env, redraw.without_objects)
        games.render_state(env, restore[j])
        unchanged = (capture.frames[j] == without).all(axis=-1)
        mask[j][redraw.region & unchanged] = 0
    if not np.array_equal(draft.labels["level_seeds"], capture.level_seeds):
        raise RuntimeError("emulator states and observations disagree on level seeds")
    counts = pixel_counts(mask)
    visible = (counts > 0) & (counts >= VISIBLE_FRACTION * draft.full_counts)
    return in_label_order({**draft.labels, "visible": visible, "pixel_counts": counts})


def label_capture(rollout: Rollout, capture: Capture) -> dict[str, np.ndarray]:
    """Labels of every frame in ``capture`` (a round of a Heist rollout), one row per frame."""
    states = rollout.games.states()
    captured = [states[i] for i in capture.envs]
    return settle_labels(draft_states(captured), rollout.games, capture, captured)
