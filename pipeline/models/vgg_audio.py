"""VGG backbones on log-mel spectrogram windows: the paper's acoustic stream (II.A), a VGG16 on
one-second windows, as in Hershey et al.'s audio classification CNNs.

A window arrives as a one-step clip ``[B, 1, 1, n_mels, frames]`` (so that the clip batching of the
video backbones applies) and leaves as a feature map ``[B, D, 1, h, w]`` over (mel band, time). It
describes the whole keyframe, not a place in it (``per_keyframe``): every person box of a keyframe
gets the same feature (``roi_head.KeyframePooling``).

- ``vgg_tiny``: four conv-BN-ReLU-maxpool stages (16, 32, 64, 128 channels), trainable from
  scratch on a CPU; 64 x 98 -> 4 x 6.
- ``vgg16``: torchvision's VGG16 convolutional layers (random init, or a local torchvision
  checkpoint: nothing is downloaded; its first convolution's RGB filters are summed into one
  channel); 64 x 98 -> 2 x 3.
Both start with a BatchNorm of the single input channel, which standardizes the log-mel values.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import vgg16

from pipeline.models.checkpoints import load_torchvision_weights


def _stage(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


class _SpectrogramBackbone(nn.Module):
    """``[B, 1, 1, H, W]`` -> ``self.layers`` on ``[B, 1, H, W]`` -> ``[B, D, 1, h, w]``."""

    per_keyframe = True
    layers: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != 1 or x.shape[2] != 1:
            raise ValueError(f"expected log-mel windows [B, 1, 1, n_mels, frames], got {list(x.shape)}")
        return self.layers(x[:, :, 0]).unsqueeze(2)


class VggTiny(_SpectrogramBackbone):
    """Four stages of 3x3 conv, BN, ReLU and 2x2 max pool at ``widths`` channels."""

    spatial_stride = 16

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        stages, ch = [nn.BatchNorm2d(1)], 1
        for width in widths:
            stages.append(_stage(ch, width))
            ch = width
        self.layers = nn.Sequential(*stages)
        self.out_channels = ch


class Vgg16Audio(_SpectrogramBackbone):
    """torchvision's VGG16 ``features`` (13 convolutions, 5 max pools) on one input channel."""

    spatial_stride = 32
    out_channels = 512

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        net = vgg16(weights=None)
        if weights is not None:
            load_torchvision_weights(net, weights, "vgg16", classifier_prefix="classifier.")
        rgb_conv = net.features[0]
        conv = nn.Conv2d(1, rgb_conv.out_channels, 3, padding=1)
        with torch.no_grad():
            conv.weight.copy_(rgb_conv.weight.sum(dim=1, keepdim=True))
            conv.bias.copy_(rgb_conv.bias)
        self.layers = nn.Sequential(nn.BatchNorm2d(1), conv, *list(net.features)[1:])
