"""Fine-tuning the person detector: training images, augmentation, the learning-rate schedule, the loop.

Each (video, keyframe) of the ground truth is one training image: the stored frame nearest the
keyframe, with one box per person (:func:`training_keyframes`, :class:`KeyframeSamples`).
:func:`fit` trains with the optimizer a :class:`~pipeline.params.TrainSettings` names, a linear
warmup and a cosine decay of the learning rate, random flips and brightness/contrast changes.

Randomness does not depend on how the work is split. The order of epoch ``e`` is
``default_rng([seed, e]).permutation``; image ``i``'s flip and brightness/contrast in epoch ``e``
come from ``default_rng([seed, e, i])``, and so do its anchors and proposals sampled for the losses
(:class:`ImageSeededSampler`, in place of torchvision's sampler that draws from torch's one global
generator in batch order). The same seed thus gives the same training with any number of
DataLoader workers, and the same draws for every image with any number of processes.

Several processes (``torchrun``): the model is wrapped in DistributedDataParallel; every global batch
of ``batch_size`` images is cut into equal shares, one per process (:class:`pipeline.batches.GlobalBatchSampler`, ``pad_last``), so
that the averaged gradient is that of the global batch; batch norm that trains shares its statistics
(:func:`pipeline.devices.share_batch_statistics`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler

from pipeline.ava.formats import AvaRows
from pipeline.detect.boxes import distinct_persons, keyframe_groups
from pipeline.detect.keyframes import KeyframeImages
from pipeline.detect.model import PERSON_LABEL, freeze_batch_norm, image_tensor, mixed_precision
from pipeline.batches import GlobalBatchSampler, ItemKey, item_rng
from pipeline.devices import Processes, all_reduce_sum, grad_scaler, share_batch_statistics
from pipeline.models.optim import make_optimizer
from pipeline.params import TrainSettings
from pipeline.progress import progress
from pipeline.training_state import restore

WARMUP_FRACTION = 0.1           # of all iterations, at most MAX_WARMUP_ITERATIONS
MAX_WARMUP_ITERATIONS = 500
GRAD_CLIP_NORM = 10.0
LOSS_NAMES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
ONE_PROCESS = Processes(rank=0, world_size=1, local_rank=0)
RPN_DRAWS, ROI_DRAWS = 1, 2     # the streams of an image's draws besides its augmentation

Sample = tuple[np.ndarray, np.ndarray]   # image [H, W, 3] uint8 RGB, boxes [n, 4] float32 normalized
Target = dict[str, torch.Tensor]


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
    """(image, boxes) of each training keyframe, the image read from the frame stores on demand
    (in each DataLoader worker from its own open stores: :class:`KeyframeImages` reopens after a fork)."""

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


def target(boxes: np.ndarray, height: int, width: int) -> Target:
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


def image_seed(seed: int, key: ItemKey, stream: int) -> int:
    """A torch seed for one stream of draws of image ``key`` = (epoch, index)."""
    return int(np.random.SeedSequence([seed, key[0], key[1], stream]).generate_state(1, np.uint64)[0] >> 1)


class AugmentedSamples(Dataset):
    """Item (epoch, index): sample ``index`` augmented with ``default_rng([seed, epoch, index])``;
    returns (image tensor [3, H, W], target, the key)."""

    def __init__(self, samples: Sequence[Sample], seed: int):
        self.samples, self.seed = samples, seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: ItemKey) -> tuple[torch.Tensor, Target, ItemKey]:
        epoch, index = key
        x, boxes = augment(self.samples[index], item_rng(self.seed, epoch, index))
        return x, target(boxes, x.shape[1], x.shape[2]), key


def collate(items: list[tuple[torch.Tensor, Target, ItemKey]]) -> tuple[list[torch.Tensor], list[Target],
                                                                           list[ItemKey]]:
    """A batch as torchvision's detectors take it: lists of images and targets (and the keys)."""
    images, targets, keys = zip(*items)
    return list(images), list(targets), list(keys)


