"""A plain per-keyframe loop implementation of the official AVA frame-mAP (2019 and 2020 forms).

The tests' reference and the benchmark's yardstick for ``pipeline.ava.evaluate``. It follows the semantics of
ActivityNet's ``get_ava_performance.py`` step by step, row by row, with Python lists and the csv module:
- the reader keys keyframes as "video,%04d" % int(timestamp), drops classes outside the label map, and keeps
  per keyframe a min-heap of (score, action_id, y1, x1, y2, x2) of at most ``capacity`` rows (a row replaces
  the smallest only with a strictly higher score), output sorted stably by descending score (for ground truth
  with 8 columns the "score" is the person id);
- 2019: excluded keyframes leave both sides; every other detected keyframe is evaluated. 2020: detected
  keyframes absent from the ground-truth file are skipped;
- per keyframe and class, after dropping boxes with y1 >= y2 or x1 >= x2, each detection in order takes
  np.argmax of its IoUs (areas without +1) and is a true positive when that IoU >= threshold and that box is
  free;
- per class, np.argsort(scores)[::-1] ranks the detections, and AP is the VOC all-points area.
Only the label map is read with the project's reader.
"""

from __future__ import annotations

import csv
import heapq
from collections import defaultdict
from pathlib import Path

import numpy as np

from pipeline.ava.formats import read_label_map


def image_key(video_id: str, timestamp: str) -> str:
    return "%s,%04d" % (video_id, int(timestamp))


def read_entries(path: str | Path, whitelist: set[int],
                 capacity: int | None) -> tuple[dict[str, list[tuple]], set[str]]:
    """Per keyframe (in first-seen order) its kept (score, action_id, y1, x1, y2, x2), and every key in the file."""
    heaps: dict[str, list[tuple]] = {}
    all_keys: set[str] = set()
    with open(path, newline="") as f:
        for row in csv.reader(f):
            key = image_key(row[0], row[1])
            all_keys.add(key)
            x1, y1, x2, y2 = (float(v) for v in row[2:6])
            action_id = int(row[6])
            if action_id not in whitelist:
                continue
            score = float(row[7]) if len(row) == 8 else 1.0
            entry = (score, action_id, y1, x1, y2, x2)
            heap = heaps.setdefault(key, [])
            if capacity is None or len(heap) < capacity:
                heapq.heappush(heap, entry)
            elif score > heap[0][0]:
                heapq.heapreplace(heap, entry)
    return {key: sorted(heap, key=lambda e: -e[0]) for key, heap in heaps.items()}, all_keys


def iou(det: tuple, gt: tuple) -> float:
    """IoU of two (.., y1, x1, y2, x2) entries (fields 2..5), the official arithmetic."""
    heights = max(0.0, min(det[4], gt[4]) - max(det[2], gt[2]))
    widths = max(0.0, min(det[5], gt[5]) - max(det[3], gt[3]))
    intersection = heights * widths
    union = (det[4] - det[2]) * (det[5] - det[3]) + (gt[4] - gt[2]) * (gt[5] - gt[3]) - intersection
    if union == 0:
        return float("nan")
    return intersection / union


def voc_ap(scores: list[float], labels: list[bool], n_gt: int) -> float:
    if not scores:
        return 0.0
    order = np.argsort(np.asarray(scores, dtype=float))[::-1]
    tp = np.asarray(labels, dtype=int)[order]
    cum_tp = np.cumsum(tp)
    cum_fp = np.cumsum(1 - tp)
    precision = [0.0] + (cum_tp / (cum_tp + cum_fp)).tolist() + [0.0]
    recall = [0.0] + (cum_tp / n_gt).tolist() + [1.0]
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    return sum((recall[i] - recall[i - 1]) * precision[i] for i in range(1, len(recall)) if recall[i] != recall[i - 1])


def evaluate_reference(label_map: str | Path, ground_truth: str | Path, detections: str | Path,
                       excluded: str | Path | None = None, *, capacity: int | None = 50, variant: str = "2019",
                       iou_threshold: float = 0.5) -> dict:
    """{"mAP": float, "per_class": {action_id: AP or None}, "n_gt": {..}, "n_det": {..}}."""
    ids = read_label_map(label_map).ids
    whitelist = set(ids)
    excluded_keys: set[str] = set()
    if excluded is not None:
        with open(excluded, newline="") as f:
            excluded_keys = {image_key(row[0], row[1]) for row in csv.reader(f) if row}
    gt, gt_keys = read_entries(ground_truth, whitelist, None)
    if variant == "2019":
        gt = {key: entries for key, entries in gt.items() if key not in excluded_keys}
    n_gt: dict[int, int] = defaultdict(int)
    for entries in gt.values():
        for entry in entries:
            n_gt[entry[1]] += 1

    dets, _ = read_entries(detections, whitelist, capacity)
    scores: dict[int, list[float]] = defaultdict(list)
    labels: dict[int, list[bool]] = defaultdict(list)
    for key, entries in dets.items():
        if variant == "2019" and key in excluded_keys:
            continue
        if variant == "2020" and key not in gt_keys:
            continue
        by_class: dict[int, list[tuple]] = defaultdict(list)
        for entry in entries:
            if entry[2] < entry[4] and entry[3] < entry[5]:
                by_class[entry[1]].append(entry)
        gt_by_class: dict[int, list[tuple]] = defaultdict(list)
        for entry in gt.get(key, []):
            gt_by_class[entry[1]].append(entry)
        for action_id, class_dets in by_class.items():
            boxes = gt_by_class[action_id]
            taken = [False] * len(boxes)
            for det in class_dets:
                is_tp = False
                if boxes:
                    ious = [iou(det, box) for box in boxes]
                    best = int(np.argmax(ious))
                    if ious[best] >= iou_threshold and not taken[best]:
                        taken[best] = True
                        is_tp = True
                scores[action_id].append(det[0])
                labels[action_id].append(is_tp)

    per_class = {a: (voc_ap(scores[a], labels[a], n_gt[a]) if n_gt[a] else None) for a in ids}
    present = [ap for ap in per_class.values() if ap is not None]
    return {"mAP": float(np.mean(present)) if present else float("nan"), "per_class": per_class,
            "n_gt": {a: n_gt[a] for a in ids}, "n_det": {a: len(scores[a]) for a in ids}}
