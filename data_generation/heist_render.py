"""Which pixels of a 64x64 Heist frame show each key, lock and gem, computed from the state.

Procgen draws observations without antialiasing: every sprite goes through Qt 5's
nearest-neighbour scaler. This module repeats that computation for a batch of states at once:
float32 screen rectangles exactly as procgen's C++ computes them (``prepare_for_drawing``,
``get_screen_rect``), then the fixed-point sampling of Qt's ``qt_scale_image_32bit``, on the
sprites' alpha channels. A pixel belongs to an object when its sprite puts a non-transparent
pixel there.

Only the agent and the held-key icons, drawn after the objects and rotated, can cover an object.
``occluder_boxes`` bounds them; frames where they touch object pixels are settled by rendering
the state again without the objects (``heist_labels.settle_occlusion``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from gym_autoencoder.data_generation.labels import OBJECT_CLASSES
from gym_autoencoder.procgen_games import import_procgen
from gym_autoencoder.procgen_state import ENTITY_DTYPE, GEM, HELD_KEY_ICON, KEY, LOCK, HeistState

FRAME_SIZE = 64
NUM_CLASSES = len(OBJECT_CLASSES)
# Sprite files per object class (procgen src/games/heist.cpp, asset_for_type), in OBJECT_CLASSES order.
SPRITE_FILES = (
    "misc_assets/keyBlue.png",
    "misc_assets/keyGreen.png",
    "misc_assets/keyRed.png",
    "misc_assets/lock_blue.png",
    "misc_assets/lock_green.png",
    "misc_assets/lock_red.png",
    "misc_assets/gemYellow.png",
)
assert len(SPRITE_FILES) == NUM_CLASSES
WINDOW = 12  # widest sprite on screen: a lock, 8 px in memory mode, 7.1 px in easy mode, + rounding


def object_classes(types: np.ndarray, themes: np.ndarray) -> np.ndarray:
    """Index into OBJECT_CLASSES of each entity (key theme t -> t, lock -> 3 + t, gem -> 6), else -1."""
    classes = np.full(types.shape, -1, np.int64)
    classes[types == KEY] = themes[types == KEY]
    classes[types == LOCK] = 3 + themes[types == LOCK]
    classes[types == GEM] = 6
    return classes


@lru_cache(maxsize=1)
def sprite_images() -> tuple[np.ndarray, ...]:
    """RGBA uint8 sprite images from procgen's assets, in OBJECT_CLASSES order."""
    import cv2

    root = os.path.join(os.path.dirname(import_procgen().__file__), "data", "assets")
    images = []
    for name in SPRITE_FILES:
        bgra = cv2.imread(os.path.join(root, name), cv2.IMREAD_UNCHANGED)
        if bgra is None or bgra.ndim != 3 or bgra.shape[2] != 4:
            raise FileNotFoundError(f"procgen sprite {name} is missing or has no alpha channel")
        images.append(np.ascontiguousarray(bgra[..., [2, 1, 0, 3]]))
    return tuple(images)


@lru_cache(maxsize=1)
def _alpha_atlas() -> tuple[np.ndarray, np.ndarray]:
    """(7, H, W) bool "drawn" maps padded with False, and the (7, 2) true sprite shapes."""
    images = sprite_images()
    shapes = np.array([image.shape[:2] for image in images], np.int64)
    atlas = np.zeros((NUM_CLASSES, *shapes.max(axis=0)), bool)
    for k, image in enumerate(images):
        atlas[k, : image.shape[0], : image.shape[1]] = image[..., 3] > 0
    return atlas, shapes


@dataclass(frozen=True)
class StateBatch:
    """The states of a batch of frames with their entities stacked, for vectorised drawing."""

    states: list[HeistState]
    entities: np.ndarray  # every frame's entity records, frame after frame
    frame_of: np.ndarray  # (len(entities),) frame index of each entity
    agent_xy: np.ndarray  # (n, 2) float32
    view: np.ndarray  # (n, 4) float32 unit, view_dim, x_off, y_off (procgen's prepare_for_drawing)

    @classmethod
    def of(cls, states: list[HeistState]) -> StateBatch:
        entities = np.frombuffer(b"".join(s.entities.tobytes() for s in states), ENTITY_DTYPE)
        counts = [len(s.entities) for s in states]
        agent_rows = np.cumsum([0, *counts[:-1]]) + [s.agent_index for s in states]
        agent_xy = np.stack([entities["x"][agent_rows], entities["y"][agent_rows]], axis=1)
        return cls(states, entities, np.repeat(np.arange(len(states)), counts), agent_xy,
                   _view(states, agent_xy))

    def __len__(self) -> int:
        return len(self.states)


