"""P3D-199, the pseudo-3D ResNet of Qiu et al. (paper II.A and Table I's "P3D199" row).

torchvision's ResNet-152 made pseudo-3D as Qiu et al. define P3D-199: the 3x3 convolution of each of
the 47 bottleneck blocks of res2 to res4 (``layer1`` to ``layer3``) becomes a 1x3x3 spatial
convolution S and a 3x1x1 temporal convolution T, each followed by its BatchNorm and ReLU, joined in
turn as
- P3D-A: T(S(x)), P3D-B: S(x) + T(x), P3D-C: S(x) + T(S(x));
the three blocks of res5 (``layer4``) stay 2D (1x3x3); every other convolution gets a temporal size
of 1; ``layer4`` is dilated instead of strided (spatial stride 16); nothing strides in time (the
original's temporal pools are left out: the ROI head averages over time):
``[B, 3, T, H, W]`` -> ``[B, 2048, T, H/16, W/16]``.
Weights: random, or torchvision's local ImageNet ResNet-152 file for the spatial part (S and its
BatchNorm are the 2D network's 3x3 convolution and BatchNorm). T starts as the identity in A blocks
(its BatchNorm, in eval mode, too), so the untrained A block is the 2D block. In B and C blocks, T's
branch ends in a ReLU, whose gradient at zero is zero: a branch that starts at exactly zero would
never learn. So T starts random and its BatchNorm at scale 0 and shift :data:`TEMPORAL_BN_SHIFT`: the
branch adds that small constant, through which gradients reach the BatchNorm and, once its scale
moves, T (the ImageNet inflation cannot give exactly the 2D map and a trainable B/C block).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet152

from pipeline.models.checkpoints import load_torchvision_weights
from pipeline.models.inflate import inflate_bn, inflate_bottleneck, inflate_stem

P3D_MODES = ("A", "B", "C")
#: Stages whose blocks are pseudo-3D (res2 to res4); res5's stay 2D.
P3D_STAGES = ("layer1", "layer2", "layer3")
#: Initial shift of the temporal BatchNorm of B and C blocks (their scale starts at 0).
TEMPORAL_BN_SHIFT = 1e-3


class PseudoConv3d(nn.Module):
    """S (1x3x3 conv, BN, ReLU) and T (3x1x1 conv, BN, ReLU) joined as P3D-``mode``:
    ``[B, C, T, H, W]`` -> ``[B, C', T, H', W']``. The bottleneck's own BN after this is dropped; its
    ReLU is T's in A blocks and changes nothing in B and C (a sum of ReLU outputs).

    ``spatial``: the inflated 1x3x3 convolution; ``spatial_bn``: its BatchNorm3d.
    """

    def __init__(self, spatial: nn.Conv3d, spatial_bn: nn.BatchNorm3d, mode: str):
        super().__init__()
        if mode not in P3D_MODES:
            raise ValueError(f"unknown P3D mode {mode!r}: expected one of {', '.join(P3D_MODES)}")
        self.mode = mode
        self.spatial, self.spatial_bn = spatial, spatial_bn
        channels = spatial.out_channels
        # B reads the block's input, so it strides in space as S does
        stride = (1, *spatial.stride[1:]) if mode == "B" else 1
        self.temporal = nn.Conv3d(spatial.in_channels if mode == "B" else channels, channels, (3, 1, 1),
                                  stride=stride, padding=(1, 0, 0), bias=False)
        self.temporal_bn = nn.BatchNorm3d(channels)
        with torch.no_grad():
            if mode == "A":
                self.temporal.weight.zero_()
                self.temporal.weight[:, :, 1, 0, 0] = torch.eye(channels)
                # running var 1 - eps: the eval-mode BatchNorm divides by exactly 1
                self.temporal_bn.running_var.fill_(1.0 - self.temporal_bn.eps)
            else:
                self.temporal_bn.weight.zero_()
                self.temporal_bn.bias.fill_(TEMPORAL_BN_SHIFT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.spatial_bn(self.spatial(x)))
        if self.mode == "A":
            return self.temporal_bn(self.temporal(s))   # the block's ReLU follows
        t = torch.relu(self.temporal_bn(self.temporal(x if self.mode == "B" else s)))
        return s + t


#: Where a stage's first block strides in space: the 3x3 (S) convolution, as torchvision's ResNets
#: (whose ImageNet weights were trained so), or the first 1x1 convolution, as Caffe's ResNets and the
#: original P3D-199 (whose Kinetics weights were trained so).
STRIDE_PLACES = ("3x3", "1x1")


class P3dResNet152(nn.Module):
    """P3D-199 on torchvision's ResNet-152; spatial stride 16, no temporal stride.

    ``stride_in`` (extra state, saved in the state dict): where res3's and res4's first blocks
    stride (:data:`STRIDE_PLACES`); res5 is dilated, not strided.
    """

    spatial_stride = 16
    out_channels = 2048

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        net = resnet152(weights=None, replace_stride_with_dilation=[False, False, True])
        if weights is not None:
            load_torchvision_weights(net, weights, "resnet152", classifier_prefix="fc.")
        self.stem = inflate_stem(net, 1)
        index = 0
        for name in P3D_STAGES:
            for block in getattr(net, name):
                bn2 = inflate_bn(block.bn2)
                inflate_bottleneck(block)
                block.conv2 = PseudoConv3d(block.conv2, bn2, P3D_MODES[index % 3])
                block.bn2 = nn.Identity()   # S and T carry their own BatchNorms and ReLUs
                index += 1
        for block in net.layer4:
            inflate_bottleneck(block)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.stride_in = "3x3"

    def get_extra_state(self) -> dict:
        return {"stride_in": self.stride_in}

    def set_extra_state(self, state: dict) -> None:
        """Move the strides of res3's and res4's first blocks to ``state["stride_in"]``."""
        place = state["stride_in"]
        if place not in STRIDE_PLACES:
            raise ValueError(f"unknown stride place {place!r}: expected one of {', '.join(STRIDE_PLACES)}")
        strided, plain = (1, 2, 2), (1, 1, 1)
        for layer in (self.layer2, self.layer3):
            block = layer[0]
            block.conv1.stride = strided if place == "1x1" else plain
            block.conv2.spatial.stride = plain if place == "1x1" else strided
            if block.conv2.mode == "B":
                block.conv2.temporal.stride = block.conv2.spatial.stride
        self.stride_in = place

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
