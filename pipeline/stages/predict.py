"""Predict stage: score every detected box of a split with a model's trained head.

    python -m pipeline.stages.predict --head results/models/{model}/head.pt --features F1.h5 ... [--features ...]
        --label-map L --out results/predictions/{model}/{split}.csv
        --logits results/predictions/{model}/{split}.logits.parquet --params ModelParams --threads N

Outputs:
- AVA detections CSV ``video_id,timestamp,x1,y1,x2,y2,action_id,score``: one row per detected box
  and class, score = sigmoid(logit); provenance sidecar.
- the logits parquet of :mod:`pipeline.scores` (for fusion before the sigmoid).

The head runs on ``compute.device`` (CUDA when the job has a GPU) with ``compute.precision``'s
autocast there; on the CPU in float32.
"""

from __future__ import annotations

import sys

import numpy as np

from pipeline.ava.formats import AvaRows, read_label_map, write_detections
from pipeline.cli import add_features_argument, add_params_argument, read_params, run_stage, set_threads, stage_parser
from pipeline.detect.training_boxes import DETECTION
from pipeline.devices import select_device
from pipeline.feature_store import Features, read_model_features
from pipeline.heads import load_head, row_logits
from pipeline.params import ModelParams, as_dict
from pipeline.scores import sigmoid, to_detections, write_logits
from pipeline.store import write_sidecar


def detection_boxes(features: Features) -> tuple[np.ndarray, AvaRows]:
    """The rows of detected boxes (int64 [M]) and those boxes (AvaRows [M], score = detector score)."""
    rows = np.flatnonzero(features.box_source == DETECTION)
    boxes = AvaRows(video_id=features.video_id[rows], timestamp=features.box_t[rows], box=features.box[rows],
                    score=features.box_score[rows])
    return rows, boxes


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.predict", __doc__)
    parser.add_argument("--head", required=True, help="head.pt of the model")
    add_features_argument(parser, "feature stores of the split")
    parser.add_argument("--label-map", required=True)
    parser.add_argument("--out", required=True, help="AVA detections CSV")
    parser.add_argument("--logits", required=True, help="logits parquet")
    add_params_argument(parser, ModelParams)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    params = read_params(parser, ModelParams, args.params)
    set_threads(args.threads)

    label_map = read_label_map(args.label_map)
    device = select_device(params.compute.device)
    head = load_head(args.head, label_map, params.head, device)
    features = read_model_features(args.features, label_map, params)
    rows, boxes = detection_boxes(features)
    logits = row_logits(head, features, rows, params.compute.precision)
    write_detections(args.out, to_detections(boxes, sigmoid(logits), label_map))
    write_sidecar(args.out, "predict", as_dict(params))
    write_logits(args.logits, boxes, logits, label_map, "predict", as_dict(params))
    print(f"scored {len(rows)} detected boxes ({device}) -> {args.out}, {args.logits}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
