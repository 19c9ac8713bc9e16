"""Classification heads on cached features: their logits on rows of a feature store, and the head file.

Feature arrays stay on the host (a split's context maps need not fit in a GPU); each batch of rows
is copied to the head's device (pinned, non-blocking on CUDA) and the logits come back as float32.

A head file (``results/models/{model}/head.pt``, weights only) holds
``{"head": state_dict, "kind": "linear" | "atr", "roi_dim", "context_dim", "label_ids"}``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.ava.formats import LabelMap
from pipeline.devices import autocast, grad_scaler, select_device
from pipeline.errors import InputError
from pipeline.feature_store import Features
from pipeline.models.atr import AtrHead
from pipeline.models.optim import recipe_lr, recipe_optimizer, set_lr
from pipeline.models.registry import build_head
from pipeline.params import ModelParams
from pipeline.store import atomic_path, load_torch_file

ROW_BATCH = 4096
#: Rows per forward of an ATR head when predicting: each row may bring its keyframe's context map
#: (AVA, I3D at 224: 2048 x 14 x 14 float32, 1.6 MB), so at most this many maps are in memory at once.
ATR_ROW_BATCH = 256


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device``: the array itself on the CPU; on CUDA a pinned copy sent
    without blocking (the copy is ordered before any kernel that reads it on the same stream)."""
    tensor = torch.from_numpy(array)
    if device.type == "cpu":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def head_logits(head: nn.Module, features: Features, index: np.ndarray) -> torch.Tensor:
    """Logits ``[len(index), C]`` of the rows ``index`` of ``features``, on the head's device (float32
    on the CPU; under an autocast, its dtype)."""
    device = next(head.parameters()).device
    roi = to_device(features.roi[index], device)
    if isinstance(head, AtrHead):
        frames, frame_index = np.unique(features.frame_index[index], return_inverse=True)
        return head(roi, to_device(features.context[frames], device),
                    to_device(frame_index.astype(np.int64), device), to_device(features.attend[index], device))
    return head(roi)


@torch.no_grad()
def row_logits(head: nn.Module, features: Features, rows: np.ndarray, precision: str = "off") -> np.ndarray:
    """Logits float32 [len(rows), C] of the rows ``rows`` of ``features``, :data:`ROW_BATCH` at a time
    (:data:`ATR_ROW_BATCH` for an ATR head, which reads a context map per keyframe),
    on the head's device (autocast per ``precision`` on CUDA)."""
    device = next(head.parameters()).device
    step = ATR_ROW_BATCH if isinstance(head, AtrHead) else ROW_BATCH
    parts = []
    for i in range(0, len(rows), step):
        with autocast(device, precision):
            logits = head_logits(head, features, rows[i:i + step])
        parts.append(logits.float().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, features.label.shape[1]), np.float32)


def save_head(path: str | Path, head: nn.Module, kind: str, features: Features, label_map: LabelMap) -> None:
    """Write the head file of ``head`` (trained on ``features``) atomically."""
    with atomic_path(path) as tmp:
        state = {name: value.detach().cpu() for name, value in head.state_dict().items()}
        torch.save({"head": state, "kind": kind, "roi_dim": features.roi.shape[1],
                    "context_dim": features.context.shape[1], "label_ids": list(label_map.ids)}, tmp)


def load_head(path: str | Path, label_map: LabelMap, kind: str, device: torch.device | None = None) -> nn.Module:
    """The head saved by :func:`save_head` at ``path``, in eval mode, on ``device`` (default the CPU).

    Its classes must be the label map's and its kind ``kind``, else an :class:`InputError`.
    """
    state = load_torch_file(path, "head")
    if list(state["label_ids"]) != list(label_map.ids):
        raise InputError(path, "the head's classes are not the label map's")
    if state["kind"] != kind:
        raise InputError(path, f"a {state['kind']} head, but the params say {kind}")
    head = build_head(state["kind"], int(state["roi_dim"]), int(state["context_dim"]), len(label_map))
    head.load_state_dict(state["head"])
    return head.to(device or torch.device("cpu")).eval()


def train_head(features: Features, params: ModelParams, log: list[dict[str, float]] | None = None,
               device: torch.device | None = None) -> nn.Module:
    """Train the head of ``params`` on the rows with ``train_mask`` on ``device`` (default: ``params.compute``'s);
    appends {epoch, loss, lr, seconds} to ``log``. The recipe is ``params.train``'s
    (:mod:`pipeline.models.optim`). Forward passes under ``params.compute.precision``'s
    autocast on CUDA (fp16 with a loss scaler); on the CPU in float32, deterministic for the seed."""
    device = device or select_device(params.compute.device)
    precision = params.compute.precision
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    settings = params.train
    rows = np.flatnonzero(features.train_mask)
    if len(rows) == 0:
        raise ValueError("no training row (train_mask) in the features")
    head = build_head(params.head, features.roi.shape[1], features.context.shape[1], features.label.shape[1])
    head.to(device)
    optimizer = recipe_optimizer(settings, head.parameters())
    per_epoch = -(-len(rows) // settings.batch_size)
    scaler = grad_scaler(device, precision)
    loss_fn = nn.BCEWithLogitsLoss()
    start = time.monotonic()
    head.train()
    for epoch in range(1, settings.epochs + 1):
        order = rng.permutation(rows)
        total = torch.zeros((), dtype=torch.float64, device=device)   # summed on the device: no sync per step
        for i in range(0, len(order), settings.batch_size):
            index = np.sort(order[i:i + settings.batch_size])
            set_lr(optimizer, recipe_lr(settings, (epoch - 1) * per_epoch + i // settings.batch_size, per_epoch))
            labels = to_device(features.label[index].astype(np.float32), device)
            with autocast(device, precision):
                logits = head_logits(head, features, index)
            loss = loss_fn(logits.float(), labels)
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.detach().double() * len(index)
        row = {"epoch": epoch, "loss": total.item() / len(rows), "lr": optimizer.param_groups[0]["lr"],
               "seconds": time.monotonic() - start}
        if log is not None:
            log.append(row)
        if epoch == 1 or epoch % 10 == 0 or epoch == settings.epochs:
            print(f"epoch {epoch}: loss {row['loss']:.4f} ({row['seconds']:.1f} s)", file=sys.stderr)
    return head.eval()
