"""Running the fine-tuned person detector on keyframe images.

The model runs on its device (in mixed precision on CUDA: :func:`pipeline.detect.model.mixed_precision`);
there the keyframe images are read and decoded ahead of it by DataLoader workers
(:class:`KeyframeBatches`), in the batches that the model takes. Whoever
reads, the boxes and scores are the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.models.detection import FasterRCNN

from pipeline.ava.formats import AvaRows
from pipeline.detect.keyframes import KeyframeImages
from pipeline.detect.model import PERSON_LABEL, image_tensor
from pipeline.errors import InputError
from pipeline.params import DetectorParams
from pipeline.progress import progress

BATCH_SIZE = 4                      # keyframe images per forward pass
LAYOUT_KEYS = ("arch", "min_size")  # params that must match the checkpoint's training


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def detect_images(model: FasterRCNN, images: np.ndarray | torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """Person boxes of each image of ``images`` [n, H, W, 3] uint8 RGB (an array, or a tensor on any device).

    The model runs on its own device (in mixed precision where :func:`pipeline.detect.model.mixed_precision`
    set it). Returns per image (boxes [k, 4] float32 normalized x1, y1, x2, y2 clipped to [0, 1],
    scores [k] float32), in descending score, as the model keeps them (its internal threshold).
    """
    images = torch.as_tensor(images).to(model_device(model), non_blocking=True)
    height, width = images.shape[1:3]
    scale = np.array([width, height, width, height], dtype=np.float32)
    outputs = model([image_tensor(image) for image in images])
    result = []
    for out in outputs:
        person = (out["labels"] == PERSON_LABEL).cpu().numpy()
        boxes = np.clip(out["boxes"].float().cpu().numpy()[person] / scale, 0.0, 1.0).astype(np.float32)
        scores = out["scores"].float().cpu().numpy()[person].astype(np.float32)
        order = np.argsort(-scores, kind="stable")
        result.append((boxes[order], scores[order]))
    return result


class KeyframeBatches(Dataset):
    """Item ``i``: the ``i``-th forward batch of ``keyframes`` ([K] rows), as (video id, timestamps [n],
    images uint8 tensor [n, H, W, 3]). Batches hold :data:`BATCH_SIZE` consecutive keyframes, cut
    where the video changes (a batch's images have one size)."""

    def __init__(self, images: KeyframeImages, keyframes: AvaRows, batch_size: int = BATCH_SIZE):
        self.images = images
        self.groups: list[tuple[str, np.ndarray]] = []
        for start in range(0, len(keyframes), batch_size):
            batch = keyframes.take(np.arange(start, min(start + batch_size, len(keyframes))))
            for video_id in dict.fromkeys(batch.video_id.tolist()):
                self.groups.append((video_id, batch.timestamp[batch.video_id == video_id]))

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> tuple[str, np.ndarray, torch.Tensor]:
        video_id, stamps = self.groups[i]
        return video_id, stamps, torch.from_numpy(self.images.read(video_id, stamps))


def _as_is(item: tuple[str, np.ndarray, torch.Tensor]) -> tuple[str, np.ndarray, torch.Tensor]:
    return item


def detect_keyframes(model: FasterRCNN, images: KeyframeImages, keyframes: AvaRows,
                     batch_size: int = BATCH_SIZE, loader_workers: int = 0) -> AvaRows:
    """Every detection the model keeps at every keyframe of ``keyframes`` ([K] rows), in keyframe order:
    AvaRows [D] with the boxes and scores, action -1. ``loader_workers`` processes read the images
    ahead of the model (0: it reads them itself); the model runs on its device."""
    batches = KeyframeBatches(images, keyframes, batch_size)
    workers = min(loader_workers, len(batches))
    loader = DataLoader(batches, batch_size=None, collate_fn=_as_is, num_workers=workers,
                        pin_memory=model_device(model).type == "cuda")
    parts: list[AvaRows] = []
    for video_id, stamps, frames in progress(loader, desc="detect", total=len(batches), unit="batch"):
        found = detect_images(model, frames)
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
