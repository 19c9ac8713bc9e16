"""I3D ResNet-50 with non-local blocks (paper II.A and Table I's best single model, "i3d resnet50 + NL").

The network is torchvision's ResNet-50 made 3D as Wang et al.'s non-local networks define it
(video-nonlocal-net's ``obtain_arc(2)``, PySlowFast's ``i3d`` temporal kernel basis):
- the stem's 7x7 convolution becomes 5x7x7; the first 1x1 convolution of a bottleneck block gets the
  temporal size of its stage's pattern: res2 (``layer1``) 3, 3, 3; res3 3, 1, 3, 1; res4 3, 1, 3, 1,
  3, 1; res5 1, 3, 1 (:data:`STAGE_TIME_KERNELS`); every other convolution a temporal size of 1;
  nothing strides in time (the originals' temporal pools are left out: the ROI head averages over
  time), so ``[B, 3, T, H, W]`` -> ``[B, 2048, T, H/16, W/16]``;
- ``layer4`` is dilated instead of strided, all three blocks (spatial stride 16, as PySlowFast's
  AVA detectors use);
- ``i3d_r50_nl`` adds five non-local blocks (embedded Gaussian with the 1/sqrt(d) scaling, keys and
  values from the input max-pooled 2x2 in space), after blocks 1 and 3 of ``layer2`` and 1, 3 and 5
  of ``layer3``.
Weights: random, or torchvision's local ImageNet ResNet-50 file inflated (each 2D filter repeated
over its temporal size and divided by it, so a clip of one repeated frame gives the 2D network's
map, away from the clip's ends where the temporal padding is zeros), the non-local blocks starting
as the identity (their output BatchNorm's scale is zero); or a Kinetics checkpoint of PySlowFast,
MMAction2 or video-nonlocal-net (:mod:`pipeline.models.video_checkpoints`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet50

from pipeline.models.checkpoints import load_torchvision_weights
from pipeline.models.inflate import inflate_bottleneck, inflate_stem

STEM_TIME_KERNEL = 5
RES5_DILATION = 2
#: Temporal size of the first convolution of each bottleneck block, stage by stage (the originals').
STAGE_TIME_KERNELS = {"layer1": (3, 3, 3), "layer2": (3, 1, 3, 1), "layer3": (3, 1, 3, 1, 3, 1), "layer4": (1, 3, 1)}
#: (layer, block index) after which a non-local block stands.
NONLOCAL_AFTER = (("layer2", 1), ("layer2", 3), ("layer3", 1), ("layer3", 3), ("layer3", 5))
#: Where the non-local block max-pools its keys and values: the input, before the phi and g
#: embeddings (video-nonlocal-net, PySlowFast), or their outputs (MMAction2's ``sub_sample``).
NONLOCAL_POOLS = ("input", "embedding")


class NonLocal3d(nn.Module):
    """Embedded-Gaussian non-local block with a residual connection: ``[B, C, T, H, W]`` -> same shape.

    Every position attends to every position of the clip: softmax over keys of theta(x)·phi(x') / sqrt(C/2)
    (``scale``), keys and values max-pooled 2x2 in space (``pool``: of the input, or of the
    embeddings); the output projection (1x1x1 convolution and BatchNorm) starts at zero scale, so the
    block starts as the identity. ``scale`` and ``pool`` travel in the state dict (extra state), so
    weights loaded from a source whose blocks differ (MMAction2's: unscaled, pooled embeddings) keep
    their forward after finetuning.
    """

    def __init__(self, channels: int, scale: bool = True, pool: str = "input"):
        super().__init__()
        inner = channels // 2
        self.theta = nn.Conv3d(channels, inner, 1)
        self.phi = nn.Conv3d(channels, inner, 1)
        self.g = nn.Conv3d(channels, inner, 1)
        self.max_pool = nn.MaxPool3d((1, 2, 2), ceil_mode=True)
        self.out = nn.Sequential(nn.Conv3d(inner, channels, 1), nn.BatchNorm3d(channels))
        nn.init.zeros_(self.out[1].weight)
        self.set_extra_state({"scale": scale, "pool": pool})

    def get_extra_state(self) -> dict:
        return {"scale": self.scale, "pool": self.pool}

    def set_extra_state(self, state: dict) -> None:
        if state["pool"] not in NONLOCAL_POOLS:
            raise ValueError(f"unknown non-local pool {state['pool']!r}: expected one of {', '.join(NONLOCAL_POOLS)}")
        self.scale, self.pool = bool(state["scale"]), str(state["pool"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        query = self.theta(x).flatten(2)                    # [B, C', THW]
        if self.pool == "input":
            pooled = self.max_pool(x)
            key, value = self.phi(pooled).flatten(2), self.g(pooled).flatten(2)      # [B, C', P]
        else:
            key, value = self.max_pool(self.phi(x)).flatten(2), self.max_pool(self.g(x)).flatten(2)
        scores = torch.einsum("bcq,bcp->bqp", query, key)
        if self.scale:
            scores = scores * query.shape[1] ** -0.5
        attention = torch.softmax(scores, dim=-1)
        y = torch.einsum("bqp,bcp->bcq", attention, value).reshape(b, -1, t, h, w)
        return x + self.out(y)


class I3dResNet50(nn.Module):
    """I3D ResNet-50, optionally with non-local blocks; spatial stride 16, no temporal stride.

    ``weights``: torchvision's ImageNet ResNet-50 file, inflated (video checkpoints are loaded into
    the built network by :func:`pipeline.models.video_checkpoints.load_video_checkpoint`).
    """

    spatial_stride = 16
    out_channels = 2048

    def __init__(self, nonlocal_blocks: bool = True, weights: str | Path | None = None):
        super().__init__()
        net = resnet50(weights=None, replace_stride_with_dilation=[False, False, True])
        if weights is not None:
            load_torchvision_weights(net, weights, "resnet50", classifier_prefix="fc.")
        # every res5 block dilated 2, as PySlowFast's and MMAction2's dilated stages (torchvision keeps
        # the first block's 3x3 at dilation 1)
        net.layer4[0].conv2.dilation, net.layer4[0].conv2.padding = (RES5_DILATION, RES5_DILATION), \
            (RES5_DILATION, RES5_DILATION)
        self.stem = inflate_stem(net, STEM_TIME_KERNEL)
        layers = []
        for name, kernels in STAGE_TIME_KERNELS.items():
            blocks = []
            for index, block in enumerate(getattr(net, name)):
                inflate_bottleneck(block, first_time_kernel=kernels[index])
                blocks.append(block)
                if nonlocal_blocks and (name, index) in NONLOCAL_AFTER:
                    blocks.append(NonLocal3d(block.conv3.out_channels))
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
