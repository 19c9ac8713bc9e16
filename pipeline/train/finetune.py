"""Finetuning stage: train a backbone with its ROI head end to end on the training boxes (paper II.D).

Items are keyframes (a clip and all its training boxes); the loss is binary cross-entropy with
logits over every box and class (multi-label, sigmoid). Training boxes are the ground-truth persons
plus the detections that overlap one (``pipeline.detect.training_boxes``). Writes the weights only,
``{"backbone": state_dict, "head": state_dict}`` (``torch.load(weights_only=True)`` loads it), its
provenance sidecar and, optionally, a CSV log with the mean loss per epoch.

Params (the config's backbone section plus ``seed`` and ``train_box_iou``): arch, modality,
clip_frames, clip_stride, input_size, roi_size (none of these four for audio), finetune {epochs,
lr, batch_size, weight_decay (optional)}, weights (optional local checkpoint of the backbone),
roi_pool (optional: max | avg, default max). The optimizer is AdamW at a constant learning rate (the paper: constant rate, ~5 epochs).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from pipeline.ava.formats import LabelMap, read_boxes, read_ground_truth, read_label_map
from pipeline.data.clips import ClipSpec, Keyframe, KeyframeDataset, collate_keyframes, group_keyframes
from pipeline.detect.training_boxes import training_boxes
from pipeline.errors import InputError
from pipeline.models.registry import build_backbone
from pipeline.models.roi_head import ActionDetector
from pipeline.progress import progress
from pipeline.store import atomic_path, write_sidecar, write_text

WEIGHT_DECAY = 0.01   # AdamW's, when the finetune section sets none


def store_paths(paths: Sequence[str | Path]) -> dict[str, Path]:
    """Video id (the file's stem) -> store path; a video given twice is an error."""
    stores: dict[str, Path] = {}
    for path in map(Path, paths):
        if path.stem in stores:
            raise InputError(path, f"video {path.stem!r} given twice (also {stores[path.stem]})")
        stores[path.stem] = path
    return stores


def build_detector(params: dict[str, Any], num_classes: int, weights: str | Path | None = None) -> ActionDetector:
    """The backbone and ROI head that ``params`` describe; ``weights``: a local backbone checkpoint."""
    backbone = build_backbone(params["arch"], params["modality"], weights)
    return ActionDetector(backbone, num_classes, params.get("roi_size"), params.get("roi_pool", "max"))


def training_keyframes(label_map: LabelMap, ground_truth: str | Path, detections: str | Path,
                       iou_threshold: float, stores: dict[str, Path]) -> list[Keyframe]:
    """The keyframes to finetune on, each with its training boxes and multi-hot labels.

    Every video of the ground truth must have a store.
    """
    gt = read_ground_truth(ground_truth)
    missing = sorted(set(gt.video_id.tolist()) - set(stores))
    if missing:
        raise InputError(ground_truth, f"{len(missing)} videos have no store: {', '.join(missing[:5])}")
    boxes, labels, _ = training_boxes(gt, read_boxes(detections), label_map, iou_threshold)
    return group_keyframes(boxes, labels)


def train_epoch(model: ActionDetector, loader: torch.utils.data.DataLoader,
                optimizer: torch.optim.Optimizer, desc: str) -> float:
    """One pass over ``loader``; returns the mean loss per box (BCE with logits, mean over classes)."""
    model.train()
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="sum")
    total, boxes = 0.0, 0
    for batch in progress(loader, desc=desc, unit="batch"):
        logits = model(batch["clips"], batch["rois"])
        loss = loss_fn(logits, batch["labels"]) / logits.numel()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(logits)
        boxes += len(logits)
    return total / max(boxes, 1)


def finetune(keyframes: list[Keyframe], stores: dict[str, Path], params: dict[str, Any],
             num_classes: int, log: list[dict[str, float]] | None = None) -> ActionDetector:
    """Train the detector of ``params`` on ``keyframes``; appends {epoch, loss, seconds} rows to ``log``."""
    seed = int(params.get("seed", 0))
    torch.manual_seed(seed)
    settings = params["finetune"]
    model = build_detector(params, num_classes, params.get("weights"))
    dataset = KeyframeDataset(keyframes, stores, ClipSpec.from_params(params), flip=True,
                              rng=np.random.default_rng(seed))
    loader = torch.utils.data.DataLoader(dataset, batch_size=int(settings["batch_size"]), shuffle=True,
                                         collate_fn=collate_keyframes,
                                         generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(settings["lr"]),
                                  weight_decay=float(settings.get("weight_decay", WEIGHT_DECAY)))
    start = time.monotonic()
    for epoch in range(1, int(settings["epochs"]) + 1):
        loss = train_epoch(model, loader, optimizer, desc=f"finetune epoch {epoch}")
        row = {"epoch": epoch, "loss": loss, "seconds": time.monotonic() - start}
        print(f"epoch {epoch}: loss {loss:.4f} ({row['seconds']:.1f} s)", file=sys.stderr)
        if log is not None:
            log.append(row)
    return model


def log_csv(rows: list[dict[str, float]]) -> str:
    """The epoch log as CSV text with a header."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["epoch", "loss", "seconds"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.train.finetune", description=__doc__.splitlines()[0])
    parser.add_argument("--label-map", required=True)
    parser.add_argument("--ground-truth", required=True, help="training split's ground truth CSV")
    parser.add_argument("--detections", required=True, help="training split's person boxes CSV")
    parser.add_argument("--stores", nargs="+", required=True, help="per-video stores of the modality ({video_id}.h5)")
    parser.add_argument("--out", required=True, help="weights (.pt)")
    parser.add_argument("--params", required=True, help="backbone section + seed + train_box_iou, as JSON")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-csv", help="per-epoch loss log")
    args = parser.parse_args(argv)
    params = json.loads(args.params)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    label_map = read_label_map(args.label_map)
    stores = store_paths(args.stores)
    keyframes = training_keyframes(label_map, args.ground_truth, args.detections,
                                   float(params["train_box_iou"]), stores)
    n_boxes = sum(len(kf.boxes) for kf in keyframes)
    print(f"finetuning {params['arch']} ({params['modality']}) on {len(keyframes)} keyframes, "
          f"{n_boxes} boxes, {len(label_map)} classes", file=sys.stderr)
    log: list[dict[str, float]] = []
    model = finetune(keyframes, stores, params, len(label_map), log)

    with atomic_path(args.out) as tmp:
        torch.save({"backbone": model.backbone.state_dict(), "head": model.head.state_dict()}, tmp)
    write_sidecar(args.out, "finetune", params)
    if args.log_csv:
        write_text(args.log_csv, log_csv(log))
        write_sidecar(args.log_csv, "finetune", params)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
