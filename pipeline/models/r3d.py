"""3D ResNet backbones that end at their last feature map (no pooling, no classifier).

Every backbone maps a clip ``[B, C, T, H, W]`` float32 to a feature map ``[B, D, T', H', W']``
and states ``out_channels`` (D) and ``spatial_stride`` (input pixels per feature cell), which
the ROI head needs for ROIAlign's ``spatial_scale``.

- ``r3d_tiny``: a small 3D ResNet defined here, fast enough to train from scratch on a CPU.
- ``r3d_18``, ``mc3_18``, ``r2plus1d_18``: torchvision's video ResNets (random init, or a local
  torchvision checkpoint: nothing is downloaded); they take 3 input channels.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import video as tv_video

from pipeline.models.checkpoints import load_torchvision_weights


def _conv_bn(in_ch: int, out_ch: int, kernel, stride, padding) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(in_ch, out_ch, kernel, stride, padding, bias=False), nn.BatchNorm3d(out_ch))


class BasicBlock3d(nn.Module):
    """Two 3x3x3 convolutions with a residual connection (a 1x1x1 projection when the shape changes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: tuple[int, int, int]):
        super().__init__()
        self.conv1 = _conv_bn(in_ch, out_ch, 3, stride, 1)
        self.conv2 = _conv_bn(out_ch, out_ch, 3, 1, 1)
        self.shortcut = (nn.Identity() if in_ch == out_ch and stride == (1, 1, 1)
                         else _conv_bn(in_ch, out_ch, 1, stride, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(torch.relu(self.conv1(x)))
        return torch.relu(y + self.shortcut(x))


class R3dTiny(nn.Module):
    """A four-stage 3D ResNet with one basic block per stage; spatial stride 16, temporal stride 2.

    Stem: 3x7x7 convolution (spatial stride 2) and 1x3x3 max pool (spatial stride 2); stages at
    ``widths`` channels, the second halving time and space, the third halving space.
    Input ``[B, in_channels, T, H, W]`` -> ``[B, widths[-1], ceil(T/2), ~H/16, ~W/16]``.
    """

    spatial_stride = 16

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        self.stem = nn.Sequential(
            _conv_bn(in_channels, widths[0], (3, 7, 7), (1, 2, 2), (1, 3, 3)),
            nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )
        strides = [(1, 1, 1), (2, 2, 2), (1, 2, 2), (1, 1, 1)]
        stages, ch = [], widths[0]
        for width, stride in zip(widths, strides):
            stages.append(BasicBlock3d(ch, width, stride))
            ch = width
        self.stages = nn.Sequential(*stages)
        self.out_channels = ch
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


class TorchvisionVideoResNet(nn.Module):
    """torchvision's ``VideoResNet`` (3 input channels) without its average pool and classifier.

    Spatial stride 16. ``weights``: a local torchvision checkpoint of the same ``arch``; its
    classifier (``fc.*``) is ignored, every other parameter must be there.
    """

    spatial_stride = 16
    out_channels = 512

    def __init__(self, arch: str, weights: str | Path | None = None):
        super().__init__()
        net = getattr(tv_video, arch)(weights=None)
        if weights is not None:
            load_torchvision_weights(net, weights, arch, classifier_prefix="fc.")
        self.stem, self.layer1, self.layer2 = net.stem, net.layer1, net.layer2
        self.layer3, self.layer4 = net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
