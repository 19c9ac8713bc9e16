"""Kinetics-pretrained I3D (and I3D-NL) ResNet-50 weights from the checkpoint layouts users have,
mapped onto :class:`pipeline.models.i3d.I3dResNet50` (local files only: nothing is downloaded).

Layouts (``backbones.<name>.weights_layout``; key names and shapes from each project's model code):
- ``pyslowfast``: a PySlowFast training checkpoint (``.pyth``: ``{"model_state": ..., ...}``), model
  ``ResNet`` with arch ``i3d`` (``s1.pathway0_stem.conv``, ``s2.pathway0_res0.branch2.a``/``a_bn``,
  ``branch1``/``branch1_bn``, ``s3.pathway0_nonlocal1.conv_theta``/``conv_phi``/``conv_g``/``conv_out``/``bn``);
- ``mmaction2``: an MMAction2 ``Recognizer3D`` checkpoint with a ``ResNet3d`` backbone (``.pth``:
  ``{"state_dict": {"backbone.conv1.conv.weight", ...}, "meta": ...}``; ``layer2.1.conv1.conv``/``.bn``,
  ``downsample.conv``/``.bn``, ``layer2.1.non_local_block.theta.conv``, ``phi.0.conv``, ``g.0.conv``,
  ``conv_out.conv``/``.bn``). Its embedded-Gaussian non-local blocks max-pool the phi and g
  embeddings and do not scale (its config's ``use_scale=False``): the loaded blocks do the same;
- ``caffe2``: Caffe2 blob names (``conv1_w``, ``res_conv1_bn_s``, ``res2_0_branch2a_w``,
  ``res3_1_branch2a_bn_riv``, ``nonlocal_conv3_1_theta_w``, ...), in the ``.pt`` file that
  ``python -m pipeline.models.convert_caffe2 IN.pkl OUT.pt`` makes once from a video-nonlocal-net
  pickle or a PySlowFast model-zoo ``.pkl`` (which hold the same blobs). BatchNorms saved as affine
  transforms only (``_bn_s``, ``_bn_b``: video-nonlocal-net's ``USE_AFFINE``) get mean 0 and variance
  1 - eps, which makes the eval-mode BatchNorm that affine transform.
Classifier weights (``head.*``, ``cls_head.*``, ``pred_*``), optimizer momenta (``*_momentum``) and
BatchNorm counters are ignored; every other parameter of the network must be in the file with the
network's shape, and every other array of the file must have a place in the network, else a
ValueError names the file and lists the keys that do not fit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.models.i3d import I3dResNet50, NonLocal3d
from pipeline.models.names import VIDEO_LAYOUTS

#: Source keys that carry no weights of the backbone.
IGNORED = re.compile(r"(^|\.)(head|cls_head|data_preprocessor)\.|^pred_|_momentum$|num_batches_tracked$"
                     r"|^(model_iter|lr)$")
#: Non-local blocks as each layout's source defines them (``NonLocal3d`` extra state).
NONLOCAL_STATE = {"pyslowfast": {"scale": True, "pool": "input"}, "caffe2": {"scale": True, "pool": "input"},
                  "mmaction2": {"scale": False, "pool": "embedding"}}
SHOWN = 12


@dataclass(frozen=True)
class Unit:
    """A convolution or BatchNorm of the network: ``ours`` (module path), ``kind`` (conv | bn),
    ``where`` (``("stem",)``, ``("block", stage, index, role)`` with role a | b | c | shortcut, or
    ``("nonlocal", stage, index, role)`` with role theta | phi | g | out | bn), stage 2..5 as res2..res5."""

    ours: str
    kind: str
    where: tuple


def i3d_units(model: I3dResNet50) -> list[Unit]:
    """Every convolution and BatchNorm of ``model``, with where the originals put it."""
    units = [Unit("stem.0", "conv", ("stem",)), Unit("stem.1", "bn", ("stem",))]
    for stage, name in enumerate(("layer1", "layer2", "layer3", "layer4"), start=2):
        index = -1
        for position, module in enumerate(getattr(model, name)):
            prefix = f"{name}.{position}"
            if isinstance(module, NonLocal3d):
                for role, path in (("theta", "theta"), ("phi", "phi"), ("g", "g"), ("out", "out.0")):
                    units.append(Unit(f"{prefix}.{path}", "conv", ("nonlocal", stage, index, role)))
                units.append(Unit(f"{prefix}.out.1", "bn", ("nonlocal", stage, index, "bn")))
                continue
            index += 1
            for role, conv, bn in (("a", "conv1", "bn1"), ("b", "conv2", "bn2"), ("c", "conv3", "bn3")):
                units.append(Unit(f"{prefix}.{conv}", "conv", ("block", stage, index, role)))
                units.append(Unit(f"{prefix}.{bn}", "bn", ("block", stage, index, role)))
            if module.downsample is not None:
                units.append(Unit(f"{prefix}.downsample.0", "conv", ("block", stage, index, "shortcut")))
                units.append(Unit(f"{prefix}.downsample.1", "bn", ("block", stage, index, "shortcut")))
    return units


def _pyslowfast(unit: Unit) -> str:
    if unit.where[0] == "stem":
        return "s1.pathway0_stem." + unit.kind
    _, stage, index, role = unit.where
    if unit.where[0] == "nonlocal":
        return f"s{stage}.pathway0_nonlocal{index}." + ("bn" if role == "bn" else f"conv_{role}")
    branch = "branch1" if role == "shortcut" else f"branch2.{role}"
    return f"s{stage}.pathway0_res{index}.{branch}" + ("_bn" if unit.kind == "bn" else "")


def _mmaction2(unit: Unit) -> str:
    if unit.where[0] == "stem":
        return "conv1." + unit.kind
    _, stage, index, role = unit.where
    block = f"layer{stage - 1}.{index}"
    if unit.where[0] == "nonlocal":
        path = {"theta": "theta.conv", "phi": "phi.0.conv", "g": "g.0.conv", "out": "conv_out.conv",
                "bn": "conv_out.bn"}
        return f"{block}.non_local_block.{path[role]}"
    module = "downsample" if role == "shortcut" else f"conv{'abc'.index(role) + 1}"
    return f"{block}.{module}.{unit.kind}"


def _caffe2(unit: Unit) -> str:
    if unit.where[0] == "stem":
        return "conv1" if unit.kind == "conv" else "res_conv1_bn"
    _, stage, index, role = unit.where
    if unit.where[0] == "nonlocal":
        return f"nonlocal_conv{stage}_{index}_{role}"
    branch = "branch1" if role == "shortcut" else f"branch2{role}"
    return f"res{stage}_{index}_{branch}" + ("_bn" if unit.kind == "bn" else "")


SOURCE_PREFIX = {"pyslowfast": _pyslowfast, "mmaction2": _mmaction2, "caffe2": _caffe2}
PARAMS = {"conv": ("weight", "bias"), "bn": ("weight", "bias", "running_mean", "running_var")}
CAFFE2_SUFFIX = {"weight": "_w", "bias": "_b"}
CAFFE2_BN_SUFFIX = {"weight": "_s", "bias": "_b", "running_mean": "_rm", "running_var": "_riv"}


def source_key(unit: Unit, param: str, layout: str) -> str:
    """The name of ``unit``'s parameter ``param`` in a checkpoint of ``layout``."""
    prefix = SOURCE_PREFIX[layout](unit)
    if layout != "caffe2":
        return f"{prefix}.{param}"
    return prefix + (CAFFE2_BN_SUFFIX if unit.kind == "bn" else CAFFE2_SUFFIX)[param]


