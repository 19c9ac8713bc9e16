"""Detect persons at every keyframe with the fine-tuned detector; write the box CSV and metrics.

    python -m pipeline.detect.infer --checkpoint results/models/detector/detector.pt \\
        --frames-dir results/frames --keyframes results/dataset/{split}.keyframes.csv \\
        --out results/detect/{split}.boxes.csv --metrics results/detect/{split}.metrics.json \\
        --params JSON [--ground-truth results/dataset/{split}.gt.csv --excluded EXCLUDED.csv] --threads N

Boxes are SlowFast's person-box rows ``video_id,timestamp,x1,y1,x2,y2,,score``: those scoring at
least ``score_threshold`` after NMS at ``nms_iou``, at most ``max_per_keyframe`` per keyframe. The
metrics (see :mod:`pipeline.detect.metrics`) also use the detections under the threshold, for AP.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torchvision.models.detection import FasterRCNN

from pipeline.ava.formats import AvaRows, read_excluded, read_ground_truth, write_boxes
from pipeline.dataset import read_keyframes
from pipeline.detect.keyframes import KeyframeImages
from pipeline.detect.metrics import detector_metrics
from pipeline.detect.model import PERSON_LABEL, trained_detector
from pipeline.detect.train import image_tensor
from pipeline.errors import InputError
from pipeline.progress import progress
from pipeline.store import provenance, write_json, write_sidecar

STAGE = "detect.infer"
BATCH_SIZE = 4                      # keyframe images per forward pass
LAYOUT_KEYS = ("arch", "min_size")  # params that must match the checkpoint's training


@torch.inference_mode()
def detect_images(model: FasterRCNN, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Person boxes of each image of ``images`` [n, H, W, 3] uint8 RGB.

    Returns per image (boxes [k, 4] float32 normalized x1, y1, x2, y2 clipped to [0, 1],
    scores [k] float32), in descending score, as the model keeps them (its internal threshold).
    """
    height, width = images.shape[1:3]
    scale = np.array([width, height, width, height], dtype=np.float32)
    outputs = model([image_tensor(image) for image in images])
    result = []
    for out in outputs:
        person = (out["labels"] == PERSON_LABEL).numpy()
        boxes = np.clip(out["boxes"].numpy()[person] / scale, 0.0, 1.0).astype(np.float32)
        scores = out["scores"].numpy()[person].astype(np.float32)
        order = np.argsort(-scores, kind="stable")
        result.append((boxes[order], scores[order]))
    return result


def detect_keyframes(model: FasterRCNN, images: KeyframeImages, keyframes: AvaRows,
                     batch_size: int = BATCH_SIZE) -> AvaRows:
    """Every detection the model keeps at every keyframe of ``keyframes``, in keyframe order."""
    parts: list[AvaRows] = []
    starts = range(0, len(keyframes), batch_size)
    for start in progress(starts, desc="detect", total=len(starts), unit="batch"):
        batch = keyframes.take(np.arange(start, min(start + batch_size, len(keyframes))))
        for video_id in dict.fromkeys(batch.video_id.tolist()):
            stamps = batch.timestamp[batch.video_id == video_id]
            found = detect_images(model, images.read(video_id, stamps))
            for timestamp, (boxes, scores) in zip(stamps.tolist(), found):
                parts.append(AvaRows(np.full(len(boxes), video_id), np.full(len(boxes), timestamp),
                                     boxes, score=scores))
    return AvaRows.concat(parts)


def check_checkpoint(checkpoint: Path, params: Mapping[str, Any]) -> None:
    """Raise :class:`InputError` when the checkpoint's sidecar shows another layout than ``params``."""
    side = Path(f"{checkpoint}.provenance.json")
    if not side.exists():
        return
    trained = json.loads(json.loads(side.read_text())["params"])
    for key in LAYOUT_KEYS:
        if trained.get(key) != params.get(key):
            raise InputError(checkpoint, f"trained with {key}={trained.get(key)!r}, "
                                         f"configured {key}={params.get(key)!r}")
    if bool(trained.get("weights")) != bool(params.get("weights")):
        raise InputError(checkpoint, "trained from a "
                         f"{'COCO checkpoint' if trained.get('weights') else 'random initialisation'}, "
                         "so its layout differs from the configured detector's ('weights')")


def keyframe_keys(keyframes: AvaRows, excluded: set[tuple[str, int]]) -> list[tuple[str, int]]:
    """The (video_id, timestamp) keyframes that count in the metrics: those not excluded."""
    keys = list(dict.fromkeys(zip(keyframes.video_id.tolist(), keyframes.timestamp.tolist())))
    return [k for k in keys if k not in excluded]


def write_outputs(detections: AvaRows, keyframes: AvaRows, out: Path, metrics_path: Path,
                  params: Mapping[str, Any], ground_truth: Path | None, excluded: Path | None,
                  stage: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Write the thresholded boxes and the metrics JSON of all ``detections``; return the metrics.

    ``extra`` (its ``source`` names where the boxes came from) is added to the metrics.
    """
    threshold = float(params["score_threshold"])
    write_boxes(out, detections.take(detections.score >= threshold))
    write_sidecar(out, stage, {**params, "source": extra.get("source")})
    skip = read_excluded(excluded) if excluded else set()
    gt = read_ground_truth(ground_truth) if ground_truth else None
    metrics = detector_metrics(detections, keyframe_keys(keyframes, skip), gt, threshold)
    metrics.update(extra)
    metrics["n_excluded_keyframes"] = len(skip & set(zip(keyframes.video_id.tolist(),
                                                         keyframes.timestamp.tolist())))
    metrics["provenance"] = provenance(stage, dict(params))
    write_json(metrics_path, metrics)
    print(json.dumps({k: v for k, v in metrics.items() if k != "provenance"}), file=sys.stderr)
    return metrics


def add_box_output_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every source of person boxes takes: keyframes, outputs, params, optional ground truth."""
    parser.add_argument("--keyframes", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--params", type=json.loads, required=True, help="the detect config section as JSON")
    parser.add_argument("--ground-truth", type=Path, default=None)
    parser.add_argument("--excluded", type=Path, default=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--frames-dir", type=Path, required=True)
    add_box_output_arguments(parser)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    check_checkpoint(args.checkpoint, args.params)
    model = trained_detector(args.params, args.checkpoint)
    keyframes = read_keyframes(args.keyframes)
    with KeyframeImages(args.frames_dir) as images:
        detections = detect_keyframes(model, images, keyframes)
    write_outputs(detections, keyframes, args.out, args.metrics, args.params, args.ground_truth,
                  args.excluded, STAGE, {"source": f"detector {args.checkpoint}"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
