"""A simple IoU tracker across keyframes: a box continues the track of the previous keyframe's box
it overlaps most, so that a person keeps one colour in the drawings."""

from __future__ import annotations

import numpy as np

IOU_TO_FOLLOW = 0.3      # least IoU with a box of the previous keyframe to continue its track
MAX_GAP_KEYFRAMES = 1    # a track missed at this many keyframes in a row may still be continued


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a [n, 4] and b [m, 4] (x1, y1, x2, y2): float64 [n, m]."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def track_ids(timestamps: np.ndarray, boxes: np.ndarray, iou_to_follow: float = IOU_TO_FOLLOW) -> np.ndarray:
    """A track id per box: timestamps int [N] (keyframes), boxes [N, 4] -> int64 [N], ids 0, 1, ... in
    order of first appearance.

    Keyframes are taken in time order; at each, box-track pairs are matched greedily by decreasing
    IoU with the track's last box (tracks seen within :data:`MAX_GAP_KEYFRAMES` keyframes), each
    side at most once; a box matched to nothing starts a new track.
    """
    timestamps = np.asarray(timestamps)
    ids = np.full(len(timestamps), -1, np.int64)
    last_box: dict[int, np.ndarray] = {}
    last_seen: dict[int, int] = {}
    next_id = 0
    for k, t in enumerate(np.unique(timestamps)):
        rows = np.flatnonzero(timestamps == t)
        alive = [i for i in last_box if k - last_seen[i] <= MAX_GAP_KEYFRAMES + 1]
        if alive and len(rows):
            iou = box_iou(boxes[rows], np.stack([last_box[i] for i in alive]))
            for flat in np.argsort(-iou, axis=None, kind="stable"):
                r, c = np.unravel_index(flat, iou.shape)
                if iou[r, c] < iou_to_follow:
                    break
                if ids[rows[r]] < 0 and alive[c] not in ids[rows]:
                    ids[rows[r]] = alive[c]
        for r in rows:
            if ids[r] < 0:
                ids[r], next_id = next_id, next_id + 1
            last_box[int(ids[r])] = np.asarray(boxes[r], np.float64)
            last_seen[int(ids[r])] = k
    return ids


def track_colour(track: int) -> tuple[int, int, int]:
    """A bright RGB colour of its own for each track id (hues a golden-ratio turn apart)."""
    hue = (track * 0.618033988749895 + 0.1) % 1.0
    h6 = hue * 6.0
    x = 1.0 - abs(h6 % 2.0 - 1.0)
    sector = int(h6) % 6
    r, g, b = [(1, x, 0), (x, 1, 0), (0, 1, x), (0, x, 1), (x, 0, 1), (1, 0, x)][sector]
    return tuple(int(round(40 + 215 * v)) for v in (r, g, b))