def _view(states: list[HeistState], agent_xy: np.ndarray) -> np.ndarray:
    f32 = np.float32
    centred = np.array([s.center_agent for s in states])
    sizes = np.array([s.grid.shape for s in states], f32)  # (main_height, main_width)
    visibility = np.where(centred, [s.visibility for s in states], sizes.max(axis=1)).astype(f32)
    center_x = np.where(centred, agent_xy[:, 0], sizes[:, 1] * f32(0.5)).astype(f32)
    center_y = np.where(centred, agent_xy[:, 1], sizes[:, 0] * f32(0.5)).astype(f32)
    unit = f32(64) / visibility
    view_dim = (64.0 / unit.astype(np.float64)).astype(f32)
    half = view_dim / f32(2)
    return np.stack([unit, view_dim, unit * (center_x - half), unit * (center_y - half)], axis=1)


def screen_rects(x: np.ndarray, y: np.ndarray, rx: np.ndarray, ry: np.ndarray, view: np.ndarray) -> np.ndarray:
    """(n, 4) float64 left, top, width, height of world-coordinate entities, float32 as in C++."""
    unit, view_dim, x_off, y_off = view.T
    left = (x - rx) * unit - x_off
    top = (view_dim - (y + ry)) * unit + y_off
    return np.stack([left, top, (rx * np.float32(2)) * unit, (ry * np.float32(2)) * unit], 1).astype(np.float64)


def _qround(values: np.ndarray) -> np.ndarray:
    return np.floor(values + 0.5).astype(np.int64)


def sample_sprites(rects: np.ndarray, shapes: np.ndarray, clip: bool) -> tuple[np.ndarray, ...]:
    """Qt's nearest-neighbour scaling of sprites of ``shapes`` (n, 2) into ``rects`` (n, 4).

    Returns destination rows and columns (n, WINDOW), the source rows and columns they sample,
    and validity masks for rows and columns. ``clip`` cuts the destination to the frame, as Qt does.
    """
    left, top, width, height = rects.T
    src_h, src_w = shapes[:, 0], shapes[:, 1]
    sx, sy = src_w / width, src_h / height
    ix, iy = np.trunc(65536 * sx).astype(np.int64), np.trunc(65536 * sy).astype(np.int64)
    x1, y1 = _qround(left), _qround(top)
    x2, y2 = _qround(left + width) - 1, _qround(top + height) - 1
    if clip:
        x1, y1 = np.maximum(x1, 0), np.maximum(y1, 0)
        x2, y2 = np.minimum(x2, FRAME_SIZE - 1), np.minimum(y2, FRAME_SIZE - 1)
    w, h = x2 - x1 + 1, y2 - y1 + 1
    if max(w.max(initial=0), h.max(initial=0)) > WINDOW:
        raise ValueError(f"a sprite spans more than {WINDOW} pixels; raise WINDOW")
    base_x = np.ceil((x1 + 0.5 - left) * sx * 65536).astype(np.int64) - 1
    base_y = np.ceil((y1 + 0.5 - top) * sy * 65536).astype(np.int64) - 1
    h = h - (((base_y + iy * (h - 1)) >> 16) >= src_h)  # Qt's guard against rounding past the image
    w = w - (((base_x + ix * (w - 1)) >> 16) >= src_w)
    steps = np.arange(WINDOW, dtype=np.int64)
    src_rows = (base_y[:, None] + iy[:, None] * steps) >> 16
    src_cols = (base_x[:, None] + ix[:, None] * steps) >> 16
    row_ok = steps < h[:, None]
    col_ok = steps < w[:, None]
    return y1[:, None] + steps, x1[:, None] + steps, src_rows, src_cols, row_ok, col_ok


def _drawn(classes: np.ndarray, src_rows, src_cols, row_ok, col_ok) -> np.ndarray:
    """(n, WINDOW, WINDOW) bool: the sprite is non-transparent at each sampled source pixel."""
    atlas, _ = _alpha_atlas()
    rows = np.clip(src_rows, 0, atlas.shape[1] - 1)
    cols = np.clip(src_cols, 0, atlas.shape[2] - 1)
    drawn = atlas[classes[:, None, None], rows[:, :, None], cols[:, None, :]]
    return drawn & row_ok[:, :, None] & col_ok[:, None, :]


