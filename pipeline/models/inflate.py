"""Making torchvision's 2D ResNets 3D (Carreira and Zisserman's inflation), shared by the I3D, P3D
and ARTNet backbones.

A 2D filter becomes a 3D one repeated over its temporal size and divided by it, so that a clip of
one repeated frame gives the 2D network's response; nothing strides in time and the temporal
padding keeps T.
"""

from __future__ import annotations

import torch
from torch import nn


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


def inflate_stem(net: nn.Module, time_kernel: int) -> nn.Sequential:
    """A torchvision ResNet's stem (7x7 convolution, BN, ReLU, 3x3 max pool) in 3D; the convolution
    gets temporal size ``time_kernel``, the pool none."""
    return nn.Sequential(inflate_conv(net.conv1, time_kernel), inflate_bn(net.bn1), nn.ReLU(inplace=True),
                         nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))


def inflate_downsample(block: nn.Module) -> None:
    """Make a torchvision residual block's projection shortcut (1x1 convolution and BN) 3D in place."""
    if block.downsample is not None:
        block.downsample = nn.Sequential(inflate_conv(block.downsample[0], 1), inflate_bn(block.downsample[1]))


def inflate_bottleneck(block: nn.Module, first_time_kernel: int = 1) -> None:
    """Make a torchvision Bottleneck 3D in place (its forward works unchanged on 5D tensors): its
    first 1x1 convolution gets temporal size ``first_time_kernel``, every other one 1."""
    block.conv1 = inflate_conv(block.conv1, first_time_kernel)
    block.conv2 = inflate_conv(block.conv2, 1)
    block.conv3 = inflate_conv(block.conv3, 1)
    block.bn1, block.bn2, block.bn3 = inflate_bn(block.bn1), inflate_bn(block.bn2), inflate_bn(block.bn3)
    inflate_downsample(block)
