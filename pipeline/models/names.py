"""The names the config may give backbones and heads, and which modality each backbone reads.

Kept free of torch so that the config check (run by Snakemake before any job) stays light.
"""

from __future__ import annotations

#: torchvision's video ResNets (3 input channels).
TORCHVISION_ARCHS = ("r3d_18", "mc3_18", "r2plus1d_18")
#: torchvision's ImageNet ResNets and ResNeXts, frame by frame with temporal pooling (TSN).
TSN_ARCHS = ("tsn_resnet18", "tsn_resnet50", "tsn_resnet152", "tsn_resnext50_32x4d", "tsn_resnext101_32x8d")
#: I3D ResNet-50 inflated from torchvision's ImageNet ResNet-50, without and with non-local blocks.
I3D_ARCHS = ("i3d_r50", "i3d_r50_nl")
#: P3D-199: ResNet-152 with pseudo-3D (spatial + temporal) convolutions.
P3D_ARCHS = ("p3d_199",)
#: ARTNet: ResNet-18 with appearance-and-relation (SMART) blocks.
ARTNET_ARCHS = ("artnet18",)
#: Backbones of clips of frames or flow ([B, 3, T, H, W]).
VIDEO_ARCHS = ("r3d_tiny",) + TORCHVISION_ARCHS + I3D_ARCHS + P3D_ARCHS + ARTNET_ARCHS + TSN_ARCHS
#: Backbones of log-mel spectrogram windows ([B, 1, 1, n_mels, frames]).
AUDIO_ARCHS = ("vgg_tiny", "vgg16")
ARCHS = VIDEO_ARCHS + AUDIO_ARCHS
HEADS = ("linear", "atr")
#: Layouts of video checkpoints (``pipeline.models.video_checkpoints``) and the archs each one fits.
LAYOUT_ARCHS = {"pyslowfast": I3D_ARCHS, "mmaction2": I3D_ARCHS, "caffe2": I3D_ARCHS, "pseudo-3d-pytorch": P3D_ARCHS}
VIDEO_LAYOUTS = tuple(LAYOUT_ARCHS)
#: ``weights_layout``: torchvision's own files (or the tiny archs' own state dicts), or a video layout.
WEIGHT_LAYOUTS = ("torchvision",) + VIDEO_LAYOUTS
#: How the ROI features are cut from the feature map: torchvision's ``roi_align`` or ``roi_pool``.
ROI_OPS = ("align", "pool")


def arch_problem(arch: str, modality: str) -> str | None:
    """Why backbone ``arch`` cannot read ``modality`` (rgb, flow/<method>, audio), or None when it can."""
    if arch not in ARCHS:
        return f"unknown arch {arch!r}: expected one of {', '.join(ARCHS)}"
    if (modality == "audio") != (arch in AUDIO_ARCHS):
        expected = AUDIO_ARCHS if modality == "audio" else VIDEO_ARCHS
        return f"arch {arch!r} does not read {modality!r}: use one of {', '.join(expected)}"
    return None


def layout_problem(arch: str, layout: str) -> str | None:
    """Why weights of ``layout`` cannot be loaded into ``arch``, or None when they can."""
    if layout not in WEIGHT_LAYOUTS:
        return f"unknown weights layout {layout!r}: expected one of {', '.join(WEIGHT_LAYOUTS)}"
    if layout in LAYOUT_ARCHS and arch not in LAYOUT_ARCHS[layout]:
        return f"weights layout {layout!r} is for {', '.join(LAYOUT_ARCHS[layout])} only, not {arch!r}"
    return None
