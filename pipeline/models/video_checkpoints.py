"""Kinetics-pretrained video weights from the checkpoint layouts users have, mapped onto the
pipeline's I3D (and I3D-NL) ResNet-50 and P3D-199 (local files only: nothing is downloaded).

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
- ``pseudo-3d-pytorch`` (P3D-199): Qiu et al.'s Kinetics P3D-199 (the authors' Caffe model) as
  ``qijiezhao/pseudo-3d-pytorch`` publishes it (``p3d_rgb_199.checkpoint.pth.tar``,
  ``p3d_flow_199.checkpoint.pth.tar``: ``{"state_dict": {"conv1_custom.weight", "layer1.0.conv2.weight",
  ...}}``). Its blocks stride in their first 1x1 convolution, as Caffe's ResNets (the loaded network
  does too: :class:`pipeline.models.p3d.P3dResNet152`'s extra state), its res5 is 2D (4D filters), and
  its flow network reads 2 channels (the third, dx·dy, starts with zero filters).
Classifier weights (``head.*``, ``cls_head.*``, ``pred_*``, ``fc.*``), optimizer momenta (``*_momentum``) and
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

from pipeline.errors import InputError
from pipeline.models.i3d import I3dResNet50, NonLocal3d
from pipeline.models.p3d import P3dResNet152, PseudoConv3d
from pipeline.store import load_torch_file

#: Source keys that carry no weights of the backbone.
IGNORED = re.compile(r"(^|\.)(head|cls_head|data_preprocessor)\.|^(pred_|fc\.)|_momentum$|num_batches_tracked$"
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
        raise ValueError(f"unknown weights layout {layout!r}: expected one of {', '.join(SOURCE_PREFIX)}")
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
        state = load_torch_file(path, f"{layout} checkpoint")
    except InputError as err:
        raise InputError(path, f"{err.message}; a checkpoint holding other objects can be cut down to its state "
                               "dict once, in the project that wrote it: "
                               "torch.save(torch.load(IN, weights_only=False)['state_dict'], OUT)") from None
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


def fit_source(value: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """``value`` as a tensor of our ``shape``, or None when it does not fit: the same shape; a 2D
    filter ``[O, I, h, w]`` for our ``[O, I, 1, h, w]`` (the P3D port's 2D res5); a flow network's
    2-channel stem (dx, dy) for our 3 channels (dx, dy and their product, which starts unused)."""
    if value.shape == shape:
        return value
    if value.dim() == 4 and len(shape) == 5 and shape[2] == 1 and value.unsqueeze(2).shape == shape:
        return value.unsqueeze(2)
    if value.dim() == 5 and len(shape) == 5 and value.shape[1] == 2 and shape[1] == 3 \
            and value.shape[:1] + value.shape[2:] == shape[:1] + shape[2:]:
        return torch.cat([value, torch.zeros_like(value[:, :1])], dim=1)
    return None


def load_mapped(model: nn.Module, path: str | Path, layout: str, mapping: dict[str, str], what: str,
                filled: dict[str, torch.Tensor] | None = None, source: dict[str, torch.Tensor] | None = None) -> None:
    """Copy the file's tensors into ``model`` by ``mapping`` (``{our key: the source's key}``);
    ``filled``: values for our keys that the source leaves out by design.

    Raises ValueError naming the file and ``what`` it should be, listing what does not fit: our keys
    the file lacks, its arrays with no place in the network, and shapes that differ.
    """
    source = read_source_state(path, layout) if source is None else source
    filled = filled or {}
    ours = model.state_dict()
    missing = [f"{src} (for {key})" for key, src in mapping.items() if src not in source and key not in filled]
    used = set(mapping.values())
    unexpected = sorted(k for k in source if k not in used and not IGNORED.search(k))
    fitted = {key: fit_source(source[src], ours[key].shape) for key, src in mapping.items() if src in source}
    shapes = [f"{mapping[key]} {tuple(source[mapping[key]].shape)} (for {key} {tuple(ours[key].shape)})"
              for key, value in fitted.items() if value is None]
    if missing or unexpected or shapes:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)}: {_listed(missing)}")
        if unexpected:
            problems.append(f"unexpected {len(unexpected)}: {_listed(unexpected)}")
        if shapes:
            problems.append(f"other shapes {len(shapes)}: {_listed(shapes)}")
        raise ValueError(f"{path}: not a {layout} {what} checkpoint; " + "; ".join(problems))
    with torch.no_grad():
        for key in mapping:
            ours[key].copy_(filled[key] if key in filled else fitted[key].to(ours[key].dtype))


def load_i3d_checkpoint(model: I3dResNet50, path: str | Path, layout: str) -> None:
    """Load the checkpoint file ``path`` of ``layout`` into ``model`` in place, non-local variant included."""
    mapping = key_map(model, layout)
    source = read_source_state(path, layout)
    kind = "I3D-NL" if any(isinstance(m, NonLocal3d) for m in model.modules()) else "I3D (no non-local blocks)"
    load_mapped(model, path, layout, mapping, f"{kind} ResNet-50", _defaults(model, layout, source, mapping), source)
    for module in model.modules():
        if isinstance(module, NonLocal3d):
            module.set_extra_state(NONLOCAL_STATE[layout])


def p3d_module_map(model: P3dResNet152) -> dict[str, tuple[str, str]]:
    """``{our module path: (kind, the pseudo-3d-pytorch port's module path)}`` for P3D-199: its stem
    ``conv1_custom``/``bn1``; per block ``conv1``/``bn1``, S ``conv2``/``bn2``, T ``conv3``/``bn3``
    (res5: ``conv_normal``/``bn_normal``), ``conv4``/``bn4``, ``downsample.0``/``.1``."""
    found = {"stem.0": ("conv", "conv1_custom"), "stem.1": ("bn", "bn1")}
    for name in ("layer1", "layer2", "layer3", "layer4"):
        for index, block in enumerate(getattr(model, name)):
            ours, theirs = f"{name}.{index}", f"{name}.{index}"
            pairs = [("conv1", "conv", "conv1"), ("bn1", "bn", "bn1"), ("conv3", "conv", "conv4"), ("bn3", "bn", "bn4")]
            if isinstance(block.conv2, PseudoConv3d):
                pairs += [("conv2.spatial", "conv", "conv2"), ("conv2.spatial_bn", "bn", "bn2"),
                          ("conv2.temporal", "conv", "conv3"), ("conv2.temporal_bn", "bn", "bn3")]
            else:
                pairs += [("conv2", "conv", "conv_normal"), ("bn2", "bn", "bn_normal")]
            if block.downsample is not None:
                pairs += [("downsample.0", "conv", "downsample.0"), ("downsample.1", "bn", "downsample.1")]
            found.update({f"{ours}.{a}": (kind, f"{theirs}.{b}") for a, kind, b in pairs})
    return found


def load_p3d_checkpoint(model: P3dResNet152, path: str | Path, layout: str) -> None:
    """Load Qiu et al.'s Kinetics P3D-199 as ``qijiezhao/pseudo-3d-pytorch`` publishes it
    (``{"state_dict": ...}``; RGB or 2-channel flow) into ``model``, striding in the first 1x1
    convolution of a block as it does."""
    ours = model.state_dict()
    mapping = {f"{module}.{param}": f"{source}.{param}" for module, (kind, source) in p3d_module_map(model).items()
               for param in PARAMS[kind] if f"{module}.{param}" in ours}
    load_mapped(model, path, layout, mapping, "P3D-199")
    model.set_extra_state({"stride_in": "1x1"})


def load_video_checkpoint(net: nn.Module, arch: str, path: str | Path, layout: str) -> None:
    """Load a video checkpoint of ``layout`` into the backbone ``net`` of ``arch``."""
    if layout in ("pyslowfast", "mmaction2", "caffe2") and isinstance(net, I3dResNet50):
        load_i3d_checkpoint(net, path, layout)
    elif layout == "pseudo-3d-pytorch" and isinstance(net, P3dResNet152):
        load_p3d_checkpoint(net, path, layout)
    else:
        raise ValueError(f"weights layout {layout!r} does not fit arch {arch!r}")
