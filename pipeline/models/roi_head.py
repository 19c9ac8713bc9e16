"""ROI features on the backbone's last feature map and the linear classification head.

The paper (II.B) puts ROI pooling after the last feature map and a sigmoid classifier after it;
frame-level features are averaged over time before ROI pooling (II.A). Here: temporal mean,
ROIAlign (``aligned=True``, ``roi_op: align``) or ROIPool (Fast R-CNN's quantized max, ``roi_op:
pool``, torchvision's ``roi_pool``) at each person box, then a spatial max (or mean) over the ROI grid.
Backbones whose map is not a picture (audio: mel band x time; ``per_keyframe``) give every box of
a keyframe the map's mean instead.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import roi_align, roi_pool

from pipeline.models.names import ROI_OPS

ROI_POOLS = ("max", "avg")
DROPOUT = 0.3


class RoiFeatures(nn.Module):
    """Feature map ``[B, D, T, h, w]`` and ROIs ``[K, 5]`` -> (ROI features ``[K, D]``, context ``[B, D, h, w]``).

    ROIs are (batch index, x1, y1, x2, y2) in input pixels; the context is the time-averaged
    feature map the ROIs were pooled from.
    """

    def __init__(self, roi_size: int, spatial_stride: int, pool: str = "max", op: str = "align"):
        super().__init__()
        if pool not in ROI_POOLS:
            raise ValueError(f"unknown ROI pool {pool!r}: expected one of {', '.join(ROI_POOLS)}")
        if op not in ROI_OPS:
            raise ValueError(f"unknown ROI op {op!r}: expected one of {', '.join(ROI_OPS)}")
        self.roi_size = roi_size
        self.spatial_scale = 1.0 / spatial_stride
        self.pool = pool
        self.op = op

    def forward(self, feature_map: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        context = feature_map.mean(dim=2)
        # float32 ROIs and map: under bf16 autocast, box coordinates in bf16 would step by a pixel or more
        if self.op == "align":
            grid = roi_align(context.float(), rois.float(), output_size=self.roi_size,
                             spatial_scale=self.spatial_scale, sampling_ratio=2, aligned=True)
        else:
            grid = roi_pool(context.float(), rois.float(), output_size=self.roi_size, spatial_scale=self.spatial_scale)
        roi = grid.amax(dim=(2, 3)) if self.pool == "max" else grid.mean(dim=(2, 3))
        return roi, context


class KeyframePooling(nn.Module):
    """Feature map ``[B, D, T, h, w]`` and ROIs ``[K, 5]`` -> (features ``[K, D]``, context ``[B, D, 1, 1]``).

    For backbones whose map is not a picture of the keyframe (audio): the map's mean over time and
    space describes the whole keyframe, and each ROI gets that of its batch item.
    """

    def forward(self, feature_map: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        context = feature_map.mean(dim=(2, 3, 4))
        return context[rois[:, 0].long()], context[:, :, None, None]


class LinearHead(nn.Module):
    """Dropout and a linear layer: ROI features ``[N, D]`` -> logits ``[N, C]`` (sigmoid outside)."""

    def __init__(self, roi_dim: int, num_classes: int, dropout: float = DROPOUT):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(roi_dim, num_classes)

    def forward(self, roi: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(roi))


class ActionClassifier(nn.Module):
    """Backbone, ROI features and linear head: the actions of given person boxes, trained end to
    end (the finetuning stage).

    ``forward(clips [B, C, T, H, W], rois [K, 5])`` -> logits ``[K, num_classes]``;
    ``features`` gives the ROI features ``[K, D]`` and context ``[B, D, h, w]`` instead.
    A backbone with ``per_keyframe = True`` gets :class:`KeyframePooling` instead of ROIAlign/ROIPool.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, roi_size: int | None = None, pool: str = "max",
                 dropout: float = DROPOUT, roi_op: str = "align"):
        super().__init__()
        self.backbone = backbone
        if getattr(backbone, "per_keyframe", False):
            self.roi = KeyframePooling()
        elif roi_size is None:
            raise ValueError("a backbone of frames or flow needs roi_size")
        else:
            self.roi = RoiFeatures(int(roi_size), backbone.spatial_stride, pool, roi_op)
        self.head = LinearHead(backbone.out_channels, num_classes, dropout)

    def features(self, clips: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.roi(self.backbone(clips), rois)

    def forward(self, clips: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        roi, _ = self.features(clips, rois)
        return self.head(roi)
