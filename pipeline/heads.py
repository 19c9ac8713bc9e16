"""Classification heads on cached features: their logits on rows of a feature store, and the head file.

A head file (``results/models/{model}/head.pt``, weights only) holds
``{"head": state_dict, "kind": "linear" | "atr", "roi_dim", "context_dim", "label_ids"}``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.ava.formats import LabelMap
from pipeline.errors import InputError
from pipeline.feature_store import Features
from pipeline.models.atr import AtrHead
from pipeline.models.registry import build_head
from pipeline.store import atomic_path

ROW_BATCH = 4096


def head_logits(head: nn.Module, features: Features, index: np.ndarray) -> torch.Tensor:
    """Logits float32 ``[len(index), C]`` of the rows ``index`` of ``features``."""
    roi = torch.from_numpy(features.roi[index])
    if isinstance(head, AtrHead):
        frames, frame_index = np.unique(features.frame_index[index], return_inverse=True)
        return head(roi, torch.from_numpy(features.context[frames]), torch.from_numpy(frame_index.astype(np.int64)),
                    torch.from_numpy(features.attend[index]))
    return head(roi)


@torch.no_grad()
def row_logits(head: nn.Module, features: Features, rows: np.ndarray) -> np.ndarray:
    """Logits float32 [len(rows), C] of the rows ``rows`` of ``features``, :data:`ROW_BATCH` at a time."""
    parts = [head_logits(head, features, rows[i:i + ROW_BATCH]).numpy() for i in range(0, len(rows), ROW_BATCH)]
    return np.concatenate(parts) if parts else np.zeros((0, features.label.shape[1]), np.float32)


def save_head(path: str | Path, head: nn.Module, kind: str, features: Features, label_map: LabelMap) -> None:
    """Write the head file of ``head`` (trained on ``features``) atomically."""
    with atomic_path(path) as tmp:
        torch.save({"head": head.state_dict(), "kind": kind, "roi_dim": features.roi.shape[1],
                    "context_dim": features.context.shape[1], "label_ids": list(label_map.ids)}, tmp)


def load_head(path: str | Path, label_map: LabelMap, kind: str) -> nn.Module:
    """The head saved by :func:`save_head` at ``path``, in eval mode.

    Its classes must be the label map's and its kind ``kind``, else an :class:`InputError`.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if list(state["label_ids"]) != list(label_map.ids):
        raise InputError(path, "the head's classes are not the label map's")
    if state["kind"] != kind:
        raise InputError(path, f"a {state['kind']} head, but the params say {kind}")
    head = build_head(state["kind"], int(state["roi_dim"]), int(state["context_dim"]), len(label_map))
    head.load_state_dict(state["head"])
    return head.eval()
