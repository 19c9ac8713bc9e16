"""Finetune stage: train a backbone with its ROI head end to end on the training boxes (paper II.D).

    python -m pipeline.stages.finetune --label-map L --ground-truth GT --boxes BOXES --stores S1.h5 S2.h5 ...
        --out results/models/{backbone}/backbone.pt --log-csv results/models/{backbone}/finetune_log.csv
        --params BackboneParams --threads N

Items are keyframes (a clip and all its training boxes); the loss is binary cross-entropy with
logits over every box and class (multi-label, sigmoid). Training boxes are the ground-truth persons
plus the detected person boxes (``--boxes``) that overlap one by ``train_box_iou``
(:mod:`pipeline.detect.training_boxes`). Writes the weights only, ``{"backbone": state_dict,
"head": state_dict}`` (``torch.load(weights_only=True)`` loads it), its provenance sidecar, and the
CSV log of the mean loss and last learning rate per epoch. The recipe is ``finetune``'s
(:mod:`pipeline.models.optim`): SGD with momentum (or AdamW) at a constant rate, as the paper's, or
with warmup and cosine or step decay; ``freeze_bn`` keeps every batch norm as pretrained
(statistics and affine parameters); ``head: atr`` trains the actor-target relation end to end
with the backbone (:class:`pipeline.models.atr.AtrActionClassifier`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from pipeline.ava.formats import LabelMap, read_boxes, read_ground_truth, read_label_map
from pipeline.cli import add_params_argument, read_params, run_stage, set_threads, stage_parser
from pipeline.batches import GlobalBatchSampler
from pipeline.data.clips import ClipSpec, Keyframe, KeyframeDataset, collate_keyframes, group_keyframes
from pipeline.detect.training_boxes import training_boxes
from pipeline.devices import (all_reduce_sum, autocast, grad_scaler, process_group, processes_from_env, select_device,
                              share_batch_statistics)
from pipeline.errors import InputError
from pipeline.models.optim import (batch_norm_eval, freeze_batch_norm_parameters, recipe_lr, recipe_optimizer,
                                   set_lr)
from pipeline.models.registry import build_action_model
from pipeline.models.roi_head import ActionClassifier
from pipeline.params import BackboneParams, as_dict, to_json
from pipeline.progress import progress
from pipeline.store import atomic_path, write_log_csv, write_sidecar
from pipeline.training_state import load_state, remove_state, restore, save_state


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


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Torch's seed for one process's epoch (dropout): a resumed epoch draws what it drew the first time."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def train_epoch(model: torch.nn.Module, loader: torch.utils.data.DataLoader, optimizer: torch.optim.Optimizer,
                device: torch.device, precision: str, scaler: torch.amp.GradScaler, desc: str,
                lr_of_step: Callable[[int], float] | None = None, freeze_bn: bool = False) -> float:
    """One pass over ``loader``; returns the mean loss per box over every process (BCE with logits,
    mean over classes). ``lr_of_step(i)``: the learning rate of the epoch's ``i``-th step (none: the
    optimizer's as it is); ``freeze_bn``: batch norms normalize with their running statistics.

    Each step's loss is normalized by the elements (boxes x classes) of the whole global batch, and
    multiplied by the number of processes that DistributedDataParallel averages over, so that the
    gradient of any number of processes is that of one process on the global batch.
    """
    model.train()
    if freeze_bn:
        batch_norm_eval(model)
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="sum")
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    total, boxes = 0.0, 0.0
    for step, batch in enumerate(progress(loader, desc=desc, unit="batch")):
        if lr_of_step is not None:
            set_lr(optimizer, lr_of_step(step))
        clips = batch["clips"].to(device, non_blocking=True)
        rois = batch["rois"].to(device, non_blocking=True)
        labels = batch["labels"].to(device, non_blocking=True)
        with autocast(device, precision):
            logits = model(clips, rois)
        loss_sum = loss_fn(logits.float(), labels)
        loss = loss_sum / logits.numel()
        if world_size > 1:
            loss = loss * (world_size * logits.numel() / all_reduce_sum(float(logits.numel()), device))
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += all_reduce_sum(loss_sum.item() / logits.shape[1], device)
        boxes += all_reduce_sum(float(len(logits)), device)
    return total / max(boxes, 1.0)


def finetune(keyframes: list[Keyframe], stores: dict[str, Path], params: BackboneParams, num_classes: int,
             out: str | Path | None = None, log: list[dict[str, float]] | None = None) -> ActionClassifier:
    """Train the action model of ``params`` on ``keyframes``; returns it (unwrapped, on its device).

    Appends {epoch, loss, seconds} rows to ``log``. With ``out``, the training state is saved beside
    it after every epoch (by the first process) and a saved state of the same parameters is resumed.
    Run by several processes (torchrun), each trains on its share of every global batch.
    """
    processes = processes_from_env()
    device = select_device(params.compute.device, processes.local_rank)
    settings = params.finetune
    sampler = GlobalBatchSampler(len(keyframes), settings.batch_size, params.seed, processes.rank,
                                 processes.world_size)   # first: it checks that the batch splits evenly
    torch.manual_seed(params.seed)
    model = build_action_model(params.arch, params.modality, num_classes, params.roi_size, params.roi_pool,
                               params.weights, params.dropout, params.weights_layout, params.roi_op, settings.head,
                               params.context_frames)
    if settings.freeze_bn:
        freeze_batch_norm_parameters(model)
    elif processes.distributed:
        model = share_batch_statistics(model, device)
    optimizer = recipe_optimizer(settings, model.parameters())
    log = log if log is not None else []
    done = 0
    state = load_state(out, to_json(params)) if out is not None else None
    if state is not None:
        done, log[:] = restore(state, model, optimizer)
    model.to(device)
    optimizer_to(optimizer, device)
    trained: torch.nn.Module = model
    if processes.distributed:
        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    workers = params.compute.loader_workers
    loader = torch.utils.data.DataLoader(
        KeyframeDataset(keyframes, stores, ClipSpec.from_params(params), flip=True, seed=params.seed),
        batch_sampler=sampler, collate_fn=collate_keyframes, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=False)
    scaler = grad_scaler(device, params.compute.precision)
    start = time.monotonic()
    for epoch in range(done + 1, settings.epochs + 1):
        sampler.set_epoch(epoch)
        torch.manual_seed(epoch_seed(params.seed, epoch, processes.rank))
        first_step = (epoch - 1) * len(sampler)
        loss = train_epoch(trained, loader, optimizer, device, params.compute.precision, scaler,
                           desc=f"finetune epoch {epoch}",
                           lr_of_step=lambda i: recipe_lr(settings, first_step + i, len(sampler)),
                           freeze_bn=settings.freeze_bn)
        row = {"epoch": epoch, "loss": loss, "lr": optimizer.param_groups[0]["lr"],
               "seconds": time.monotonic() - start}
        log.append(row)
        if processes.is_main:
            print(f"epoch {epoch}: loss {loss:.4f} ({row['seconds']:.1f} s)", file=sys.stderr)
            if out is not None:
                save_state(out, to_json(params), epoch, model, optimizer, log)
    return model


def optimizer_to(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Move a (restored) optimizer's state tensors to ``device``."""
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                state[key] = value.to(device)


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
    processes = processes_from_env()
    log: list[dict[str, float]] = []
    with process_group(processes, select_device(params.compute.device, processes.local_rank)):
        model = finetune(keyframes, stores, params, len(label_map), args.out, log)
    if processes.is_main:
        with atomic_path(args.out) as tmp:
            torch.save({"backbone": model.backbone.cpu().state_dict(), "head": model.head.cpu().state_dict()}, tmp)
        write_sidecar(args.out, "finetune", as_dict(params))
        write_log_csv(args.log_csv, log)
        write_sidecar(args.log_csv, "finetune", as_dict(params))
        remove_state(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
