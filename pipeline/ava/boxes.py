"""IoU of normalized x1, y1, x2, y2 boxes, with the official AVA evaluator's arithmetic.

Operation for operation: areas without +1, intersection = max(0, min(y2) - max(y1)) * max(0, min(x2) - max(x1)),
union = (area(a) + area(b)) - intersection, IoU = intersection / union; so the same inputs give bit-identical
values. :func:`iou_matrix` (every pair) is ``torchvision.ops.box_iou``, whose arithmetic this is;
:func:`pairwise_iou` (row-aligned pairs, the evaluator's) is the same arithmetic in numpy, so that the evaluator
does not import torch (about 3 s and 800 MB for one evaluation). ``tests/test_ava_formats.py`` checks both
against the hand arithmetic, bit for bit, in float32 and float64.

Numpy arrays go in and come out; float32 stays float32 and float64 stays float64 (float64 when either input
is). Boxes that do not overlap have IoU 0; a pair whose union is 0 (two empty boxes) gives NaN.
"""

from __future__ import annotations

import numpy as np


def area(boxes: np.ndarray) -> np.ndarray:
    """[...] areas of [..., 4] x1, y1, x2, y2 boxes, (y2 - y1) * (x2 - x1) without +1 (negative if inverted)."""
    return (boxes[..., 3] - boxes[..., 1]) * (boxes[..., 2] - boxes[..., 0])


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N] IoU of row-aligned boxes a [N, 4] and b [N, 4] (float64 when either is)."""
    heights = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0)
    widths = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0)
    intersection = heights * widths
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersection / (area(a) + area(b) - intersection)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, M] IoU between boxes a [N, 4] and b [M, 4] (x1, y1, x2, y2), by ``torchvision.ops.box_iou``.

    Float32 and float64 boxes keep their type; other types are read as float64.
    """
    import torch   # here, not at the top: the evaluator imports this module for pairwise_iou only
    from torchvision.ops import box_iou

    def tensor(boxes: np.ndarray) -> torch.Tensor:
        boxes = np.asarray(boxes)
        if boxes.dtype not in (np.float32, np.float64):
            boxes = boxes.astype(np.float64)
        return torch.from_numpy(np.require(boxes, requirements=["C", "W"]))   # copies read-only arrays only

    return box_iou(tensor(a), tensor(b)).numpy()