def key_map(model: I3dResNet50, layout: str) -> dict[str, str]:
    """``{our state-dict key: the source's key}`` for every weight of ``model`` (BatchNorm counters
    and the non-local blocks' extra state aside)."""
    if layout not in SOURCE_PREFIX:
        raise ValueError(f"unknown weights layout {layout!r}: expected one of {', '.join(VIDEO_LAYOUTS)}")
    ours = model.state_dict()
    found = {}
    for unit in i3d_units(model):
        for param in PARAMS[unit.kind]:
            key = f"{unit.ours}.{param}"
            if key in ours:
                found[key] = source_key(unit, param, layout)
    return found


def read_source_state(path: str | Path, layout: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file of ``layout``, unwrapped (``model_state``, ``state_dict``,
    DistributedDataParallel's ``module.``, MMAction2's ``backbone.``). Read with ``weights_only=True``:
    a file whose pickle holds anything but tensors and plain containers is refused."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: cannot read it as a {layout} checkpoint of tensors ({err}); a checkpoint "
                         "holding other objects can be cut down to its state dict once, in the project that "
                         "wrote it: torch.save(torch.load(IN, weights_only=False)['state_dict'], OUT)") from err
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a {layout} checkpoint (a {type(state).__name__}, not a dict)")
    for wrapper in ("model_state", "state_dict", "blobs"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if layout == "mmaction2" and any(k.startswith("backbone.") for k in state):
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _defaults(model: I3dResNet50, layout: str, source: dict[str, torch.Tensor],
              mapping: dict[str, str]) -> dict[str, torch.Tensor]:
    """Values for our keys that a source leaves out by design: MMAction2's bias-free non-local output
    convolution (zero bias), Caffe2's affine-only BatchNorms (mean 0, variance 1 - eps)."""
    ours = model.state_dict()
    filled = {}
    for key, src in mapping.items():
        if src in source:
            continue
        if layout == "mmaction2" and src.endswith("conv_out.conv.bias"):
            filled[key] = torch.zeros_like(ours[key])
        elif layout == "caffe2" and (src.endswith("_bn_rm") or src.endswith("_bn_riv")) \
                and src[: -len("_rm" if src.endswith("_rm") else "_riv")] + "_s" in source:
            bn = model.get_submodule(key.rsplit(".", 1)[0])
            filled[key] = torch.zeros_like(ours[key]) if src.endswith("_rm") else torch.full_like(ours[key], 1 - bn.eps)
    return filled


def _listed(items: list[str]) -> str:
    more = f", ... ({len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def load_i3d_checkpoint(model: I3dResNet50, path: str | Path, layout: str) -> None:
    """Load the checkpoint file ``path`` of ``layout`` into ``model`` in place.

    Raises ValueError naming the file and listing what does not fit: our keys the file lacks, its
    arrays with no place in the network, and shapes that differ.
    """
    mapping = key_map(model, layout)
    source = read_source_state(path, layout)
    filled = _defaults(model, layout, source, mapping)
    ours = model.state_dict()
    missing = [f"{src} (for {key})" for key, src in mapping.items() if src not in source and key not in filled]
    used = set(mapping.values())
    unexpected = sorted(k for k in source if k not in used and not IGNORED.search(k))
    shapes = [f"{src} {tuple(source[src].shape)} (for {key} {tuple(ours[key].shape)})"
              for key, src in mapping.items() if src in source and source[src].shape != ours[key].shape]
    if missing or unexpected or shapes:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)}: {_listed(missing)}")
        if unexpected:
            problems.append(f"unexpected {len(unexpected)}: {_listed(unexpected)}")
        if shapes:
            problems.append(f"other shapes {len(shapes)}: {_listed(shapes)}")
        kind = "I3D-NL" if any(isinstance(m, NonLocal3d) for m in model.modules()) else "I3D (no non-local blocks)"
        raise ValueError(f"{path}: not a {layout} {kind} ResNet-50 checkpoint; " + "; ".join(problems))
    with torch.no_grad():
        for key, src in mapping.items():
            ours[key].copy_(filled[key] if key in filled else source[src].to(ours[key].dtype))
    for module in model.modules():
        if isinstance(module, NonLocal3d):
            module.set_extra_state(NONLOCAL_STATE[layout])


def load_video_checkpoint(net: nn.Module, arch: str, path: str | Path, layout: str) -> None:
    """Load a video checkpoint of ``layout`` into the backbone ``net`` of ``arch`` (only the I3D
    archs have published layouts mapped here)."""
    if not isinstance(net, I3dResNet50):
        raise ValueError(f"weights layout {layout!r} is for the I3D archs, not {arch!r}")
    load_i3d_checkpoint(net, path, layout)
