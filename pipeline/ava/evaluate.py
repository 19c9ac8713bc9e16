"""AVA frame-mAP at IoU 0.5, identical to the ActivityNet evaluator and vectorized.

Semantics (ActivityNet ``Evaluation/get_ava_performance.py`` and ``Evaluation/ava/``):

- rows whose class is not in the label map are dropped from both files;
- per keyframe at most ``capacity`` detection rows (box x class, across classes) are kept, the highest scored
  (50 by default); detections with x1 >= x2 or y1 >= y2 are dropped after that cut;
- 2019 form: excluded keyframes are removed from both sides; detections on keyframes without ground truth are
  false positives. 2020 form: no exclusions; detections on keyframes absent from the ground-truth file are ignored;
- per keyframe and class, detections in descending score each go to the ground-truth box of highest IoU
  (the first such box), and are true positives when that IoU >= 0.5 and the box is not taken yet;
- AP is the VOC all-points area under the precision made monotone; a class with ground truth and no
  detection has AP 0; classes without ground truth are left out of the mean.

Ties are resolved as the official code resolves them, not by a rule of our own: it keeps detections in a heap
of (score, action_id, y1, x1, y2, x2) tuples, orders each keyframe's detections by a stable sort of that heap on
descending score, orders ground truth by a stable sort of its heap on descending person_id, and ranks each
class by ``np.argsort(scores)[::-1]`` over the per-keyframe arrays concatenated in file order. Keyframes
where ties can change the outcome (equal scores within a class, equal scores at the capacity cut, a detection
equally close to two different boxes) replay that heap in Python; the per-class ranking calls the same
``np.argsort`` on an array in the same order. Everything else is vectorized.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ava.boxes import pairwise_iou
from pipeline.ava.formats import AvaRows, LabelMap, read_detections, read_excluded, read_ground_truth, read_label_map

VARIANTS = ("2019", "2020")
JSON_PR_POINTS = 200


@dataclass
class EvalResult:
    """Frame-mAP and what it is made of. Class dicts are keyed by action id, in label-map order."""

    mAP: float
    per_class: dict[int, float | None]                 # AP; None for classes without ground truth
    per_type: dict[str, float]                         # mAP per label type with ground truth
    n_gt: dict[int, int]
    n_det: dict[int, int]                              # detections evaluated (after cut, exclusions, drops)
    pr: dict[int, tuple[np.ndarray, np.ndarray]]       # precision, recall float64 [n_det], for classes with gt
    variant: str = "2019"
    capacity: int | None = 50
    iou_threshold: float = 0.5

    def to_json(self, label_map: LabelMap) -> dict[str, Any]:
        """JSON-ready dict; precision-recall curves thinned to at most JSON_PR_POINTS points per class."""
        return {
            "mAP": _json_float(self.mAP),
            "per_class": {str(a): _json_float(ap) for a, ap in self.per_class.items()},
            "per_class_name": {str(a): label_map.name(a) for a in self.per_class},
            "per_type": {t: _json_float(v) for t, v in self.per_type.items()},
            "n_gt": {str(a): n for a, n in self.n_gt.items()},
            "n_det": {str(a): n for a, n in self.n_det.items()},
            "pr": {str(a): _thin_curve(p, r) for a, (p, r) in self.pr.items()},
            "variant": self.variant,
            "capacity": self.capacity,
            "iou_threshold": self.iou_threshold,
        }


def _json_float(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _thin_curve(precision: np.ndarray, recall: np.ndarray) -> dict[str, list[float]]:
    """At most JSON_PR_POINTS evenly spaced points of a curve, its last point included."""
    n = len(precision)
    keep = np.unique(np.linspace(0, n - 1, min(n, JSON_PR_POINTS)).round().astype(np.int64)) if n else \
        np.zeros(0, np.int64)
    return {"precision": precision[keep].tolist(), "recall": recall[keep].tolist()}


# --------------------------------------------------------------------------------------------- keys

def _keyframe_codes(parts: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """int64 [N_i] keyframe code of each row of each (video_id [N_i] str, timestamp [N_i] int64) part.

    Equal codes mean the same (video_id, timestamp) across all parts; codes are dense (0 .. keyframes - 1).
    """
    number: dict[str, int] = {}
    video_codes = []
    for video_ids, _ in parts:
        encoded = pc.dictionary_encode(pa.array(video_ids, pa.string()))
        to_number = np.asarray([number.setdefault(v, len(number)) for v in encoded.dictionary.to_pylist()], np.int64)
        video_codes.append(to_number[encoded.indices.to_numpy()] if len(to_number) else np.zeros(0, np.int64))
    video_code = np.concatenate(video_codes)
    timestamps = np.concatenate([t for _, t in parts]).astype(np.int64)
    if len(video_code) == 0:
        return [np.zeros(0, np.int64) for _ in parts]
    t_min, t_max = int(timestamps.min()), int(timestamps.max())
    if len(number) * (t_max - t_min + 1) < 2 ** 62:
        codes = np.unique(video_code * (t_max - t_min + 1) + (timestamps - t_min), return_inverse=True)[1]
    else:
        codes = np.unique(np.stack([video_code, timestamps], axis=1), axis=0, return_inverse=True)[1].ravel()
    return np.split(codes, np.cumsum([len(v) for v, _ in parts])[:-1])


def _dense_first_seen(values: np.ndarray) -> np.ndarray:
    """int64 [N] ids 0.. of the distinct values of int64 [N] ``values``, numbered in order of first appearance."""
    _, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    number = np.empty(len(first), np.int64)
    number[np.argsort(first)] = np.arange(len(first))
    return number[inverse]


def _excluded_arrays(excluded: set[tuple[str, int]] | None) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(excluded or ())
    return np.asarray([k[0] for k in keys], dtype=str), np.asarray([k[1] for k in keys], dtype=np.int64)


# --------------------------------------------------------------------------------------------- official order

def _heap_order(entries: list[tuple], capacity: int | None) -> list[tuple]:
    """Replay of the official reader on one keyframe: the kept entries, in its output order.

    ``entries`` start with (score, action_id, y1, x1, y2, x2), in file order. The reader keeps a min-heap of at
    most ``capacity`` of them (a new entry replaces the smallest only when its score is strictly higher) and
    outputs the heap sorted stably by descending score.
    """
    heap: list[tuple] = []
    for entry in entries:
        if capacity is None or len(heap) < capacity:
            heapq.heappush(heap, entry)
        elif entry[0] > heap[0][0]:
            heapq.heapreplace(heap, entry)
    return sorted(heap, key=itemgetter(0), reverse=True)   # reverse=True keeps equal scores in heap order


def _replay(rows: np.ndarray, score: np.ndarray, action_id: np.ndarray, box: np.ndarray, frame: np.ndarray,
            capacity: int | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_heap_order` on the keyframes of ``rows`` (int64 [M] row indices, grouped by ``frame`` [M], file
    order within). Returns the kept rows (int64) and their rank in the official order of their keyframe."""
    b = box[rows]
    entries = list(zip(score[rows].astype(np.float64).tolist(), action_id[rows].tolist(), b[:, 1].tolist(),
                       b[:, 0].tolist(), b[:, 3].tolist(), b[:, 2].tolist(), rows.tolist()))
    starts, lengths = _segments(frame)
    kept: list[int] = []
    ranks: list[int] = []
    for lo, hi in zip(starts.tolist(), (starts + lengths).tolist()):
        group = entries[lo:hi]
        if len({e[:6] for e in group}) == len(group):    # the row index never decides a comparison
            out = [e[6] for e in _heap_order(group, capacity)]
        else:   # rows equal in every field: compare them as the official tuples do, then map them back
            positions: dict[tuple, list[int]] = defaultdict(list)
            for e in group:
                positions[e[:6]].append(e[6])
            out = [positions[e].pop() for e in _heap_order([e[:6] for e in group], capacity)]
        kept += out
        ranks += range(len(out))
    return np.asarray(kept, dtype=np.int64), np.asarray(ranks, dtype=np.int64)


