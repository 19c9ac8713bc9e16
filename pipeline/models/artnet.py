"""ARTNet-18, the appearance-and-relation network of Wang et al. (paper II.A and Table I's "artnet18" row).

torchvision's ResNet-18 made 3D as the official ARTNet-ResNet18 places its SMART blocks: the stem's
7x7 convolution and the first 3x3 convolution of each basic block of res2 to res4 (``layer1`` to
``layer3``) become SMART blocks, every other 3x3 convolution (the second of those blocks, both of
res5's) a 3x3x3 convolution (C3D-ResNet18's). A SMART block has two branches,
- appearance: a 1xkxk convolution, BatchNorm and ReLU (the 2D network's own convolution);
- relation: a 3xkxk convolution to twice the channels, squared, summed over channel pairs
  (cross-channel pooling: a second-order, energy-like response to motion), BatchNorm and ReLU;
joined by concatenation and a 1x1x1 convolution (the ReLU of the stem or basic block follows).
Projection shortcuts are 1x1x1; nothing strides in time: ``[B, 3, T, H, W]`` -> ``[B, 512, T, H/32,
W/32]`` (torchvision's basic blocks cannot dilate, so the stride stays 32). Weights: random, or
torchvision's local ImageNet ResNet-18 file, inflated (the 3x3x3 convolutions are the 2D filters
repeated over time and divided by 3); the joining convolutions start by passing the appearance
branch through and ignoring the relation branch, so the untrained network gives the 2D network's
map of each frame, away from the clip's ends where the temporal padding is zeros.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18

from pipeline.models.checkpoints import load_torchvision_weights
from pipeline.models.inflate import inflate_bn, inflate_conv, inflate_downsample

#: Stages whose basic blocks open with a SMART block (the stem's convolution is one too).
SMART_STAGES = ("layer1", "layer2", "layer3")
RELATION_TIME_KERNEL = 3


class SmartBlock(nn.Module):
    """Appearance and relation branches joined: ``[B, C, T, H, W]`` -> ``[B, C', T, H/s, W/s]``.

    ``appearance``: a 1xkxk Conv3d (stride (1, s, s)); ``appearance_bn``: its BatchNorm3d.
    """

    def __init__(self, appearance: nn.Conv3d, appearance_bn: nn.BatchNorm3d):
        super().__init__()
        channels = appearance.out_channels
        self.appearance = nn.Sequential(appearance, appearance_bn, nn.ReLU(inplace=True))
        self.relation_conv = nn.Conv3d(appearance.in_channels, 2 * channels,
                                       (RELATION_TIME_KERNEL, *appearance.kernel_size[1:]), stride=appearance.stride,
                                       padding=(RELATION_TIME_KERNEL // 2, *appearance.padding[1:]), bias=False)
        self.relation_bn = nn.BatchNorm3d(channels)
        self.join = nn.Conv3d(2 * channels, channels, 1, bias=False)
        with torch.no_grad():
            self.join.weight.zero_()
            self.join.weight[:, :channels, 0, 0, 0] = torch.eye(channels)

    def relation(self, x: torch.Tensor) -> torch.Tensor:
        """Square of the 3D responses, summed over pairs of channels: ``[B, C', T, H', W']``."""
        energy = self.relation_conv(x).square()
        b, c2, t, h, w = energy.shape
        pooled = energy.reshape(b, c2 // 2, 2, t, h, w).sum(dim=2)
        return torch.relu(self.relation_bn(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The joined branches, before the ReLU that the stem or basic block applies next."""
        return self.join(torch.cat([self.appearance(x), self.relation(x)], dim=1))


class ArtNet18(nn.Module):
    """ARTNet-ResNet18: SMART stem and res2-res4 blocks, 3x3x3 convolutions elsewhere; spatial stride 32."""

    spatial_stride = 32
    out_channels = 512

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        net = resnet18(weights=None)
        if weights is not None:
            load_torchvision_weights(net, weights, "resnet18", classifier_prefix="fc.")
        self.stem = nn.Sequential(SmartBlock(inflate_conv(net.conv1, 1), inflate_bn(net.bn1)), nn.ReLU(inplace=True),
                                  nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
        for name in ("layer1", "layer2", "layer3", "layer4"):
            for block in getattr(net, name):
                if name in SMART_STAGES:
                    block.conv1 = SmartBlock(inflate_conv(block.conv1, 1), inflate_bn(block.bn1))
                    block.bn1 = nn.Identity()   # the SMART block normalizes its own branches
                else:
                    block.conv1, block.bn1 = inflate_conv(block.conv1, 3), inflate_bn(block.bn1)
                block.conv2, block.bn2 = inflate_conv(block.conv2, 3), inflate_bn(block.bn2)
                inflate_downsample(block)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
