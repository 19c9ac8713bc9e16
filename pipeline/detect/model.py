"""The person detector: torchvision's Faster R-CNN with a feature pyramid (FPN), two classes.

Class 0 is background and class 1 is person. The network is either loaded from a local COCO
checkpoint (torchvision's own ``fasterrcnn_*_coco-*.pth`` files, 91 classes) and reduced to the
person class, or initialised at random. Nothing is downloaded: every torchvision constructor is
called with ``weights=None`` and ``weights_backbone=None``.

The torchvision architectures are built as torchvision builds them: from COCO weights the backbone
keeps frozen batch-norm statistics and its stem and first stage frozen; from random initialisation
every layer trains, with batch norm. Their state-dict keys are torchvision's either way. The light
``resnet18_fpn`` (no COCO checkpoint exists for it) has one layout, made to train from scratch on
a CPU: see :func:`light_resnet18_fpn`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, fasterrcnn_resnet50_fpn_v2
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import (
    BackboneWithFPN,
    mobilenet_backbone,
    resnet_fpn_backbone,
)
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.resnet import resnet18
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from pipeline.devices import autocast
from pipeline.errors import InputError
from pipeline.params import DetectorParams
from pipeline.store import load_torch_file

ARCHS = ("resnet50_fpn", "resnet50_fpn_v2", "resnet18_fpn", "mobilenet_v3_fpn")
NUM_CLASSES = 2                      # background, person
PERSON_LABEL = 1                     # the person class in our head
COCO_PERSON = 1                      # row of COCO's person in torchvision's 91-class predictor
COCO_NUM_CLASSES = 91
PREDICTOR = "roi_heads.box_predictor"
# Scores kept before the operating threshold, so that AP@0.5 sees the low-scoring detections too.
INTERNAL_SCORE_THRESHOLD = 0.05
MAX_TO_MIN_SIZE = 1333 / 800        # torchvision's ratio of the long-side cap to the short side
GROUP_NORM_GROUPS = 32
LIGHT_FPN_CHANNELS = 128
LIGHT_BOX_HEAD = 512
LIGHT_ANCHOR_FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 1.0)   # of the short side, on P3, P4, P5, P6
LIGHT_ASPECT_RATIOS = (1.0, 2.0, 3.0)


def group_norm(num_channels: int) -> nn.GroupNorm:
    """GroupNorm with :data:`GROUP_NORM_GROUPS` groups (ResNet widths are multiples of 32)."""
    return nn.GroupNorm(GROUP_NORM_GROUPS, num_channels)


def image_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [H, W, 3] RGB -> float32 [3, H, W] in [0, 1], the detector's input (on the tensor's device)."""
    x = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(image))
    return x.permute(2, 0, 1).float().div_(255.0)


def max_image_size(params: DetectorParams) -> int:
    """The image long-side cap: ``max_size``, or torchvision's ratio 1333 / 800 of ``min_size`` where it is None."""
    return params.max_size if params.max_size is not None else int(round(params.min_size * MAX_TO_MIN_SIZE))


def build_detector(params: DetectorParams, pretrained: bool) -> FasterRCNN:
    """Faster R-CNN FPN for ``params.arch``, with a 2-class (background, person) box predictor.

    ``arch``, ``min_size`` (image short side), ``max_size``, ``nms_iou`` and ``max_per_keyframe`` are
    used here. ``pretrained`` says whether the weights will come from a COCO checkpoint; for
    torchvision's architectures it selects their layout for pretrained networks (frozen batch norm,
    stem and first stage frozen) or the one for training from scratch (every layer trains), with the
    same state-dict keys. The detector keeps boxes down to :data:`INTERNAL_SCORE_THRESHOLD`; the
    operating threshold is applied by its callers.
    """
    arch = params.arch
    min_size = params.min_size
    common: dict[str, Any] = dict(
        num_classes=NUM_CLASSES,
        min_size=min_size,
        max_size=max_image_size(params),
        box_score_thresh=INTERNAL_SCORE_THRESHOLD,
        box_nms_thresh=params.nms_iou,
        box_detections_per_img=params.max_per_keyframe,
    )
    if arch == "resnet50_fpn_v2":
        model = fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, **common)
        if pretrained:
            for name, param in model.backbone.body.named_parameters():
                if not name.startswith(("layer2", "layer3", "layer4")):
                    param.requires_grad_(False)
        return model
    if arch == "resnet50_fpn":
        backbone = resnet_fpn_backbone(
            backbone_name="resnet50", weights=None,
            norm_layer=FrozenBatchNorm2d if pretrained else nn.BatchNorm2d,
            trainable_layers=3 if pretrained else 5)
        return FasterRCNN(backbone, **common)
    if arch == "resnet18_fpn":
        return light_resnet18_fpn(min_size, common)
    if arch == "mobilenet_v3_fpn":
        backbone = mobilenet_backbone(
            backbone_name="mobilenet_v3_large", weights=None, fpn=True,
            norm_layer=FrozenBatchNorm2d if pretrained else nn.BatchNorm2d,
            trainable_layers=3 if pretrained else 6)
        anchors = AnchorGenerator(((32, 64, 128, 256, 512),) * 3, ((0.5, 1.0, 2.0),) * 3)
        return FasterRCNN(backbone, rpn_anchor_generator=anchors, rpn_score_thresh=0.05, **common)
    raise ValueError(f"unknown detector arch {arch!r}; expected one of {', '.join(ARCHS)}")


