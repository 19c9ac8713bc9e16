"""P3D-199, the pseudo-3D ResNet of Qiu et al. (paper II.A and Table I's "P3D199" row).

torchvision's ResNet-152 made pseudo-3D: every 3x3 convolution of its 50 bottleneck blocks becomes
a 1x3x3 spatial convolution S beside a 3x1x1 temporal convolution T, joined in turn as
- P3D-A: T(S(x)), P3D-B: S(x) + T(x), P3D-C: S(x) + T(S(x));
every other convolution gets a temporal size of 1; ``layer4`` is dilated instead of strided
(spatial stride 16); nothing strides in time: ``[B, 3, T, H, W]`` -> ``[B, 2048, T, H/16, W/16]``.
Weights: random, or torchvision's local ImageNet ResNet-152 file for the spatial part, with T
starting as the identity in A blocks and as zero in B and C blocks, so that the untrained temporal
part leaves the 2D network's map of each frame as it is.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet152

from pipeline.models.checkpoints import load_torchvision_weights
from pipeline.models.inflate import inflate_bottleneck, inflate_stem

P3D_MODES = ("A", "B", "C")


class PseudoConv3d(nn.Module):
    """A spatial 1x3x3 convolution and a temporal 3x1x1 one joined as P3D-``mode``: ``[B, C, T, H, W]``
    -> ``[B, C', T, H', W']``."""

    def __init__(self, spatial: nn.Conv3d, mode: str):
        super().__init__()
        if mode not in P3D_MODES:
            raise ValueError(f"unknown P3D mode {mode!r}: expected one of {', '.join(P3D_MODES)}")
        self.mode = mode
        self.spatial = spatial
        channels = spatial.out_channels
        # B reads the block's input, so it strides in space as S does
        stride = (1, *spatial.stride[1:]) if mode == "B" else 1
        self.temporal = nn.Conv3d(spatial.in_channels if mode == "B" else channels, channels, (3, 1, 1),
                                  stride=stride, padding=(1, 0, 0), bias=False)
        with torch.no_grad():
            self.temporal.weight.zero_()
            if mode == "A":
                self.temporal.weight[:, :, 1, 0, 0] = torch.eye(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.spatial(x)
        if self.mode == "A":
            return self.temporal(s)
        if self.mode == "B":
            return s + self.temporal(x)
        return s + self.temporal(s)


class P3dResNet152(nn.Module):
    """P3D-199 on torchvision's ResNet-152; spatial stride 16, no temporal stride."""

    spatial_stride = 16
    out_channels = 2048

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        net = resnet152(weights=None, replace_stride_with_dilation=[False, False, True])
        if weights is not None:
            load_torchvision_weights(net, weights, "resnet152", classifier_prefix="fc.")
        self.stem = inflate_stem(net, 1)
        index = 0
        for name in ("layer1", "layer2", "layer3", "layer4"):
            for block in getattr(net, name):
                inflate_bottleneck(block)
                block.conv2 = PseudoConv3d(block.conv2, P3D_MODES[index % 3])
                index += 1
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
