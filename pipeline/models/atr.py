"""The actor-target relation (paper II.C): a non-local operation between a person's ROI feature
and the features of its clip outside the person's box, "through space and time".

The ROI feature gives the query; every position of the clip's context map (``T x h x w``: the
backbone's last feature map averaged into ``context_frames`` time bins) whose cell lies outside the
box gives a key and a value (embedded-Gaussian non-local block: softmax of scaled dot products).
The attended value, projected back to the ROI dimension, is added to the ROI feature (residual)
before dropout and a linear classifier. The output projection starts at zero, so an untrained
relation is the linear head. Positions inside the box get exactly zero weight: the relation term
does not depend on the context inside the box (a test changes it and compares).
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.roi_head import DROPOUT, ActionClassifier

EMBED_DIM = 64


def outside_mask(boxes: torch.Tensor, height: int, width: int,
                 cell_w: float, cell_h: float) -> torch.Tensor:
    """Which context-map cells lie outside each box.

    boxes: ``[N, 4]`` normalized x1, y1, x2, y2. A cell (i, j) covers normalized
    ``[j * cell_w, (j + 1) * cell_w) x [i * cell_h, (i + 1) * cell_h)`` (cell sizes: the backbone's
    spatial stride over the input width and height); it is inside when its centre is in the box.
    Returns bool ``[N, height, width]``.
    """
    cx = (torch.arange(width, dtype=torch.float32, device=boxes.device) + 0.5) * cell_w
    cy = (torch.arange(height, dtype=torch.float32, device=boxes.device) + 0.5) * cell_h
    b = boxes.to(torch.float32)
    in_x = (cx[None, :] >= b[:, 0:1]) & (cx[None, :] <= b[:, 2:3])   # [N, w]
    in_y = (cy[None, :] >= b[:, 1:2]) & (cy[None, :] <= b[:, 3:4])   # [N, h]
    return ~(in_y[:, :, None] & in_x[:, None, :])


def time_bins(feature_map: torch.Tensor, bins: int) -> torch.Tensor:
    """Feature map ``[B, D, T, h, w]`` averaged into ``min(bins, T)`` equal time bins:
    ``[B, D, bins, h, w]`` (adaptive average pooling over time)."""
    bins = min(int(bins), feature_map.shape[2])
    return nn.functional.adaptive_avg_pool3d(feature_map.float(), (bins, *feature_map.shape[3:]))


class AtrHead(nn.Module):
    """ROI features with the actor-target relation -> logits.

    forward(roi ``[N, D]``, context ``[K, D', T, h, w]`` or ``[K, D', h, w]`` (one map per keyframe),
    frame_index ``[N]`` int64 (each row's keyframe in ``context``), attend ``[N, h, w]`` bool (the
    cells each row attends to, at every time bin: outside its box)) -> logits ``[N, C]``.
    ``relation_dropout`` drops attention weights while training (the relation's regularizer).
    """

    def __init__(self, roi_dim: int, context_dim: int, num_classes: int,
                 embed_dim: int = EMBED_DIM, dropout: float = DROPOUT, relation_dropout: float = 0.0):
        super().__init__()
        self.query = nn.Linear(roi_dim, embed_dim)
        self.key = nn.Conv1d(context_dim, embed_dim, 1)
        self.value = nn.Conv1d(context_dim, embed_dim, 1)
        self.out = nn.Linear(embed_dim, roi_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.attention_dropout = nn.Dropout(relation_dropout)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(roi_dim, num_classes)

    def relation(self, roi: torch.Tensor, context: torch.Tensor, frame_index: torch.Tensor,
                 attend: torch.Tensor) -> torch.Tensor:
        """The context term ``[N, D]`` added to the ROI feature (zero where a row attends to nothing)."""
        if context.dim() == 4:
            context = context[:, :, None]
        frames = context.shape[2]
        flat = context.flatten(2)                                    # [K, D', T*h*w]
        q = self.query(roi)                                          # [N, E]
        k = self.key(flat)[frame_index]                              # [N, E, P]
        v = self.value(flat)[frame_index]                            # [N, E, P]
        scores = torch.einsum("ne,nep->np", q, k) / q.shape[1] ** 0.5
        mask = attend[:, None].expand(-1, frames, -1, -1).flatten(1)  # [N, P]: the box's cells at every time
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1) * mask                # all zero where nothing is outside
        weights = self.attention_dropout(weights)
        return self.out(torch.einsum("np,nep->ne", weights, v))

    def forward(self, roi: torch.Tensor, context: torch.Tensor, frame_index: torch.Tensor,
                attend: torch.Tensor) -> torch.Tensor:
        z = roi + self.relation(roi, context, frame_index, attend)
        return self.fc(self.dropout(z))


def keyframe_features(model: ActionClassifier, clips: torch.Tensor, rois: torch.Tensor,
                      context_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ROI features ``[K, D]`` and context maps of ``model`` on ``clips`` ``[B, C, T, H, W]``:
    ``[B, D, h, w]`` averaged over time (``context_frames`` 1, or a backbone without a picture), else
    ``[B, D, bins, h, w]`` (:func:`time_bins`)."""
    feature_map = model.backbone(clips)
    roi, context = model.roi(feature_map, rois)
    if context_frames > 1 and not getattr(model.backbone, "per_keyframe", False):
        context = time_bins(feature_map, context_frames)
    return roi, context


def pixel_outside_mask(rois: torch.Tensor, input_hw: tuple[int, int], map_hw: tuple[int, int],
                       spatial_stride: int) -> torch.Tensor:
    """:func:`outside_mask` of ROIs ``[K, 5]`` (batch index, x1, y1, x2, y2 in input pixels) on a
    map of ``map_hw`` cells of ``spatial_stride`` pixels: bool ``[K, h, w]``."""
    height, width = input_hw
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=rois.device)
    return outside_mask(rois[:, 1:].float() / scale, map_hw[0], map_hw[1], spatial_stride / width,
                        spatial_stride / height)


class AtrActionClassifier(ActionClassifier):
    """Backbone, ROI features and the actor-target relation head, trained end to end (``finetune.head:
    atr``): each box attends to its clip's feature map (``context_frames`` time bins) outside it.
    The saved ``head`` is the :class:`AtrHead`'s state."""

    def __init__(self, backbone: nn.Module, num_classes: int, roi_size: int | None = None, pool: str = "max",
                 dropout: float = DROPOUT, context_frames: int = 1, roi_op: str = "align"):
        super().__init__(backbone, num_classes, roi_size, pool, dropout, roi_op)
        if getattr(backbone, "per_keyframe", False):
            raise ValueError("the atr head needs a backbone whose map is a picture (not audio)")
        self.context_frames = int(context_frames)
        self.head = AtrHead(backbone.out_channels, backbone.out_channels, num_classes, dropout=dropout)

    def forward(self, clips: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        roi, context = keyframe_features(self, clips, rois, self.context_frames)
        attend = pixel_outside_mask(rois, tuple(clips.shape[-2:]), tuple(context.shape[-2:]),
                                    self.backbone.spatial_stride)
        return self.head(roi, context.to(roi.dtype), rois[:, 0].long(), attend)