def light_resnet18_fpn(min_size: int, common: Mapping[str, Any]) -> FasterRCNN:
    """A Faster R-CNN on ResNet-18 small enough to train from scratch on a CPU in minutes.

    There is no COCO checkpoint for it, so it always has this one layout (a checkpoint named in
    ``weights`` must be one of its own, e.g. an earlier fine-tuned detector). Against torchvision's
    ResNet-50 FPN it uses: GroupNorm (independent of the few images per batch), pyramid levels
    P3-P6 of :data:`LIGHT_FPN_CHANNELS` channels (no stride-4 level), anchors sized as fractions
    of the image short side (:data:`LIGHT_ANCHOR_FRACTIONS`) in person-like shapes
    (:data:`LIGHT_ASPECT_RATIOS`, height over width), a smaller box head and fewer proposals.
    """
    body = resnet18(weights=None, norm_layer=group_norm)
    backbone = BackboneWithFPN(body, {"layer2": "0", "layer3": "1", "layer4": "2"},
                               in_channels_list=[128, 256, 512], out_channels=LIGHT_FPN_CHANNELS,
                               extra_blocks=LastLevelMaxPool())
    sizes = tuple((max(8, int(round(min_size * f))),) for f in LIGHT_ANCHOR_FRACTIONS)
    anchors = AnchorGenerator(sizes, (LIGHT_ASPECT_RATIOS,) * len(sizes))
    roi_pool = MultiScaleRoIAlign(["0", "1", "2"], output_size=7, sampling_ratio=2)
    head = TwoMLPHead(LIGHT_FPN_CHANNELS * 7 * 7, LIGHT_BOX_HEAD)
    return FasterRCNN(backbone, rpn_anchor_generator=anchors, box_roi_pool=roi_pool, box_head=head,
                      box_predictor=FastRCNNPredictor(LIGHT_BOX_HEAD, NUM_CLASSES),
                      rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500,
                      rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=300,
                      box_batch_size_per_image=64, **{**common, "num_classes": None})


