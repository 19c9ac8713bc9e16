"""TSN-style 2D backbones: an ImageNet ResNet or ResNeXt on every frame, averaged over time
(paper II.A: "long-range" 2D networks with temporal average pooling, Table I's ResNet-152 row).

A clip ``[B, C, T, H, W]`` goes through torchvision's trunk (stem to ``layer4``) as ``B * T``
images; the per-frame maps are stacked back into ``[B, D, T, H/32, W/32]``. The ROI head averages
them over time before ROIAlign, which is TSN's average consensus. Sample the frames far apart
(a large ``clip_stride``) for TSN's long range. Random init, or torchvision's local ImageNet file
of the same network (nothing is downloaded); its classifier (``fc.*``) is ignored.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision import models as tv_models

from pipeline.models.checkpoints import load_torchvision_weights
from pipeline.models.names import TSN_ARCHS


class TsnResNet(nn.Module):
    """torchvision's ``resnet*`` / ``resnext*`` trunk applied frame by frame; spatial stride 32."""

    spatial_stride = 32

    def __init__(self, arch: str, weights: str | Path | None = None):
        super().__init__()
        if arch not in TSN_ARCHS:
            raise ValueError(f"unknown TSN arch {arch!r}: expected one of {', '.join(TSN_ARCHS)}")
        name = arch.removeprefix("tsn_")
        net = getattr(tv_models, name)(weights=None)
        if weights is not None:
            load_torchvision_weights(net, weights, name, classifier_prefix="fc.")
        self.trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                                   net.layer1, net.layer2, net.layer3, net.layer4)
        self.out_channels = net.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        maps = self.trunk(frames)                                   # [B*T, D, h', w']
        return maps.reshape(b, t, *maps.shape[1:]).transpose(1, 2)  # [B, D, T, h', w']
