"""Backbones and heads by name, as the config's ``arch``, ``modality`` and ``head`` keys give them."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from pipeline.models.artnet import ArtNet18
from pipeline.models.atr import AtrActionClassifier, AtrHead
from pipeline.models.i3d import I3dResNet50
from pipeline.models.names import (ARCHS, ARTNET_ARCHS, AUDIO_ARCHS, HEADS, I3D_ARCHS, P3D_ARCHS, TORCHVISION_ARCHS,
                                   TSN_ARCHS, VIDEO_ARCHS, arch_problem, layout_problem)
from pipeline.models.p3d import P3dResNet152
from pipeline.models.r3d import R3dTiny, TorchvisionVideoResNet
from pipeline.models.roi_head import DROPOUT, ActionClassifier, LinearHead
from pipeline.models.tsn import TsnResNet
from pipeline.models.video_checkpoints import load_video_checkpoint
from pipeline.models.vgg_audio import Vgg16Audio, VggTiny
from pipeline.store import load_torch_file

__all__ = ["ARCHS", "ARTNET_ARCHS", "AUDIO_ARCHS", "HEADS", "I3D_ARCHS", "P3D_ARCHS", "TSN_ARCHS", "VIDEO_ARCHS", "build_action_model", "build_backbone", "build_head",
           "modality_channels"]


def modality_channels(modality: str) -> int:
    """Input channels of a modality: ``rgb`` (R, G, B) and ``flow/<method>`` (dx, dy, dx*dy) have 3,
    ``audio`` (log-mel) 1."""
    if modality == "rgb" or modality.startswith("flow/"):
        return 3
    if modality == "audio":
        return 1
    raise ValueError(f"unknown modality {modality!r}: expected rgb, flow/<method> or audio")


def build_backbone(arch: str, modality: str, weights: str | Path | None = None,
                   layout: str = "torchvision") -> nn.Module:
    """The backbone ``arch`` for ``modality``; ``weights``: a local checkpoint (never downloaded) of
    ``layout``.

    With ``layout="torchvision"``: for ``r3d_tiny`` and ``vgg_tiny`` the checkpoint is that module's
    own state dict; for torchvision's archs (video ResNets, the ``tsn_*`` ImageNet networks,
    ``vgg16``) it is torchvision's file for that network; for ``i3d_*``, torchvision's ImageNet
    ResNet-50 file, inflated; for ``p3d_199``, its ResNet-152 file; for ``artnet18``, its ResNet-18
    file. ``pyslowfast``, ``mmaction2``, ``caffe2``: a Kinetics checkpoint of an ``i3d_*`` arch in that
    project's layout; ``pseudo-3d-pytorch``: Qiu et al.'s Kinetics ``p3d_199``
    (:mod:`pipeline.models.video_checkpoints`).
    """
    in_channels = modality_channels(modality)
    problem = arch_problem(arch, modality) or layout_problem(arch, layout)
    if problem:
        raise ValueError(problem)
    if arch in ("r3d_tiny", "vgg_tiny"):
        net = R3dTiny(in_channels) if arch == "r3d_tiny" else VggTiny()
        if weights is not None:
            net.load_state_dict(load_torch_file(weights, "backbone weights"))
        return net
    if arch in TORCHVISION_ARCHS:
        return TorchvisionVideoResNet(arch, weights)
    if arch in TSN_ARCHS:
        return TsnResNet(arch, weights)
    if layout != "torchvision":
        net = build_backbone(arch, modality)
        if weights is not None:
            load_video_checkpoint(net, arch, weights, layout)
        return net
    if arch in I3D_ARCHS:
        return I3dResNet50(nonlocal_blocks=arch == "i3d_r50_nl", weights=weights)
    if arch in P3D_ARCHS:
        return P3dResNet152(weights)
    if arch in ARTNET_ARCHS:
        return ArtNet18(weights)
    return Vgg16Audio(weights)


def build_action_model(arch: str, modality: str, num_classes: int, roi_size: int | None, roi_pool: str,
                       weights: str | Path | None = None, dropout: float = DROPOUT, layout: str = "torchvision",
                       roi_op: str = "align", head: str = "linear", context_frames: int = 1) -> ActionClassifier:
    """The backbone ``arch`` with its ROI features (``roi_op``: ROIAlign or ROIPool, then ``roi_pool``
    over the grid) and a ``linear`` head (``dropout`` before it) or the actor-target relation
    (``atr``, on ``context_frames`` time bins); ``weights``: a local backbone checkpoint of ``layout``."""
    backbone = build_backbone(arch, modality, weights, layout)
    if head == "atr":
        return AtrActionClassifier(backbone, num_classes, roi_size, roi_pool, dropout, context_frames, roi_op)
    if head != "linear":
        raise ValueError(f"unknown head {head!r}: expected one of {', '.join(HEADS)}")
    return ActionClassifier(backbone, num_classes, roi_size, roi_pool, dropout, roi_op)


def build_head(kind: str, roi_dim: int, context_dim: int, num_classes: int) -> nn.Module:
    """A classification head on cached features: ``linear`` (ROI feature only) or ``atr``."""
    if kind == "linear":
        return LinearHead(roi_dim, num_classes)
    if kind == "atr":
        return AtrHead(roi_dim, context_dim, num_classes)
    raise ValueError(f"unknown head {kind!r}: expected one of {', '.join(HEADS)}")
