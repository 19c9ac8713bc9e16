"""Fine-tuning the person detector: training images, augmentation, the learning-rate schedule, the loop.

Each (video, keyframe) of the ground truth is one training image: the stored frame nearest the
keyframe, with one box per person (:func:`training_keyframes`, :class:`KeyframeSamples`).
:func:`fit` trains with the optimizer a :class:`~pipeline.params.TrainSettings` names, a linear
warmup and a cosine decay of the learning rate, random flips and brightness/contrast changes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torchvision.models.detection import FasterRCNN

from pipeline.ava.formats import AvaRows
from pipeline.detect.boxes import distinct_persons, keyframe_groups
from pipeline.detect.keyframes import KeyframeImages
from pipeline.detect.model import PERSON_LABEL, freeze_batch_norm, image_tensor
from pipeline.models.optim import make_optimizer
from pipeline.params import TrainSettings
from pipeline.progress import progress

WARMUP_FRACTION = 0.1           # of all iterations, at most MAX_WARMUP_ITERATIONS
MAX_WARMUP_ITERATIONS = 500
GRAD_CLIP_NORM = 10.0
LOSS_NAMES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")

Sample = tuple[np.ndarray, np.ndarray]   # image [H, W, 3] uint8 RGB, boxes [n, 4] float32 normalized


@dataclass(frozen=True)
class TrainingKeyframe:
    """A training image: the keyframe and its distinct person boxes ([n, 4] float32, normalized)."""

    video_id: str
    timestamp: int
    boxes: np.ndarray


def training_keyframes(gt: AvaRows) -> list[TrainingKeyframe]:
    """One entry per (video, keyframe) of ``gt`` with one box per person, in first-appearance order."""
    persons = distinct_persons(gt)
    return [TrainingKeyframe(video_id, timestamp, persons.box[index])
            for (video_id, timestamp), index in keyframe_groups(persons).items()]


class KeyframeSamples(Sequence[Sample]):
    """(image, boxes) of each training keyframe, the image read from the frame stores on demand."""

    def __init__(self, keyframes: list[TrainingKeyframe], images: KeyframeImages):
        self.keyframes = keyframes
        self.images = images

    def __len__(self) -> int:
        return len(self.keyframes)

    def __getitem__(self, i: int) -> Sample:  # type: ignore[override]
        kf = self.keyframes[i]
        return self.images.read(kf.video_id, np.array([kf.timestamp]))[0], kf.boxes


def flip_horizontal(image: np.ndarray, boxes: np.ndarray) -> Sample:
    """Mirror an image [H, W, 3] and its normalized boxes [n, 4] left to right."""
    flipped = boxes[:, [2, 1, 0, 3]].copy()
    flipped[:, [0, 2]] = 1.0 - flipped[:, [0, 2]]
    return image[:, ::-1], flipped


def target(boxes: np.ndarray, height: int, width: int) -> dict[str, torch.Tensor]:
    """torchvision's training target: pixel boxes [n, 4] float32 and person labels [n] int64."""
    scale = np.array([width, height, width, height], dtype=np.float32)
    return {"boxes": torch.from_numpy(boxes.astype(np.float32) * scale).reshape(-1, 4),
            "labels": torch.full((len(boxes),), PERSON_LABEL, dtype=torch.int64)}


def augment(sample: Sample, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """A random horizontal flip and brightness/contrast change; returns (image tensor [3, H, W], boxes [n, 4])."""
    image, boxes = sample
    if rng.random() < 0.5:
        image, boxes = flip_horizontal(image, boxes)
    x = image_tensor(image)
    contrast, brightness = rng.uniform(0.75, 1.25), rng.uniform(-0.1, 0.1)
    x = ((x - x.mean()) * contrast + x.mean() + brightness).clamp_(0.0, 1.0)
    return x, boxes


def learning_rate(iteration: int, total: int, base_lr: float) -> float:
    """Linear warmup from base_lr/10, then cosine decay to zero over ``total`` iterations."""
    warmup = min(MAX_WARMUP_ITERATIONS, max(1, int(total * WARMUP_FRACTION)))
    if iteration < warmup:
        return base_lr * (0.1 + 0.9 * iteration / warmup)
    done = (iteration - warmup) / max(1, total - warmup)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * done))


def _batch(samples: Sequence[Sample], index: np.ndarray,
           rng: np.random.Generator) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Augmented images ([3, H, W] each) and their targets for the samples at ``index``."""
    images, targets = [], []
    for i in index:
        x, boxes = augment(samples[int(i)], rng)
        images.append(x)
        targets.append(target(boxes, x.shape[1], x.shape[2]))
    return images, targets


def fit(model: FasterRCNN, samples: Sequence[Sample], settings: TrainSettings, seed: int, frozen_norm: bool,
        on_epoch: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Train ``model`` on ``samples`` for ``settings.epochs``; returns a row of mean losses per epoch.

    ``settings.optimizer`` is SGD with momentum or AdamW (:func:`pipeline.models.optim.make_optimizer`),
    at ``settings.lr`` with linear warmup and cosine decay, ``settings.weight_decay``, batches of
    ``settings.batch_size``. ``frozen_norm`` keeps batch-norm statistics fixed (fine-tuning from a checkpoint).
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(settings.optimizer, params, settings.lr, settings.weight_decay)
    epochs, batch_size = settings.epochs, settings.batch_size
    per_epoch = math.ceil(len(samples) / batch_size)
    total = max(1, epochs * per_epoch)
    rows: list[dict[str, float]] = []
    iteration = 0
    try:
        model.train()
        if frozen_norm:
            freeze_batch_norm(model)
        for epoch in range(epochs):
            start = time.perf_counter()
            sums = dict.fromkeys(("loss", *LOSS_NAMES), 0.0)
            order = rng.permutation(len(samples))
            for b in progress(range(per_epoch), desc=f"detector epoch {epoch + 1}/{epochs}"):
                images, targets = _batch(samples, order[b * batch_size:(b + 1) * batch_size], rng)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(iteration, total, settings.lr)
                losses = model(images, targets)
                loss = sum(losses.values())
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"detector loss is {loss.item()} at iteration {iteration}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP_NORM)
                optimizer.step()
                iteration += 1
                sums["loss"] += loss.item()
                for name in LOSS_NAMES:
                    sums[name] += losses[name].item()
            row = {"epoch": epoch + 1, "iterations": iteration,
                   **{k: v / per_epoch for k, v in sums.items()},
                   "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - start}
            rows.append(row)
            if on_epoch is not None:
                on_epoch(row)
    finally:
        model.eval()
    return rows