def freeze_batch_norm(model: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode, so training keeps its (pretrained) statistics.

    Call after ``model.train()``; used when fine-tuning from a checkpoint with small batches.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _float32(out: Any) -> Any:
    """``out`` (tensors in dicts, lists, tuples) with every floating tensor in float32."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, dict):
        return type(out)((k, _float32(v)) for k, v in out.items())
    if isinstance(out, (list, tuple)):
        return type(out)(_float32(v) for v in out)
    return out


def autocast_parts(model: FasterRCNN, context: Callable[[], contextlib.AbstractContextManager]) -> FasterRCNN:
    """Run the convolution- and matrix-heavy parts of ``model`` (backbone with FPN, RPN head, box
    head) inside ``context`` (an autocast) and hand their outputs on in float32, so that anchors,
    proposals and boxes are decoded, pooled and suppressed in float32.

    Autocasting the whole detector instead decodes boxes in the head's dtype (torchvision's
    ``BoxCoder`` casts the reference boxes to it): in bfloat16, coordinates of a few hundred pixels
    move by whole pixels (measured on the demo's detector: up to 5.2 px against float32; 0.09 px with
    this). The weights and the state-dict keys are unchanged; applying it twice is a no-op.
    """
    for part in (model.backbone, model.rpn.head, model.roi_heads.box_head):
        if getattr(part, "_autocast_wrapped", False):
            continue
        forward = part.forward

        def mixed(*args: Any, _forward: Callable[..., Any] = forward, **kwargs: Any) -> Any:
            with context():
                out = _forward(*args, **kwargs)
            return _float32(out)

        part.forward = mixed   # type: ignore[method-assign]
        part._autocast_wrapped = True   # type: ignore[assignment]
    return model


def mixed_precision(model: FasterRCNN, device: torch.device, precision: str) -> FasterRCNN:
    """:func:`autocast_parts` under :func:`pipeline.devices.autocast` at ``precision`` on CUDA; on the
    CPU, or with precision ``off``, the model as it is (float32 throughout)."""
    if device.type != "cuda" or precision == "off":
        return model
    return autocast_parts(model, lambda: autocast(device, precision))


def reduce_to_person(state_dict: Mapping[str, torch.Tensor], path: str | Path) -> dict[str, torch.Tensor]:
    """Keep the background and person rows of a COCO box predictor; other weights unchanged.

    ``cls_score.weight`` [91, D] -> [2, D], ``cls_score.bias`` [91] -> [2], ``bbox_pred.weight``
    [91*4, D] -> [8, D], ``bbox_pred.bias`` [364] -> [8]. A predictor that already has two classes
    is returned as it is. ``path`` names the checkpoint in errors.
    """
    out = dict(state_dict)
    key = f"{PREDICTOR}.cls_score.weight"
    if key not in out:
        raise InputError(path, f"not a torchvision Faster R-CNN checkpoint: no {key}")
    n_classes = out[key].shape[0]
    if n_classes == NUM_CLASSES:
        return out
    if n_classes != COCO_NUM_CLASSES:
        raise InputError(path, f"box predictor has {n_classes} classes; expected COCO's "
                               f"{COCO_NUM_CLASSES} or {NUM_CLASSES}")
    keep = torch.tensor([0, COCO_PERSON])
    keep_box = (keep[:, None] * 4 + torch.arange(4)).reshape(-1)
    for name, rows in (("cls_score", keep), ("bbox_pred", keep_box)):
        for part in ("weight", "bias"):
            full = f"{PREDICTOR}.{name}.{part}"
            out[full] = out[full][rows].clone()
    return out


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights-only checkpoint; a ``{'model': state_dict}`` wrapper is accepted too."""
    obj = load_torch_file(path, "detector checkpoint")
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(path, "checkpoint is not a state dict of tensors")
    return obj


def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Load ``state_dict`` into ``model``; a missing, extra or misshapen tensor is an :class:`InputError`.

    Batch-norm batch counters are ignored both ways, as torchvision's pretrained files (frozen
    batch norm) have none.
    """
    own = model.state_dict()
    counter = "num_batches_tracked"   # only in BatchNorm2d, not in FrozenBatchNorm2d: either may be saved
    missing = [k for k in own if k not in state_dict and not k.endswith(counter)]
    unexpected = [k for k in state_dict if k not in own and not k.endswith(counter)]
    shape = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    if missing or unexpected or shape:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shape)):
            if keys:
                parts.append(f"{len(keys)} {what} (e.g. {keys[0]})")
        raise InputError(path, "checkpoint does not fit the configured detector: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=False)


def coco_detector(params: DetectorParams, path: str | Path) -> FasterRCNN:
    """The detector of ``params`` loaded from a COCO checkpoint file, reduced to the person class."""
    model = build_detector(params, pretrained=True)
    load_weights(model, reduce_to_person(load_state_dict_file(path), path), path)
    return model


def initial_detector(params: DetectorParams) -> FasterRCNN:
    """The detector fine-tuning starts from: COCO weights when ``params.weights`` names a file."""
    if params.weights:
        return coco_detector(params, params.weights)
    return build_detector(params, pretrained=False)


def trained_detector(params: DetectorParams, checkpoint: str | Path) -> FasterRCNN:
    """The fine-tuned detector saved by the ``detector_train`` stage, in eval mode."""
    model = build_detector(params, pretrained=bool(params.weights))
    load_weights(model, load_state_dict_file(checkpoint), checkpoint)
    return model.eval()
