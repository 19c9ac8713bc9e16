"""I3D ResNet-50 with non-local blocks (paper II.A and Table I's best single model, "i3d resnet50 + NL").

The network is torchvision's ResNet-50 made 3D (Carreira and Zisserman's inflation, as in Wang et
al.'s non-local networks):
- the stem's 7x7 convolution becomes 5x7x7, and the first 1x1 convolution of every other
  bottleneck block (the first, third, ... of each stage) becomes 3x1x1; every other convolution
  gets a temporal size of 1; nothing strides in time, so ``[B, 3, T, H, W]`` -> ``[B, 2048, T, H/16, W/16]``;
- ``layer4`` is dilated instead of strided (spatial stride 16, as detection backbones on AVA use);
- ``i3d_r50_nl`` adds five non-local blocks (embedded Gaussian, keys and values max-pooled 2x2 in
  space), after blocks 1 and 3 of ``layer2`` and 1, 3 and 5 of ``layer3``.
Weights: random, or torchvision's local ImageNet ResNet-50 file inflated (each 2D filter repeated
over its temporal size and divided by it, so a clip of one repeated frame gives the 2D network's
map, away from the clip's ends where the temporal padding is zeros); the non-local blocks start as
the identity (their output BatchNorm's scale is zero).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet50

from pipeline.models.checkpoints import load_torchvision_weights
from pipeline.models.inflate import inflate_bottleneck, inflate_stem

STEM_TIME_KERNEL = 5
#: (layer, block index) after which a non-local block stands.
NONLOCAL_AFTER = (("layer2", 1), ("layer2", 3), ("layer3", 1), ("layer3", 3), ("layer3", 5))


class NonLocal3d(nn.Module):
    """Embedded-Gaussian non-local block with a residual connection: ``[B, C, T, H, W]`` -> same shape.

    Every position attends to every position of the clip (keys and values max-pooled 2x2 in space);
    the output projection's BatchNorm starts at zero scale, so the block starts as the identity.
    """

    def __init__(self, channels: int):
        super().__init__()
        inner = channels // 2
        self.theta = nn.Conv3d(channels, inner, 1)
        self.phi = nn.Conv3d(channels, inner, 1)
        self.g = nn.Conv3d(channels, inner, 1)
        self.pool = nn.MaxPool3d((1, 2, 2), ceil_mode=True)
        self.out = nn.Sequential(nn.Conv3d(inner, channels, 1, bias=False), nn.BatchNorm3d(channels))
        nn.init.zeros_(self.out[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        query = self.theta(x).flatten(2)                    # [B, C', THW]
        key = self.phi(self.pool(x)).flatten(2)             # [B, C', P]
        value = self.g(self.pool(x)).flatten(2)             # [B, C', P]
        attention = torch.softmax(torch.einsum("bcq,bcp->bqp", query, key), dim=-1)
        y = torch.einsum("bqp,bcp->bcq", attention, value).reshape(b, -1, t, h, w)
        return x + self.out(y)


class I3dResNet50(nn.Module):
    """I3D ResNet-50, optionally with non-local blocks; spatial stride 16, no temporal stride."""

    spatial_stride = 16
    out_channels = 2048

    def __init__(self, nonlocal_blocks: bool = True, weights: str | Path | None = None):
        super().__init__()
        net = resnet50(weights=None, replace_stride_with_dilation=[False, False, True])
        if weights is not None:
            load_torchvision_weights(net, weights, "resnet50", classifier_prefix="fc.")
        self.stem = inflate_stem(net, STEM_TIME_KERNEL)
        layers = []
        for name in ("layer1", "layer2", "layer3", "layer4"):
            blocks = []
            for index, block in enumerate(getattr(net, name)):
                inflate_bottleneck(block, first_time_kernel=3 if index % 2 == 0 else 1)
                blocks.append(block)
                if nonlocal_blocks and (name, index) in NONLOCAL_AFTER:
                    blocks.append(NonLocal3d(block.conv3.out_channels))
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
