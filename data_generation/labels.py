"""The label contract shared by data generation, training and evaluation.

A dataset directory holds ``training_samples.npy`` / ``test_samples.npy`` (uint8 N x 64 x 64 x 3
RGB) and ``training_labels.npz`` / ``test_labels.npz``, whose row i labels frame i. For Heist
the label files hold the arrays of ``LABEL_ARRAYS``; for other games only ``level_seeds``.
The balanced generator adds ``target_class``.
"""

from __future__ import annotations

OBJECT_CLASSES: tuple[str, ...] = (
    "blue_key",
    "green_key",
    "red_key",
    "blue_lock",
    "green_lock",
    "red_lock",
    "gem",
)

# An object is visible when at least this share of its whole sprite's pixels is on screen and
# not covered by the agent: a quarter of a key, at any zoom (easy, hard and memory modes differ).
VISIBLE_FRACTION = 0.25

# Maze cells labelled around the agent: WALLS_RADIUS cells each way, so the whole 8 x 8-unit view
# of memory mode is covered.
WALLS_RADIUS = 4

LABEL_ARRAYS: dict[str, str] = {
    "level_seeds": "(N,) int64 procgen level seed of the frame; train and test share none",
    "visible": "(N, 7) bool object class k shows at least VISIBLE_FRACTION of its sprite",
    "pixel_counts": "(N, 7) int32 on-screen, uncovered sprite pixels of each object class",
    "object_mask": "(N, 64, 64) uint8 0 = no object, k + 1 = sprite pixel of object class k",
    "object_xy": "(N, 7, 2) float32 world x, y of each object class in the level, NaN if absent",
    "agent_xy": "(N, 2) float32 world x, y of the agent (y points up, 1 unit = 1 maze cell)",
    "held_keys": "(N, 3) bool blue, green, red key held (its icon is drawn top right)",
    "walls": "(N, 9, 9) bool wall cells around the agent's cell [4, 4]; row 0 is north (y + 4), "
    "column 0 is west (x - 4); cells outside the maze count as walls",
    "level_steps": "(N,) int32 steps since the level started",
    "oracle_direction": "(N,) int8 first step of a shortest path to the agent's goal (the gem if "
    "reachable, else the nearest reachable key not held): 0 up, 1 down, 2 left, 3 right, -1 none; "
    "an evaluation label (heist_oracle.py)",
}
TARGET_CLASS_DOC = "(N,) int8 the class frame i was drawn for: k, or -1 for a frame without objects"
