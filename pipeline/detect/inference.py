"""Running the fine-tuned person detector on keyframe images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torchvision.models.detection import FasterRCNN

from pipeline.ava.formats import AvaRows
from pipeline.detect.keyframes import KeyframeImages
from pipeline.detect.model import PERSON_LABEL, image_tensor
from pipeline.errors import InputError
from pipeline.params import DetectorParams
from pipeline.progress import progress

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
    """Every detection the model keeps at every keyframe of ``keyframes`` ([K] rows), in keyframe order:
    AvaRows [D] with the boxes and scores, action -1."""
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


def check_checkpoint(checkpoint: Path, params: DetectorParams) -> None:
    """Raise :class:`InputError` when the checkpoint's provenance sidecar shows another layout than ``params``
    (:data:`LAYOUT_KEYS`, and COCO weights or not). A checkpoint without a sidecar is not checked."""
    side = Path(f"{checkpoint}.provenance.json")
    if not side.exists():
        return
    trained = json.loads(json.loads(side.read_text())["params"])
    for key in LAYOUT_KEYS:
        if trained.get(key) != getattr(params, key):
            raise InputError(checkpoint, f"trained with {key}={trained.get(key)!r}, "
                                         f"configured {key}={getattr(params, key)!r}")
    if bool(trained.get("weights")) != bool(params.weights):
        raise InputError(checkpoint, "trained from a "
                         f"{'COCO checkpoint' if trained.get('weights') else 'random initialisation'}, "
                         "so its layout differs from the configured detector's ('weights')")
