"""Late fusion of several models' scores on the same boxes (the paper's section II.B).

Strategies, per box and class, over the n models' logits:
- ``mean_prob``: average of the probabilities (after the sigmoid);
- ``mean_logit``: average of the logits, then the sigmoid (fusion before the sigmoid);
- ``topk_logit``: the paper's top-k fusion as we read it (k = max(1, n // 2), fusion before the
  sigmoid): per class, the k models with the best AP of that class on a validation split
  (:func:`select_topk`, from the members' evaluation files), their logits averaged;
- ``topk_box_logit``: per box and class, the average of the k largest of the n logits. With n <= 3
  (k = 1) it is a max over uncalibrated logits, where a weak model (audio gives every box of a
  keyframe one score) adds false positives; kept for comparison.
The fused "logit" written for further fusion is the logit of the fused probability.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.ava import formats
from pipeline.errors import InputError
from pipeline.scores import read_logits, sigmoid

STRATEGIES = ("mean_prob", "mean_logit", "topk_logit", "topk_box_logit")
#: Strategies that choose models per class by their AP on a validation split.
SELECTING = ("topk_logit",)


def top_k(n_models: int) -> int:
    """The paper's k = n // 2 (at least 1)."""
    return max(1, n_models // 2)


def select_topk(ap: np.ndarray) -> np.ndarray:
    """Per class, the k = n // 2 models of best AP: ``ap`` float [n_models, C] (NaN: the class has no
    validation ground truth, ranked last) -> bool [n_models, C]. Ties go to the model listed first."""
    n, classes = ap.shape
    ranked = np.where(np.isnan(ap), -np.inf, ap)
    order = np.argsort(-ranked, axis=0, kind="stable")[:top_k(n)]     # [k, C]
    chosen = np.zeros((n, classes), bool)
    chosen[order, np.arange(classes)[None, :]] = True
    return chosen


def fuse_probabilities(logits: np.ndarray, strategy: str, selection: np.ndarray | None = None) -> np.ndarray:
    """Fuse ``logits`` float [n_models, N, C] into probabilities float32 [N, C]; ``selection`` bool
    [n_models, C] (:func:`select_topk`): the models each class averages, for ``topk_logit``."""
    if strategy == "mean_prob":
        return sigmoid(logits).mean(axis=0).astype(np.float32)
    if strategy == "mean_logit":
        return sigmoid(logits.mean(axis=0))
    if strategy == "topk_logit":
        if selection is None or selection.shape != (logits.shape[0], logits.shape[2]):
            raise ValueError("topk_logit needs the models chosen per class (bool [n_models, C]) from validation AP")
        weights = selection[:, None, :].astype(np.float64)
        return sigmoid((logits * weights).sum(axis=0) / weights.sum(axis=0))
    if strategy == "topk_box_logit":
        top = np.sort(logits, axis=0)[-top_k(logits.shape[0]):]
        return sigmoid(top.mean(axis=0))
    raise ValueError(f"unknown fusion strategy {strategy!r}; expected one of {STRATEGIES}")


def read_class_ap(path: str | Path, label_map: formats.LabelMap) -> np.ndarray:
    """AP per class float [C] (label-map order; NaN where the class had no ground truth) of an
    evaluation file (``results/eval/{model}/{split}.json``)."""
    try:
        per_class = json.loads(Path(path).read_text())["per_class"]
    except (OSError, ValueError, KeyError) as err:
        raise InputError(path, f"not an evaluation file with per_class AP: {err}") from None
    missing = [a for a in label_map.ids if str(a) not in per_class]
    if missing:
        raise InputError(path, f"no AP for classes {missing[:5]} of the label map")
    return np.array([np.nan if per_class[str(a)] is None else float(per_class[str(a)]) for a in label_map.ids])


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
