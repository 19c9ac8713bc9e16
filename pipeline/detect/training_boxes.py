"""Training boxes of the action models: ground truth plus the detections that overlap it.

As the peers do, the action models learn from every ground-truth person box and also from each
detection whose best IoU with a ground-truth box of its keyframe reaches a threshold, labelled
with that box's actions; so they see the boxes the detector gives at test time.
"""

from __future__ import annotations

import numpy as np

from pipeline.ava.boxes import iou_matrix
from pipeline.ava.formats import AvaRows, LabelMap
from pipeline.detect.boxes import distinct_persons, keyframe_groups

GROUND_TRUTH = 0
DETECTION = 1


def person_labels(gt: AvaRows, persons: AvaRows, label_map: LabelMap) -> np.ndarray:
    """Multi-hot labels uint8 [P, C] (label-map order) of each row of ``persons = distinct_persons(gt)``.

    Rows with action_id -1 add no label; an action id outside the label map is a ValueError.
    """
    labels = np.zeros((len(persons), len(label_map)), dtype=np.uint8)
    if len(gt) == 0:
        return labels
    column = label_map.index_array(gt.action_id)
    unknown = (column < 0) & (gt.action_id >= 0)
    if unknown.any():
        raise ValueError(f"action ids not in the label map: {sorted(set(gt.action_id[unknown].tolist()))}")
    row_of = {key: i for i, key in enumerate(_person_keys(persons))}
    for key, col in zip(_person_keys(gt), column.tolist()):
        if col >= 0:
            labels[row_of[key], col] = 1
    return labels


def _person_keys(rows: AvaRows) -> list[tuple]:
    return list(zip(rows.video_id.tolist(), rows.timestamp.tolist(), rows.person_id.tolist(),
                    map(tuple, rows.box.tolist())))


def training_boxes(gt: AvaRows, detections: AvaRows, label_map: LabelMap,
                   iou_threshold: float) -> tuple[AvaRows, np.ndarray, np.ndarray]:
    """Boxes and labels for training the action models.

    ``gt``: ground-truth rows (one per person and action); ``detections``: person boxes (e.g. the
    detector's box CSV). Returns
      boxes: AvaRows [N], one row per box (action_id -1; a detection carries the person_id of its
        ground-truth box and its own score; ground truth has score 1), ordered by keyframe of first
        appearance, the ground truth of a keyframe before its detections;
      labels: uint8 [N, C], multi-hot in label-map order;
      source: uint8 [N], :data:`GROUND_TRUTH` (0) or :data:`DETECTION` (1).
    Detections on keyframes without ground truth, or whose best IoU is under ``iou_threshold``,
    are not training boxes.
    """
    persons = distinct_persons(gt)
    persons.action_id = np.full(len(persons), -1, dtype=np.int64)
    persons.score = np.ones(len(persons), dtype=persons.score.dtype)
    gt_labels = person_labels(gt, persons, label_map)
    gt_groups = keyframe_groups(persons)
    det_groups = keyframe_groups(detections)
    parts: list[AvaRows] = []
    labels: list[np.ndarray] = []
    sources: list[np.ndarray] = []
    for key, g in gt_groups.items():
        parts.append(persons.take(g))
        labels.append(gt_labels[g])
        sources.append(np.full(len(g), GROUND_TRUTH, dtype=np.uint8))
        d = det_groups.get(key)
        if d is None:
            continue
        iou = iou_matrix(detections.box[d], persons.box[g])
        best = np.argmax(iou, axis=1)
        keep = iou[np.arange(len(d)), best] >= iou_threshold
        matched = g[best[keep]]
        dets = detections.take(d[keep])
        dets.action_id = np.full(len(dets), -1, dtype=np.int64)
        dets.person_id = persons.person_id[matched]
        parts.append(dets)
        labels.append(gt_labels[matched])
        sources.append(np.full(len(dets), DETECTION, dtype=np.uint8))
    if not parts:
        return AvaRows.empty(), np.zeros((0, len(label_map)), np.uint8), np.zeros(0, np.uint8)
    return AvaRows.concat(parts), np.concatenate(labels), np.concatenate(sources)
