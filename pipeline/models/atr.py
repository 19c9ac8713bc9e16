"""The actor-target relation (paper II.C): a non-local operation between a person's ROI feature
and the features of its keyframe outside the person's box.

The ROI feature gives the query, every context-map position outside the box a key and a value
(embedded-Gaussian non-local block: softmax of scaled dot products); the attended value, projected
back to the ROI dimension, is added to the ROI feature (residual) before dropout and a linear
classifier. The output projection starts at zero, so an untrained relation is the linear head.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.roi_head import DROPOUT

EMBED_DIM = 64


def outside_mask(boxes: torch.Tensor, height: int, width: int,
                 cell_w: float, cell_h: float) -> torch.Tensor:
    """Which context-map cells lie outside each box.

    boxes: ``[N, 4]`` normalized x1, y1, x2, y2. A cell (i, j) covers normalized
    ``[j * cell_w, (j + 1) * cell_w) x [i * cell_h, (i + 1) * cell_h)`` (cell sizes: the backbone's
    spatial stride over the input width and height); it is inside when its centre is in the box.
    Returns bool ``[N, height, width]``.
    """
    cx = (torch.arange(width, dtype=torch.float32) + 0.5) * cell_w
    cy = (torch.arange(height, dtype=torch.float32) + 0.5) * cell_h
    b = boxes.to(torch.float32)
    in_x = (cx[None, :] >= b[:, 0:1]) & (cx[None, :] <= b[:, 2:3])   # [N, w]
    in_y = (cy[None, :] >= b[:, 1:2]) & (cy[None, :] <= b[:, 3:4])   # [N, h]
    return ~(in_y[:, :, None] & in_x[:, None, :])


class AtrHead(nn.Module):
    """ROI features with the actor-target relation -> logits.

    forward(roi ``[N, D]``, context ``[K, D', h, w]`` (one map per keyframe), frame_index ``[N]``
    int64 (each row's keyframe in ``context``), attend ``[N, h, w]`` bool (the positions each row
    attends to: outside its box)) -> logits ``[N, C]``.
    """

    def __init__(self, roi_dim: int, context_dim: int, num_classes: int,
                 embed_dim: int = EMBED_DIM, dropout: float = DROPOUT):
        super().__init__()
        self.query = nn.Linear(roi_dim, embed_dim)
        self.key = nn.Conv2d(context_dim, embed_dim, 1)
        self.value = nn.Conv2d(context_dim, embed_dim, 1)
        self.out = nn.Linear(embed_dim, roi_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(roi_dim, num_classes)

    def relation(self, roi: torch.Tensor, context: torch.Tensor, frame_index: torch.Tensor,
                 attend: torch.Tensor) -> torch.Tensor:
        """The context term ``[N, D]`` added to the ROI feature (zero where a row attends to nothing)."""
        q = self.query(roi)                                          # [N, E]
        k = self.key(context).flatten(2)[frame_index]                # [N, E, hw]
        v = self.value(context).flatten(2)[frame_index]              # [N, E, hw]
        scores = torch.einsum("ne,nep->np", q, k) / q.shape[1] ** 0.5
        mask = attend.flatten(1)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1) * mask                # all zero where nothing is outside
        return self.out(torch.einsum("np,nep->ne", weights, v))

    def forward(self, roi: torch.Tensor, context: torch.Tensor, frame_index: torch.Tensor,
                attend: torch.Tensor) -> torch.Tensor:
        z = roi + self.relation(roi, context, frame_index, attend)
        return self.fc(self.dropout(z))