class ImageSeededSampler(BalancedPositiveNegativeSampler):
    """torchvision's positive/negative sampler (for the RPN's anchors, the box head's proposals),
    drawing each image's sample from its own seed (:attr:`seeds`, one per image of the batch, set
    before each forward) instead of torch's global generator in batch order."""

    def __init__(self, batch_size_per_image: int, positive_fraction: float):
        super().__init__(batch_size_per_image, positive_fraction)
        self.seeds: list[int] = []

    def __call__(self, matched_idxs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if len(self.seeds) != len(matched_idxs):
            raise RuntimeError(f"{len(matched_idxs)} images but {len(self.seeds)} sampling seeds")
        pos_masks, neg_masks = [], []
        for matched, seed in zip(matched_idxs, self.seeds):
            generator = torch.Generator().manual_seed(seed)
            positive = torch.where(matched >= 1)[0]
            negative = torch.where(matched == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            pick_pos = torch.randperm(positive.numel(), generator=generator)[:num_pos].to(matched.device)
            pick_neg = torch.randperm(negative.numel(), generator=generator)[:num_neg].to(matched.device)
            pos_mask = torch.zeros_like(matched, dtype=torch.uint8)
            neg_mask = torch.zeros_like(matched, dtype=torch.uint8)
            pos_mask[positive[pick_pos]] = 1
            neg_mask[negative[pick_neg]] = 1
            pos_masks.append(pos_mask)
            neg_masks.append(neg_mask)
        return pos_masks, neg_masks


def seed_samplers(model: FasterRCNN) -> tuple[ImageSeededSampler, ImageSeededSampler]:
    """Put :class:`ImageSeededSampler` in place of the RPN's and the box head's samplers (same sizes)."""
    samplers = []
    for owner in (model.rpn, model.roi_heads):
        old = owner.fg_bg_sampler
        if not isinstance(old, ImageSeededSampler):
            owner.fg_bg_sampler = ImageSeededSampler(old.batch_size_per_image, old.positive_fraction)
        samplers.append(owner.fg_bg_sampler)
    return samplers[0], samplers[1]


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@dataclass(frozen=True)
class EpochEnd:
    """What :func:`fit` hands its ``on_epoch`` after each epoch: the epoch's log row, the epochs done,
    the log so far, and what a resumable state holds (the model unwrapped from DDP, the optimizer,
    ``extra``: the LR schedule's iteration and the loss scaler)."""

    row: dict[str, float]
    epochs_done: int
    log: list[dict[str, float]]
    model: nn.Module
    optimizer: torch.optim.Optimizer
    extra: dict[str, Any]


def fit(model: FasterRCNN, samples: Sequence[Sample], settings: TrainSettings, seed: int, frozen_norm: bool,
        on_epoch: Callable[[EpochEnd], None] | None = None, *, device: torch.device = torch.device("cpu"),
        precision: str = "off", loader_workers: int = 0, processes: Processes = ONE_PROCESS,
        resume: dict[str, Any] | None = None) -> list[dict[str, float]]:
    """Train ``model`` on ``samples`` for ``settings.epochs``; returns a row of mean losses per epoch.

    ``settings.optimizer`` is SGD with momentum or AdamW (:func:`pipeline.models.optim.make_optimizer`),
    at ``settings.lr`` with linear warmup and cosine decay, ``settings.weight_decay``, global batches
    of ``settings.batch_size``. ``frozen_norm`` keeps batch-norm statistics fixed (fine-tuning from a
    checkpoint). The model trains on ``device`` (where it stays); on CUDA its heavy parts run under
    autocast at ``precision`` (:func:`pipeline.detect.model.mixed_precision`), with a loss scaler
    for fp16; ``loader_workers`` DataLoader processes read and augment the images. ``processes``:
    this process's place among torchrun's (its process group joined); each takes its share of every
    batch. ``resume``: a state of :mod:`pipeline.training_state` saved
    from ``on_epoch``'s :class:`EpochEnd`; training goes on after its epoch.
    """
    torch.manual_seed(seed)
    mixed_precision(model.to(device), device, precision)
    rpn_sampler, roi_sampler = seed_samplers(model)
    if processes.distributed and not frozen_norm and has_batch_norm(model):
        model = share_batch_statistics(model, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(settings.optimizer, params, settings.lr, settings.weight_decay)
    scaler = grad_scaler(device, precision)
    batches = GlobalBatchSampler(len(samples), settings.batch_size, seed, processes.rank, processes.world_size,
                                 pad_last=True)
    epochs, per_epoch = settings.epochs, len(batches)
    total = max(1, epochs * per_epoch)
    rows: list[dict[str, float]] = []
    iteration, first_epoch = 0, 0
    if resume is not None:
        first_epoch, rows = restore(resume, model, optimizer)
        iteration = int(resume["iteration"])
        if scaler.is_enabled() and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
    cuda = device.type == "cuda"
    loader = DataLoader(AugmentedSamples(samples, seed), batch_sampler=batches, collate_fn=collate,
                        num_workers=loader_workers, pin_memory=cuda,
                        persistent_workers=loader_workers > 0 and epochs - first_epoch > 1)
    net: nn.Module = model
    if processes.distributed:
        net = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    try:
        net.train()
        if frozen_norm:
            freeze_batch_norm(model)
        for epoch in range(first_epoch, epochs):
            start = time.perf_counter()
            sums = torch.zeros(1 + len(LOSS_NAMES), dtype=torch.float64, device=device)
            batches.set_epoch(epoch)
            shown = (progress(loader, desc=f"detector epoch {epoch + 1}/{epochs}", total=per_epoch)
                     if processes.is_main else loader)   # one progress bar in the log: rank 0's
            for images, targets, keys in shown:
                images = [x.to(device, non_blocking=True) for x in images]
                targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
                rpn_sampler.seeds = [image_seed(seed, key, RPN_DRAWS) for key in keys]
                roi_sampler.seeds = [image_seed(seed, key, ROI_DRAWS) for key in keys]
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(iteration, total, settings.lr)
                losses = net(images, targets)
                loss = sum(losses.values())
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                norm = torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP_NORM)
                if not scaler.is_enabled() and not torch.isfinite(norm):   # the same on every process
                    raise FloatingPointError(f"detector loss {loss.item()}, gradient norm {norm.item()} "
                                             f"at iteration {iteration}")
                scaler.step(optimizer)
                scaler.update()
                iteration += 1
                sums += torch.stack([loss.detach(), *(losses[name].detach() for name in LOSS_NAMES)]).double()
            means = [all_reduce_sum(v, device) / (processes.world_size * per_epoch) for v in sums.tolist()]
            row = {"epoch": epoch + 1, "iterations": iteration, **dict(zip(("loss", *LOSS_NAMES), means)),
                   "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - start}
            rows.append(row)
            if on_epoch is not None:
                on_epoch(EpochEnd(row, epoch + 1, list(rows), model, optimizer,
                                  {"iteration": iteration, "scaler": scaler.state_dict()}))
    finally:
        model.eval()
    return rows