def _segments(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start [G] and length [G] of each run of equal values in a sorted [N] array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    return starts, np.diff(np.r_[starts, len(sorted_keys)])


def _grouped_file_order(frame: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Row indices where ``selected`` [N] bool, grouped by ``frame`` [N], in file order within a group."""
    rows = np.flatnonzero(selected)
    return rows[np.argsort(frame[rows], kind="stable")]


def _select_detections(rows: np.ndarray, frame: np.ndarray, score: np.ndarray, action_id: np.ndarray,
                       box: np.ndarray, capacity: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The capacity cut and the official order within each keyframe.

    ``rows`` (int64 [N], ascending) are the label-map detections to consider, ``frame`` [N] their keyframe ids
    (int64, dense); score, action_id and box are the columns of all detections. Returns the positions in
    ``rows`` that are kept (int64 [K]) and their rank within their keyframe in the official order (int64 [K]).
    Keyframes with equal scores replay the official heap: equal scores decide which rows a cut keeps and,
    within a class, which detection is matched first.
    """
    n = len(rows)
    row_score = score[rows].astype(np.float64)
    by_score = np.argsort(-row_score)
    score_rank = np.empty(n, np.int64)       # dense rank of descending score: equal scores, equal ranks
    score_rank[by_score] = np.cumsum(np.r_[0, np.diff(row_score[by_score]) != 0])
    # (keyframe, rank) keys are unique except in keyframes with ties, which are replayed: any sort will do
    order = np.argsort(frame * (int(score_rank.max(initial=0)) + 1) + score_rank)
    sorted_frame = frame[order]
    starts, lengths = _segments(sorted_frame)
    rank = np.arange(n) - np.repeat(starts, lengths)
    keep = rank < capacity if capacity is not None else np.ones(n, bool)
    tied = np.flatnonzero((sorted_frame[1:] == sorted_frame[:-1]) & (score_rank[order][1:] == score_rank[order][:-1]))
    if len(tied) == 0:
        return order[keep], rank[keep]
    replay = np.isin(sorted_frame, sorted_frame[tied])
    positions = _grouped_file_order(frame, np.isin(frame, sorted_frame[tied]))
    kept, ranks = _replay(rows[positions], score, action_id, box, frame[positions], capacity)
    return np.r_[order[keep & ~replay], np.searchsorted(rows, kept)], np.r_[rank[keep & ~replay], ranks]


def _gt_rank(key: np.ndarray, score: np.ndarray, action_id: np.ndarray, box: np.ndarray,
             replay_keys: np.ndarray) -> np.ndarray:
    """int64 [N] rank of each ground-truth row in the official order of its keyframe.

    The official order is a stable sort on descending person_id (1.0 where the file has none) of the reader's
    heap. Outside ``replay_keys`` the heap part is taken as file order, which can differ from the official
    order only between boxes of equal person_id; the matching replays those keyframes where it matters.
    """
    n = len(key)
    order = np.lexsort((np.arange(n), -score, key))
    starts, lengths = _segments(key[order])
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, lengths)
    if len(replay_keys):
        rows = _grouped_file_order(key, np.isin(key, replay_keys))
        replayed, replayed_rank = _replay(rows, score, action_id, box, key[rows], None)
        rank[replayed] = replayed_rank
    return rank


# --------------------------------------------------------------------------------------------- matching

@dataclass
class _Match:
    tp: np.ndarray            # bool [N_det]
    ambiguous: np.ndarray     # bool [N_det]: best IoU >= threshold shared by different boxes


def _match(det_group: np.ndarray, det_box: np.ndarray, det_rank: np.ndarray,
           gt_group: np.ndarray, gt_box: np.ndarray, gt_rank: np.ndarray, threshold: float) -> _Match:
    """Greedy matching of every (keyframe, class) group at once.

    det_group, gt_group: int64 group ids; det_rank: processing order within a group (lower first);
    gt_rank: order of ground truth within a group (the first of equal IoUs wins, as np.argmax).
    A detection is a true positive when its best box has IoU >= threshold and no earlier detection of
    the group took that box; taking needs only the best box, so it is the first claim on it.
    """
    n_det = len(det_group)
    gt_order = np.lexsort((gt_rank, gt_group))
    # Groups numbered in sorted order; the ground truth of group k is gt_order[g_start[k]:][:g_count[k]].
    groups, inverse = np.unique(np.r_[gt_group[gt_order], det_group], return_inverse=True)
    g_count = np.bincount(inverse[:len(gt_order)], minlength=len(groups))
    g_start = np.cumsum(g_count) - g_count
    det_in_group = inverse[len(gt_order):]
    dets = np.flatnonzero(g_count[det_in_group])
    count = g_count[det_in_group[dets]]
    seg_start = np.cumsum(count) - count
    pair_det = np.repeat(np.arange(len(dets)), count)
    pair_gt = gt_order[np.repeat(g_start[det_in_group[dets]], count) + np.arange(len(pair_det)) - seg_start[pair_det]]
    iou = pairwise_iou(det_box[dets[pair_det]].astype(np.float64), gt_box[pair_gt].astype(np.float64))

    tp = np.zeros(n_det, bool)
    ambiguous = np.zeros(n_det, bool)
    if len(dets) == 0:
        return _Match(tp, ambiguous)
    is_nan = np.isnan(iou)
    any_nan = np.logical_or.reduceat(is_nan, seg_start)        # np.argmax picks the NaN: never a match
    iou = np.where(is_nan, -np.inf, iou)
    best = np.maximum.reduceat(iou, seg_start)
    is_best = iou == best[pair_det]
    first_best = np.minimum.reduceat(np.where(is_best, np.arange(len(iou)), len(iou)), seg_start)
    claim = pair_gt[first_best]
    ok = (best >= threshold) & ~any_nan
    other_box = is_best & (gt_box[pair_gt] != gt_box[claim[pair_det]]).any(axis=1)
    ambiguous[dets] = ok & np.logical_or.reduceat(other_box, seg_start)

    claimers = np.flatnonzero(ok)
    claimers = claimers[np.argsort(det_rank[dets[claimers]], kind="stable")]
    _, first = np.unique(claim[claimers], return_index=True)
    tp[dets[claimers[first]]] = True
    return _Match(tp, ambiguous)


# --------------------------------------------------------------------------------------------- AP

def precision_recall(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 [N] precision and recall of detections ([N] scores, [N] bool true-positive flags) over ``n_gt``
    boxes, along ``np.argsort(scores)[::-1]`` (the official ranking: equal scores in its order)."""
    return ranked_precision_recall(tp[np.argsort(scores.astype(np.float64))[::-1]], n_gt)


def ranked_precision_recall(hits: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 [N] precision and recall after each of the ranked detections ([N] bool true-positive flags,
    best first) over ``n_gt`` boxes: true positives so far / detections so far, true positives so far / n_gt."""
    cum_tp = np.cumsum(hits.astype(np.int64))
    cum_fp = np.cumsum(1 - hits.astype(np.int64))
    return cum_tp.astype(float) / (cum_tp + cum_fp), cum_tp.astype(float) / n_gt


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC all-points AP: area under the precision made monotone, summed over the steps of recall."""
    if precision.size == 0:
        return 0.0
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def _mean_ap(label_map: LabelMap, ap: dict[int, float | None]) -> float:
    """nanmean over an array indexed by action id - 1, as the official evaluator lays it out."""
    ids = np.asarray(label_map.ids, dtype=np.int64)
    values = np.asarray([np.nan if ap[a] is None else ap[a] for a in label_map.ids], dtype=np.float64)
    if np.isnan(values).all():
        return float("nan")
    if ids.min() >= 1:
        by_id = np.full(int(ids.max()), np.nan)
        by_id[ids - 1] = values
        values = by_id
    return float(np.nanmean(values))


# --------------------------------------------------------------------------------------------- evaluate

def evaluate(gt: AvaRows, detections: AvaRows, label_map: LabelMap, excluded: set[tuple[str, int]] | None = None,
             *, capacity: int | None = 50, variant: str = "2019", iou_threshold: float = 0.5) -> EvalResult:
    """Frame-mAP of ``detections`` against ``gt`` (both as read, all classes), as the official evaluator."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    if variant == "2020" and excluded:
        raise ValueError("the 2020 form has no exclusions; pass excluded=None")
    if capacity is not None and capacity < 1:
        raise ValueError(f"capacity must be >= 1 or None, not {capacity}")
    n_classes = len(label_map)
    ex_video, ex_time = _excluded_arrays(excluded)
    gt_key, det_key, ex_key = _keyframe_codes([(gt.video_id, gt.timestamp), (detections.video_id, detections.timestamp),
                                               (ex_video, ex_time)])

    # Ground truth: label-map classes, excluded keyframes out.
    gt_cls = label_map.index_array(gt.action_id)
    gt_keep = gt_cls >= 0
    if variant == "2019":
        gt_keep &= ~np.isin(gt_key, ex_key)
    g = np.flatnonzero(gt_keep)
    g_key, g_cls, g_box = gt_key[g], gt_cls[g], gt.box[g]
    g_score = np.where(gt.person_id[g] == -1, 1.0, gt.person_id[g].astype(np.float64))
    g_action = gt.action_id[g]

    # Detections: label-map classes; keyframes the variant evaluates; the cut; degenerate boxes out.
    d_cls_all = label_map.index_array(detections.action_id)
    d = np.flatnonzero(d_cls_all >= 0)
    d = d[~np.isin(det_key[d], ex_key)] if variant == "2019" else d[np.isin(det_key[d], gt_key)]
    d_frame = _dense_first_seen(det_key[d])   # keyframes numbered as the official reader meets them
    kept, within_rank = _select_detections(d, d_frame, detections.score, detections.action_id, detections.box,
                                           capacity)
    d, d_frame = d[kept], d_frame[kept]
    d_box = detections.box[d]
    valid = (d_box[:, 0] < d_box[:, 2]) & (d_box[:, 1] < d_box[:, 3])
    d, d_frame, within_rank, d_box = d[valid], d_frame[valid], within_rank[valid], d_box[valid]
    d_key, d_cls, d_score = det_key[d], d_cls_all[d], detections.score[d]

    # Matching, replaying the official ground-truth order where equal IoUs make it matter.
    d_group, g_group = d_key * n_classes + d_cls, g_key * n_classes + g_cls
    g_rank = _gt_rank(g_key, g_score, g_action, g_box, np.zeros(0, np.int64))
    match = _match(d_group, d_box, within_rank, g_group, g_box, g_rank, iou_threshold)
    if match.ambiguous.any():
        g_rank = _gt_rank(g_key, g_score, g_action, g_box, np.unique(d_key[match.ambiguous]))
        match = _match(d_group, d_box, within_rank, g_group, g_box, g_rank, iou_threshold)

    # AP per class over the detections in the official concatenation order.
    n_frames, n_ranks = int(d_frame.max(initial=0)) + 1, int(within_rank.max(initial=0)) + 1
    concat = np.argsort((d_cls * n_frames + d_frame) * n_ranks + within_rank)
    cls_sorted = d_cls[concat]
    bounds = np.searchsorted(cls_sorted, np.arange(n_classes + 1))
    n_gt_arr = np.bincount(g_cls, minlength=n_classes)
    per_class: dict[int, float | None] = {}
    pr: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    n_det: dict[int, int] = {}
    for c, action_id in enumerate(label_map.ids):
        rows = concat[bounds[c]:bounds[c + 1]]
        n_det[action_id] = len(rows)
        if n_gt_arr[c] == 0:
            per_class[action_id] = None
            continue
        precision, recall = precision_recall(d_score[rows], match.tp[rows], int(n_gt_arr[c]))
        pr[action_id] = (precision, recall)
        per_class[action_id] = average_precision(precision, recall)

    per_type: dict[str, float] = {}
    for label_type in dict.fromkeys(t for t in label_map.label_types if t is not None):
        aps = [per_class[a] for a, t in zip(label_map.ids, label_map.label_types) if t == label_type]
        present = [ap for ap in aps if ap is not None]
        if present:
            per_type[label_type] = float(np.mean(present))
    return EvalResult(
        mAP=_mean_ap(label_map, per_class), per_class=per_class, per_type=per_type,
        n_gt={a: int(n_gt_arr[c]) for c, a in enumerate(label_map.ids)}, n_det=n_det, pr=pr,
        variant=variant, capacity=capacity, iou_threshold=iou_threshold,
    )


def evaluate_files(label_map: str | Path | LabelMap, ground_truth: str | Path, detections: str | Path,
                   excluded: str | Path | None = None, **kw: Any) -> EvalResult:
    """:func:`evaluate` on files; boxes and scores are read in float64, as the official reader reads them."""
    if not isinstance(label_map, LabelMap):
        label_map = read_label_map(label_map)
    return evaluate(read_ground_truth(ground_truth, full_precision=True),
                    read_detections(detections, full_precision=True), label_map,
                    read_excluded(excluded) if excluded is not None else None, **kw)
