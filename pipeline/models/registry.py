"""Backbones and heads by name, as the config's ``arch``, ``modality`` and ``head`` keys give them."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipeline.models.atr import AtrHead
from pipeline.models.r3d import R3dTiny, TorchvisionVideoResNet
from pipeline.models.roi_head import LinearHead

TORCHVISION_ARCHS = ("r3d_18", "mc3_18", "r2plus1d_18")
ARCHS = ("r3d_tiny",) + TORCHVISION_ARCHS
HEADS = ("linear", "atr")


def modality_channels(modality: str) -> int:
    """Input channels of a modality: ``rgb`` (R, G, B) and ``flow/<method>`` (dx, dy, dx*dy) have 3."""
    if modality == "rgb" or modality.startswith("flow/"):
        return 3
    raise ValueError(f"unknown modality {modality!r}: expected rgb or flow/<method>")


def build_backbone(arch: str, modality: str, weights: str | Path | None = None) -> nn.Module:
    """The backbone ``arch`` for ``modality``; ``weights``: a local checkpoint (never downloaded).

    For ``r3d_tiny`` the checkpoint is this module's own state dict; for torchvision's archs it is
    torchvision's file for that arch.
    """
    in_channels = modality_channels(modality)
    if arch == "r3d_tiny":
        net = R3dTiny(in_channels)
        if weights is not None:
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return net
    if arch in TORCHVISION_ARCHS:
        return TorchvisionVideoResNet(arch, weights)
    raise ValueError(f"unknown arch {arch!r}: expected one of {', '.join(ARCHS)}")


def build_head(kind: str, roi_dim: int, context_dim: int, num_classes: int) -> nn.Module:
    """A classification head on cached features: ``linear`` (ROI feature only) or ``atr``."""
    if kind == "linear":
        return LinearHead(roi_dim, num_classes)
    if kind == "atr":
        return AtrHead(roi_dim, context_dim, num_classes)
    raise ValueError(f"unknown head {kind!r}: expected one of {', '.join(HEADS)}")
