"""Fine-tune the person detector on the ground-truth person boxes of the training split.

    python -m pipeline.detect.train --frames-dir results/frames \\
        --ground-truth results/dataset/train.gt.csv --out results/models/detector/detector.pt \\
        --params JSON --threads N [--log-csv results/models/detector/train_log.csv]

Each (video, keyframe) of the ground truth is one training image: the stored frame nearest the
keyframe, with one box per person. The detector starts from the COCO checkpoint named in
``weights`` (reduced to the person class) or from random initialisation. The output holds the
weights only (``torch.load(weights_only=True)`` reads it), with a provenance sidecar that names
the architecture.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torchvision.models.detection import FasterRCNN

from pipeline.ava.formats import AvaRows, read_ground_truth
from pipeline.detect.boxes import distinct_persons, keyframe_groups
from pipeline.detect.keyframes import KeyframeImages
from pipeline.detect.model import PERSON_LABEL, freeze_batch_norm, initial_detector
from pipeline.errors import InputError
from pipeline.progress import progress
from pipeline.store import atomic_path, write_sidecar, write_text

STAGE = "detect.train"
OPTIMIZERS = ("sgd", "adamw")
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
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


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] RGB -> float32 [3, H, W] in [0, 1], the detector's input."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def target(boxes: np.ndarray, height: int, width: int) -> dict[str, torch.Tensor]:
    """torchvision's training target: pixel boxes [n, 4] float32 and person labels [n] int64."""
    scale = np.array([width, height, width, height], dtype=np.float32)
    return {"boxes": torch.from_numpy(boxes.astype(np.float32) * scale).reshape(-1, 4),
            "labels": torch.full((len(boxes),), PERSON_LABEL, dtype=torch.int64)}


def augment(sample: Sample, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """A random horizontal flip and brightness/contrast change; returns (image tensor, boxes)."""
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


def fit(model: FasterRCNN, samples: Sequence[Sample], epochs: int, lr: float, batch_size: int,
        seed: int, frozen_norm: bool, optimizer_name: str = "sgd",
        on_epoch: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Train ``model`` on ``samples``; returns a row of mean losses per epoch.

    ``optimizer_name`` is one of :data:`OPTIMIZERS` (SGD with momentum, or AdamW), with linear
    warmup and cosine decay of the learning rate.
    ``frozen_norm`` keeps batch-norm statistics fixed (fine-tuning from a checkpoint).
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer_name == "sgd":
        optimizer = torch.optim.SGD(params, lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    elif optimizer_name == "adamw":
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY)
    else:
        raise ValueError(f"unknown optimizer {optimizer_name!r}; expected one of {', '.join(OPTIMIZERS)}")
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
                images, targets = [], []
                for i in order[b * batch_size:(b + 1) * batch_size]:
                    x, boxes = augment(samples[int(i)], rng)
                    images.append(x)
                    targets.append(target(boxes, x.shape[1], x.shape[2]))
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(iteration, total, lr)
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


def log_csv(rows: list[dict[str, float]]) -> str:
    """The training log as CSV text with a header."""
    if not rows:
        return ""
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join(f"{r[k]:.6g}" for k in keys) for r in rows]
    return "\n".join(lines) + "\n"


def train_detector(frames_dir: Path, ground_truth: Path, out: Path, params: Mapping[str, Any],
                   seed: int, log_path: Path | None) -> list[dict[str, float]]:
    """Fine-tune the detector of ``params`` on ``ground_truth`` and save its weights to ``out``."""
    gt = read_ground_truth(ground_truth)
    keyframes = training_keyframes(gt)
    if not keyframes:
        raise InputError(ground_truth, "no ground-truth boxes to train the detector on")
    cfg = params["train"]
    torch.manual_seed(seed)   # the random initialisation too: same seed, same detector
    model = initial_detector(params)
    print(f"detector {params['arch']} from {params.get('weights') or 'random initialisation'}: "
          f"{len(keyframes)} keyframes, {sum(len(k.boxes) for k in keyframes)} person boxes, "
          f"{cfg['epochs']} epochs", file=sys.stderr)

    def report(row: dict[str, float]) -> None:
        print(json.dumps({k: round(v, 5) for k, v in row.items()}), file=sys.stderr)

    with KeyframeImages(frames_dir) as images:
        rows = fit(model, KeyframeSamples(keyframes, images), epochs=int(cfg["epochs"]),
                   lr=float(cfg["lr"]), batch_size=int(cfg["batch_size"]), seed=seed,
                   frozen_norm=bool(params.get("weights")),
                   optimizer_name=cfg.get("optimizer", "sgd"), on_epoch=report)
    with atomic_path(out) as tmp:
        torch.save(model.state_dict(), tmp)
    write_sidecar(out, STAGE, {**params, "n_keyframes": len(keyframes),
                               "ground_truth": str(ground_truth)})
    if log_path is not None:
        write_text(log_path, log_csv(rows))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames-dir", type=Path, required=True)
    parser.add_argument("--ground-truth", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=json.loads, required=True,
                        help="the detect config section as JSON, with the run's seed under 'seed'")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-csv", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train_detector(args.frames_dir, args.ground_truth, args.out, args.params,
                   int(args.params.get("seed", 0)), args.log_csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
