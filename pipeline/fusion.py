"""Late fusion of several models' scores on the same boxes (the paper's section II.B).

Strategies, per box and class, over the n models' logits:
- ``mean_prob``: average of the probabilities (after the sigmoid);
- ``mean_logit``: average of the logits, then the sigmoid (fusion before the sigmoid);
- ``topk_logit``: average of the k = max(1, n // 2) largest logits, then the sigmoid (the paper's
  top-k fusion, which it found best with fusion before the sigmoid).
The fused "logit" written for further fusion is the logit of the fused probability.
"""

from __future__ import annotations

import numpy as np

from pipeline.ava import formats
from pipeline.errors import InputError
from pipeline.scores import read_logits, sigmoid

STRATEGIES = ("mean_prob", "mean_logit", "topk_logit")


def fuse_probabilities(logits: np.ndarray, strategy: str) -> np.ndarray:
    """Fuse ``logits`` float [n_models, N, C] into probabilities float32 [N, C]."""
    if strategy == "mean_prob":
        return sigmoid(logits).mean(axis=0).astype(np.float32)
    if strategy == "mean_logit":
        return sigmoid(logits.mean(axis=0))
    if strategy == "topk_logit":
        k = max(1, logits.shape[0] // 2)
        top = np.sort(logits, axis=0)[-k:]
        return sigmoid(top.mean(axis=0))
    raise ValueError(f"unknown fusion strategy {strategy!r}; expected one of {STRATEGIES}")


def probability_logit(p: np.ndarray) -> np.ndarray:
    """Inverse of the sigmoid, clipped away from 0 and 1: float32, same shape."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p)).astype(np.float32)


def same_boxes(reference: formats.AvaRows, other: formats.AvaRows) -> bool:
    return (len(reference) == len(other) and np.array_equal(reference.video_id, other.video_id)
            and np.array_equal(reference.timestamp, other.timestamp) and np.array_equal(reference.box, other.box))


def load_aligned(paths: list[str], label_map: formats.LabelMap) -> tuple[formats.AvaRows, np.ndarray]:
    """Read every model's logits; they must score exactly the same boxes. Returns boxes [N] and logits [n, N, C]."""
    boxes, first = read_logits(paths[0], label_map)
    stacked = [first]
    for path in paths[1:]:
        other_boxes, logits = read_logits(path, label_map)
        if not same_boxes(boxes, other_boxes):
            raise InputError(path, f"scores other boxes than {paths[0]} ({len(other_boxes)} against {len(boxes)} rows): "
                                   "fused models must predict on the same detections")
        stacked.append(logits)
    return boxes, np.stack(stacked)
