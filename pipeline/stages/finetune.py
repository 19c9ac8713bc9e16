"""Finetune stage: train a backbone with its ROI head end to end on the training boxes (paper II.D).

    python -m pipeline.stages.finetune --label-map L --ground-truth GT --boxes BOXES --stores S1.h5 S2.h5 ...
        --out results/models/{backbone}/backbone.pt --log-csv results/models/{backbone}/finetune_log.csv
        --params BackboneParams --threads N

Items are keyframes (a clip and all its training boxes); the loss is binary cross-entropy with
logits over every box and class (multi-label, sigmoid). Training boxes are the ground-truth persons
plus the detected person boxes (``--boxes``) that overlap one by ``train_box_iou``
(:mod:`pipeline.detect.training_boxes`). Writes the weights only, ``{"backbone": state_dict,
"head": state_dict}`` (``torch.load(weights_only=True)`` loads it), its provenance sidecar, and the
CSV log of the mean loss per epoch. The optimizer (``finetune.optimizer``) runs at a constant
learning rate, as the paper's.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from pipeline.ava.formats import LabelMap, read_boxes, read_ground_truth, read_label_map
from pipeline.cli import add_params_argument, read_params, set_threads, stage_parser
from pipeline.data.clips import ClipSpec, Keyframe, KeyframeDataset, collate_keyframes, group_keyframes
from pipeline.detect.training_boxes import training_boxes
from pipeline.errors import InputError
from pipeline.models.optim import make_optimizer
from pipeline.models.registry import build_action_model
from pipeline.models.roi_head import ActionClassifier
from pipeline.params import BackboneParams, as_dict
from pipeline.progress import progress
from pipeline.store import atomic_path, write_log_csv, write_sidecar


def store_paths(paths: Sequence[str | Path]) -> dict[str, Path]:
    """Video id (the file's stem) -> store path; a video given twice is an error."""
    stores: dict[str, Path] = {}
    for path in map(Path, paths):
        if path.stem in stores:
            raise InputError(path, f"video {path.stem!r} given twice (also {stores[path.stem]})")
        stores[path.stem] = path
    return stores


def training_keyframes(label_map: LabelMap, ground_truth: str | Path, boxes: str | Path,
                       iou_threshold: float, stores: dict[str, Path]) -> list[Keyframe]:
    """The keyframes to finetune on, each with its training boxes and multi-hot labels.

    Every video of the ground truth must have a store.
    """
    gt = read_ground_truth(ground_truth)
    missing = sorted(set(gt.video_id.tolist()) - set(stores))
    if missing:
        raise InputError(ground_truth, f"{len(missing)} videos have no store: {', '.join(missing[:5])}")
    rows, labels, _ = training_boxes(gt, read_boxes(boxes), label_map, iou_threshold)
    return group_keyframes(rows, labels)


def train_epoch(model: ActionClassifier, loader: torch.utils.data.DataLoader,
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


def finetune(keyframes: list[Keyframe], stores: dict[str, Path], params: BackboneParams,
             num_classes: int, log: list[dict[str, float]] | None = None) -> ActionClassifier:
    """Train the action model of ``params`` on ``keyframes``; appends {epoch, loss, seconds} rows to ``log``."""
    torch.manual_seed(params.seed)
    settings = params.finetune
    model = build_action_model(params.arch, params.modality, num_classes, params.roi_size, params.roi_pool,
                               params.weights)
    dataset = KeyframeDataset(keyframes, stores, ClipSpec.from_params(params), flip=True,
                              rng=np.random.default_rng(params.seed))
    loader = torch.utils.data.DataLoader(dataset, batch_size=settings.batch_size, shuffle=True,
                                         collate_fn=collate_keyframes,
                                         generator=torch.Generator().manual_seed(params.seed))
    optimizer = make_optimizer(settings.optimizer, model.parameters(), settings.lr, settings.weight_decay)
    start = time.monotonic()
    for epoch in range(1, settings.epochs + 1):
        loss = train_epoch(model, loader, optimizer, desc=f"finetune epoch {epoch}")
        row = {"epoch": epoch, "loss": loss, "seconds": time.monotonic() - start}
        print(f"epoch {epoch}: loss {loss:.4f} ({row['seconds']:.1f} s)", file=sys.stderr)
        if log is not None:
            log.append(row)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.finetune", __doc__)
    parser.add_argument("--label-map", required=True)
    parser.add_argument("--ground-truth", required=True, help="training split's ground truth CSV")
    parser.add_argument("--boxes", required=True, help="training split's person boxes CSV")
    parser.add_argument("--stores", nargs="+", required=True, help="per-video stores of the modality ({video_id}.h5)")
    parser.add_argument("--out", required=True, help="weights (.pt)")
    parser.add_argument("--log-csv", required=True, help="per-epoch loss log")
    add_params_argument(parser, BackboneParams)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    params = read_params(parser, BackboneParams, args.params)
    set_threads(args.threads)

    label_map = read_label_map(args.label_map)
    stores = store_paths(args.stores)
    keyframes = training_keyframes(label_map, args.ground_truth, args.boxes, params.train_box_iou, stores)
    n_boxes = sum(len(kf.boxes) for kf in keyframes)
    print(f"finetuning {params.arch} ({params.modality}) on {len(keyframes)} keyframes, "
          f"{n_boxes} boxes, {len(label_map)} classes", file=sys.stderr)
    log: list[dict[str, float]] = []
    model = finetune(keyframes, stores, params, len(label_map), log)

    with atomic_path(args.out) as tmp:
        torch.save({"backbone": model.backbone.state_dict(), "head": model.head.state_dict()}, tmp)
    write_sidecar(args.out, "finetune", as_dict(params))
    write_log_csv(args.log_csv, log)
    write_sidecar(args.log_csv, "finetune", as_dict(params))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