def object_masks(batch: StateBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Object pixels of a batch of frames, before occlusion by the agent or icons.

    Returns ``mask`` (n, 64, 64) uint8 (0 none, k + 1 object class k), ``full_counts`` (n, 7) int32
    (pixels each present object's whole sprite would cover, clipping aside; 0 when absent) and
    ``object_xy`` (n, 7, 2) float32 world position of each object (NaN when not in the level).
    """
    n = len(batch)
    classes = object_classes(batch.entities["type"], batch.entities["image_theme"])
    objects = batch.entities[classes >= 0]
    frames, classes = batch.frame_of[classes >= 0], classes[classes >= 0]
    object_xy = np.full((n, NUM_CLASSES, 2), np.nan, np.float32)
    object_xy[frames, classes] = np.stack([objects["x"], objects["y"]], axis=1)

    rects = screen_rects(objects["x"], objects["y"], objects["rx"], objects["ry"], batch.view[frames])
    _, shapes = _alpha_atlas()
    full = _drawn(classes, *sample_sprites(rects, shapes[classes], clip=False)[2:])
    full_counts = np.zeros((n, NUM_CLASSES), np.int32)
    full_counts[frames, classes] = full.sum(axis=(1, 2))

    mask = np.zeros((n, FRAME_SIZE, FRAME_SIZE), np.uint8)
    on_screen = (
        (rects[:, 0] + rects[:, 2] > -1) & (rects[:, 0] < FRAME_SIZE + 1)
        & (rects[:, 1] + rects[:, 3] > -1) & (rects[:, 1] < FRAME_SIZE + 1)
    )
    if on_screen.any():
        frames, classes, rects = frames[on_screen], classes[on_screen], rects[on_screen]
        dst_rows, dst_cols, *samples = sample_sprites(rects, shapes[classes], clip=True)
        drawn = _drawn(classes, *samples)
        o, i, j = np.nonzero(drawn)  # objects never overlap: each lies in its own maze cell
        mask[frames[o], dst_rows[o, i], dst_cols[o, j]] = classes[o] + 1
    return mask, full_counts, object_xy


def occluder_boxes(batch: StateBatch) -> tuple[np.ndarray, np.ndarray]:
    """Pixel boxes that surely hold the agent and each drawn held-key icon, whatever the rotation.

    Returns the frame index (m,) and the box (m, 4) int64 row0, row1, col0, col1 (ends exclusive)
    of every such entity.
    """
    ents, frames = batch.entities, batch.frame_of
    held = np.stack([s.has_keys for s in batch.states])[frames, np.clip(ents["image_theme"], 0, 2)]
    drawn = (ents["render_z"] > 0) & ((ents["type"] != HELD_KEY_ICON) | held)
    ents, frames = ents[drawn], frames[drawn]
    view = batch.view[frames]
    rects = screen_rects(ents["x"], ents["y"], ents["rx"], ents["ry"], view)
    # icons use get_abs_rect: x, y in screen fractions, top at y + ry spanning 2 ry downwards
    scale = (view[:, 0] * view[:, 1]).astype(np.float64)
    absolute = ents["use_abs_coords"] > 0
    abs_rects = np.stack(
        [(ents["x"] - ents["rx"]) * scale, (ents["y"] + ents["ry"]) * scale,
         2 * ents["rx"] * scale, 2 * ents["ry"] * scale], axis=1,
    )
    rects[absolute] = abs_rects[absolute]
    cx, cy = rects[:, 0] + rects[:, 2] / 2, rects[:, 1] + rects[:, 3] / 2
    half = np.hypot(rects[:, 2], rects[:, 3]) / 2 + 1.5  # rotation stays inside the circumcircle
    boxes = np.stack([np.floor(cy - half), np.ceil(cy + half), np.floor(cx - half), np.ceil(cx + half)], 1)
    return frames, np.clip(boxes, 0, FRAME_SIZE).astype(np.int64)


def boxes_touching(mask: np.ndarray, frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(m,) bool: box i holds a nonzero pixel of ``mask[frames[i]]``."""
    has_objects = mask.reshape(len(mask), -1).any(axis=1)
    touching = np.zeros(len(frames), bool)
    for i in np.flatnonzero(has_objects[frames]):
        r0, r1, c0, c1 = boxes[i]
        touching[i] = mask[frames[i], r0:r1, c0:c1].any()
    return touching


def box_region(boxes: np.ndarray) -> np.ndarray:
    """(64, 64) bool union of pixel boxes (m, 4) row0, row1, col0, col1."""
    region = np.zeros((FRAME_SIZE, FRAME_SIZE), bool)
    for r0, r1, c0, c1 in boxes:
        region[r0:r1, c0:c1] = True
    return region


def pixel_counts(mask: np.ndarray) -> np.ndarray:
    """(n, 7) int32 pixels of each object class in (n, 64, 64) masks."""
    n = len(mask)
    offsets = (np.arange(n, dtype=np.int64) * (NUM_CLASSES + 1))[:, None, None]
    counts = np.bincount((mask + offsets).ravel(), minlength=n * (NUM_CLASSES + 1))
    return counts.reshape(n, NUM_CLASSES + 1)[:, 1:].astype(np.int32)
