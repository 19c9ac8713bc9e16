"""Predict stage: score every detected box of a split with a trained head.

Outputs:
- AVA detections CSV ``video_id,timestamp,x1,y1,x2,y2,action_id,score``: one row per detected box
  and class, score = sigmoid(logit); provenance sidecar.
- the logits parquet of ``pipeline.scores`` (for fusion before the sigmoid).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.ava.formats import AvaRows, LabelMap, read_label_map, write_detections
from pipeline.errors import InputError
from pipeline.detect.training_boxes import DETECTION
from pipeline.features import Features, add_features_argument, read_model_features
from pipeline.models.registry import build_head
from pipeline.scores import sigmoid, to_detections, write_logits
from pipeline.store import write_sidecar
from pipeline.train.head import head_logits

ROW_BATCH = 4096


def load_head(path: str | Path, label_map: LabelMap, kind: str | None = None) -> torch.nn.Module:
    """The head saved by ``pipeline.train.head`` at ``path``, in eval mode.

    Its classes must be the label map's, and its kind ``kind`` when given.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if list(state["label_ids"]) != list(label_map.ids):
        raise InputError(path, "the head's classes are not the label map's")
    if kind is not None and state["kind"] != kind:
        raise InputError(path, f"a {state['kind']} head, but the params say {kind}")
    head = build_head(state["kind"], int(state["roi_dim"]), int(state["context_dim"]), len(label_map))
    head.load_state_dict(state["head"])
    return head.eval()


def detection_boxes(features: Features) -> tuple[np.ndarray, AvaRows]:
    """The rows of detected boxes (int64 [M]) and those boxes (AvaRows [M], score = detector score)."""
    rows = np.flatnonzero(features.box_source == DETECTION)
    boxes = AvaRows(video_id=features.video_id[rows], timestamp=features.box_t[rows], box=features.box[rows],
                    score=features.box_score[rows])
    return rows, boxes


@torch.no_grad()
def row_logits(head: torch.nn.Module, features: Features, rows: np.ndarray) -> np.ndarray:
    """Logits float32 [len(rows), C] of the rows ``rows`` of ``features``."""
    parts = [head_logits(head, features, rows[i:i + ROW_BATCH]).numpy() for i in range(0, len(rows), ROW_BATCH)]
    return np.concatenate(parts) if parts else np.zeros((0, features.label.shape[1]), np.float32)


def predict(head_path: str | Path, feature_groups: list[list[str]], label_map_path: str | Path, out: str | Path,
            logits_path: str | Path, params: dict[str, Any]) -> int:
    """Write the detections CSV and logits parquet; returns the number of boxes scored.

    ``feature_groups``: the split's features files, one list per backbone of the model.
    """
    label_map = read_label_map(label_map_path)
    head = load_head(head_path, label_map, params.get("head"))
    features = read_model_features(feature_groups, label_map, params)
    rows, boxes = detection_boxes(features)
    logits = row_logits(head, features, rows)
    write_detections(out, to_detections(boxes, sigmoid(logits), label_map))
    write_sidecar(out, "predict", params)
    write_logits(logits_path, boxes, logits, label_map, "predict", params)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.predict", description=__doc__.splitlines()[0])
    parser.add_argument("--head", required=True, help="head.pt of the model")
    add_features_argument(parser, "features files of the split")
    parser.add_argument("--label-map", required=True)
    parser.add_argument("--out", required=True, help="AVA detections CSV")
    parser.add_argument("--logits", required=True, help="logits parquet")
    parser.add_argument("--params", required=True, help="models entry (+ seed) as JSON")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n = predict(args.head, args.features, args.label_map, args.out, args.logits, json.loads(args.params))
    print(f"scored {n} detected boxes -> {args.out}, {args.logits}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
