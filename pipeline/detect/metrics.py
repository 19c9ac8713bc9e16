"""Detector metrics: recall and precision at IoU 0.5 at the operating threshold, and AP@0.5.

Matching follows the AVA/PASCAL evaluator, per keyframe: detections in descending score each
take the ground-truth box they overlap most; a detection is a true positive when that IoU
reaches the threshold and the box was not taken by a higher-scoring detection. Since matching
runs in descending score, the detections above any score threshold are matched exactly as they
would be alone, so one matching gives both the thresholded figures and the AP. The AP is the
evaluator's VOC all-points AP (:func:`pipeline.ava.evaluate.average_precision`).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from pipeline.ava.boxes import iou_matrix
from pipeline.ava.evaluate import average_precision, ranked_precision_recall
from pipeline.ava.formats import AvaRows
from pipeline.detect.boxes import KeyframeKey, distinct_persons, keyframe_groups


def match_keyframe(gt_boxes: np.ndarray, det_boxes: np.ndarray, det_scores: np.ndarray,
                   iou_threshold: float) -> np.ndarray:
    """True-positive flags ([D] bool, in the order given) of one keyframe's detections.

    gt_boxes [G, 4], det_boxes [D, 4] float (normalized x1, y1, x2, y2), det_scores [D].
    """
    tp = np.zeros(len(det_boxes), dtype=bool)
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return tp
    iou = iou_matrix(det_boxes, gt_boxes)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for i in np.argsort(-det_scores, kind="stable"):
        j = int(np.argmax(iou[i]))
        if iou[i, j] >= iou_threshold and not taken[j]:
            taken[j] = True
            tp[i] = True
    return tp


def detector_ap(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """VOC all-points AP of detections ([D] scores, [D] bool true-positive flags) over ``n_gt`` > 0 boxes.

    The evaluator's AP (:func:`pipeline.ava.evaluate.average_precision`); detections are ranked by descending
    score, equal scores in the order given (a stable sort), as this module always ranked them.
    """
    if n_gt == 0:
        raise ValueError("AP is undefined without ground truth")
    precision, recall = ranked_precision_recall(tp[np.argsort(-scores, kind="stable")], n_gt)
    return average_precision(precision, recall)


def _on_keyframes(rows: AvaRows, keyframes: set[KeyframeKey]) -> AvaRows:
    keep = np.fromiter(((str(v), int(t)) in keyframes for v, t in zip(rows.video_id, rows.timestamp)),
                       dtype=bool, count=len(rows))
    return rows.take(keep)


def detector_metrics(detections: AvaRows, keyframes: Iterable[KeyframeKey],
                     ground_truth: AvaRows | None, score_threshold: float,
                     iou_threshold: float = 0.5) -> dict[str, Any]:
    """Recall and precision at ``score_threshold`` and AP over all ``detections``, at ``iou_threshold``.

    Only the ``keyframes`` given count (callers leave out excluded ones); a detection on a keyframe
    without ground-truth persons is a false positive. ``detections`` are all boxes the detector
    kept, including those under the operating threshold (they count in the AP only). Without
    ground truth the figures are None and a note says why.
    """
    kf = {(str(v), int(t)) for v, t in keyframes}
    dets = _on_keyframes(detections, kf)
    above = dets.score >= score_threshold
    out: dict[str, Any] = {
        "iou_threshold": iou_threshold, "score_threshold": score_threshold,
        "n_keyframes": len(kf), "n_detections": int(above.sum()),
        "n_detections_all_scores": len(dets),
    }
    if ground_truth is None:
        return {**out, "recall": None, "precision": None, "ap50": None, "n_gt_boxes": None,
                "n_true_positives": None, "note": "no ground truth given: recall, precision and AP not computed"}
    gt = distinct_persons(_on_keyframes(ground_truth, kf))
    gt_groups = keyframe_groups(gt)
    tp = np.zeros(len(dets), dtype=bool)
    for key, index in keyframe_groups(dets).items():
        g = gt_groups.get(key)
        if g is not None:
            tp[index] = match_keyframe(gt.box[g], dets.box[index], dets.score[index], iou_threshold)
    n_tp = int((tp & above).sum())
    on_empty = np.fromiter(((str(v), int(t)) not in gt_groups for v, t in zip(dets.video_id, dets.timestamp)),
                           dtype=bool, count=len(dets))
    out.update({
        "n_gt_boxes": len(gt), "n_keyframes_with_gt": len(gt_groups), "n_true_positives": n_tp,
        "n_detections_on_keyframes_without_gt": int((on_empty & above).sum()),
        "recall": n_tp / len(gt) if len(gt) else None,
        "precision": n_tp / int(above.sum()) if above.any() else None,
        "ap50": detector_ap(dets.score, tp, len(gt)) if len(gt) else None,
    })
    if not len(gt):
        out["note"] = "no ground-truth person on these keyframes: recall and AP undefined"
    return out
