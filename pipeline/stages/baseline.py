"""Baseline stage: the class prior, what learning nothing gives.

    python -m pipeline.stages.baseline --train-ground-truth results/dataset/{train}.gt.csv
        --boxes results/detect/{split}.boxes.csv --label-map L --out results/predictions/baseline-prior/{split}.csv

Every detected box gets, for each class, that class's frequency among the train split's person
boxes (the share of person boxes that carry it). It uses the same boxes as the models, so its mAP
is the floor every model's mAP is read against.
"""

from __future__ import annotations

import sys

import numpy as np

from pipeline.ava import formats
from pipeline.cli import run_stage, stage_parser
from pipeline.scores import to_detections
from pipeline.store import write_sidecar


def class_prior(ground_truth: formats.AvaRows, label_map: formats.LabelMap) -> np.ndarray:
    """Share of distinct person boxes (video, timestamp, box) that carry each class: float32 [C]."""
    keep = label_map.index_array(ground_truth.action_id) >= 0
    gt = ground_truth.take(keep)
    if len(gt) == 0:
        raise ValueError("the train ground truth has no row of a label-map class")
    box_keys = np.unique(np.rec.fromarrays([gt.video_id, gt.timestamp, *gt.box.T]), return_inverse=True)[1]
    n_boxes = int(box_keys.max()) + 1
    pairs = np.unique(np.stack([box_keys, label_map.index_array(gt.action_id)], axis=1), axis=0)
    counts = np.bincount(pairs[:, 1], minlength=len(label_map))
    return (counts / n_boxes).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.baseline", __doc__)
    parser.add_argument("--train-ground-truth", required=True)
    parser.add_argument("--boxes", required=True, help="detected person boxes of the split (results/detect/{split}.boxes.csv)")
    parser.add_argument("--label-map", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    label_map = formats.read_label_map(args.label_map)
    prior = class_prior(formats.read_ground_truth(args.train_ground_truth), label_map)
    for action_id, p in zip(label_map.ids, prior.tolist()):
        print(f"prior {action_id:>3} {label_map.name(action_id)}: {p:.4f}", file=sys.stderr)
    boxes = formats.read_boxes(args.boxes)
    scores = np.broadcast_to(prior, (len(boxes), len(label_map)))
    formats.write_detections(args.out, to_detections(boxes, scores, label_map))
    write_sidecar(args.out, "baseline", {"train_ground_truth": args.train_ground_truth, "boxes": args.boxes})
    print(f"{len(boxes)} boxes scored with the class prior -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
