"""Box geometry for normalized x1, y1, x2, y2 boxes."""

from __future__ import annotations

import numpy as np


def area(boxes: np.ndarray) -> np.ndarray:
    """[N] areas of [N, 4] x1, y1, x2, y2 boxes, (y2 - y1) * (x2 - x1) without +1 (negative if inverted)."""
    return (boxes[..., 3] - boxes[..., 1]) * (boxes[..., 2] - boxes[..., 0])


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N] IoU of row-aligned boxes a [N, 4] and b [N, 4] (float64 when either is).

    The arithmetic is that of the official AVA evaluator, operation for operation, so the same inputs give
    bit-identical values: intersection = max(0, min(y2) - max(y1)) * max(0, min(x2) - max(x1)),
    union = (area(a) + area(b)) - intersection, IoU = intersection / union.
    """
    heights = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0)
    widths = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0)
    intersection = heights * widths
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersection / (area(a) + area(b) - intersection)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, M] IoU between boxes a [N, 4] and b [M, 4] (x1, y1, x2, y2), same arithmetic as :func:`pairwise_iou`.

    Boxes that do not overlap have IoU 0; a pair whose union is 0 (two empty boxes) gives NaN.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    return pairwise_iou(a[:, None, :], b[None, :, :])
