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

STEM_TIME_KERNEL = 5
#: (layer, block index) after which a non-local block stands.
NONLOCAL_AFTER = (("layer2", 1), ("layer2", 3), ("layer3", 1), ("layer3", 3), ("layer3", 5))


def inflate_conv(conv: nn.Conv2d, time_kernel: int) -> nn.Conv3d:
    """A Conv3d of temporal size ``time_kernel`` (padded to keep T) whose weights are ``conv``'s
    repeated over time and divided by ``time_kernel``."""
    conv3d = nn.Conv3d(conv.in_channels, conv.out_channels, (time_kernel, *conv.kernel_size),
                       stride=(1, *conv.stride), padding=(time_kernel // 2, *conv.padding),
                       dilation=(1, *conv.dilation), groups=conv.groups, bias=conv.bias is not None)
    with torch.no_grad():
        conv3d.weight.copy_(conv.weight.unsqueeze(2).repeat(1, 1, time_kernel, 1, 1) / time_kernel)
        if conv.bias is not None:
            conv3d.bias.copy_(conv.bias)
    return conv3d


def inflate_bn(bn: nn.BatchNorm2d) -> nn.BatchNorm3d:
    """A BatchNorm3d with ``bn``'s parameters and running statistics."""
    bn3d = nn.BatchNorm3d(bn.num_features, bn.eps, bn.momentum)
    bn3d.load_state_dict(bn.state_dict())
    return bn3d


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


def inflate_bottleneck(block: nn.Module, first_time_kernel: int = 1) -> None:
    """Make a torchvision Bottleneck 3D in place (its forward works unchanged on 5D tensors): its
    first 1x1 convolution gets temporal size ``first_time_kernel``, every other one 1."""
    block.conv1 = inflate_conv(block.conv1, first_time_kernel)
    block.conv2 = inflate_conv(block.conv2, 1)
    block.conv3 = inflate_conv(block.conv3, 1)
    block.bn1, block.bn2, block.bn3 = inflate_bn(block.bn1), inflate_bn(block.bn2), inflate_bn(block.bn3)
    if block.downsample is not None:
        block.downsample = nn.Sequential(inflate_conv(block.downsample[0], 1), inflate_bn(block.downsample[1]))


class I3dResNet50(nn.Module):
    """I3D ResNet-50, optionally with non-local blocks; spatial stride 16, no temporal stride."""

    spatial_stride = 16
    out_channels = 2048

    def __init__(self, nonlocal_blocks: bool = True, weights: str | Path | None = None):
        super().__init__()
        net = resnet50(weights=None, replace_stride_with_dilation=[False, False, True])
        if weights is not None:
            load_torchvision_weights(net, weights, "resnet50", classifier_prefix="fc.")
        self.stem = nn.Sequential(inflate_conv(net.conv1, STEM_TIME_KERNEL), inflate_bn(net.bn1), nn.ReLU(inplace=True),
                                  nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
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
