"""The typed parameters of every stage: what a stage takes, and nothing else.

:mod:`pipeline.config` builds them from the validated config (``stage_params``), where the schema
has already filled in every default; the Snakemake rules pass them to the stage as ``--params``
JSON, and the stage's ``main`` reads them back with :func:`parse_params`. No field has a default
here: the schema (``workflow/schemas/config.schema.yaml``) is the one place of defaults.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

P = TypeVar("P")


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """An optimizer run: ``detect.train``, a backbone's ``finetune`` or a model's ``train``."""

    epochs: int
    lr: float
    batch_size: int
    weight_decay: float
    optimizer: str               # sgd | adamw


@dataclasses.dataclass(frozen=True)
class TrainRecipe(TrainSettings):
    """The training recipe of a model's head (``models.*.train``): the optimizer's momentum and
    Nesterov (SGD), the learning-rate schedule (``constant`` | ``cosine`` | ``steps``, after a linear
    warmup of ``warmup_epochs``) and the epochs at which ``steps`` multiplies the rate by
    ``lr_step_factor``."""

    momentum: float
    nesterov: bool
    schedule: str                # constant | cosine | steps
    warmup_epochs: float
    lr_steps: list[int]
    lr_step_factor: float


@dataclasses.dataclass(frozen=True)
class FinetuneRecipe(TrainRecipe):
    """A backbone's ``finetune``: the recipe, whether batch norm is frozen (statistics and affine
    parameters kept as pretrained) and the head trained end to end with the backbone (``linear``,
    or ``atr``: the actor-target relation)."""

    freeze_bn: bool
    head: str                    # linear | atr


@dataclasses.dataclass(frozen=True)
class ComputeParams:
    """Where a torch stage runs (``compute``): device (auto | cpu | cuda), mixed precision on GPU
    (off | bf16 | fp16) and the DataLoader's worker processes."""

    device: str
    precision: str
    loader_workers: int


@dataclasses.dataclass(frozen=True)
class SplitFiles:
    """One split of ``dataset.splits``, paths relative to the dataset root."""

    ground_truth: str | None
    excluded: str | None
    videos: str | None


@dataclasses.dataclass(frozen=True)
class PrepareParams:
    """The ``prepare`` stage: the AVA segment cut from each movie."""

    start: float
    duration: float


@dataclasses.dataclass(frozen=True)
class DatasetParams:
    """The ``dataset`` stage."""

    root: str
    videos: str
    label_map: str
    time_offset: float
    keyframe_margin: float
    splits: dict[str, SplitFiles]
    segment: PrepareParams | None     # dataset.prepare: ``videos`` holds the full movies, cut later


@dataclasses.dataclass(frozen=True)
class FramesParams:
    """The ``frames`` stage. ``context_s``: seconds kept each side of a keyframe (window ``clips``)."""

    short_side: int
    fps: float
    window: str                  # all | clips
    jpeg_quality: int
    time_offset: float
    context_s: float | None


@dataclasses.dataclass(frozen=True)
class FlowParams:
    """The ``flow`` stage for one method; ``options``: that method's OpenCV parameters."""

    method: str                  # farneback | tvl1
    bound: float
    jpeg_quality: int
    options: dict[str, Any]
    context_s: float | None


@dataclasses.dataclass(frozen=True)
class AudioParams:
    """The ``audio`` stage."""

    sample_rate: int
    n_mels: int
    n_fft: int
    hop: int
    window_s: float
    time_offset: float


@dataclasses.dataclass(frozen=True)
class DetectorParams:
    """The person detector: ``detector_train``, ``detect`` and ``detect_precomputed``."""

    arch: str
    weights: str | None
    min_size: int
    max_size: int | None
    train: TrainSettings
    score_threshold: float
    nms_iou: float
    max_per_keyframe: int
    seed: int
    compute: ComputeParams


@dataclasses.dataclass(frozen=True)
class InferVideoParams:
    """The ``dataset_infer`` stage: one video without annotations, keyframes on its 1 Hz grid."""

    time_offset: float           # timeline second of video time 0 (infer.time_offset)
    keyframe_margin: float


@dataclasses.dataclass(frozen=True)
class PretrainedDetectorParams:
    """The ``detect_pretrained`` stage: a COCO-trained person detector used as it is (``infer.detector``).
    ``detector``: the detect section with ``infer``'s score threshold (arch, weights and min_size serve
    ``fasterrcnn_coco``)."""

    name: str                    # ssd_mobilenet_v2_coco | hog | fasterrcnn_coco
    detector: DetectorParams


@dataclasses.dataclass(frozen=True)
class VisualizeParams:
    """The ``visualize`` stage: what is drawn on one video."""

    predictions: str             # the model or fusion whose scores are drawn (its name, for the title)
    score_threshold: float       # actions shown from this probability
    top_k: int                   # actions shown per person at most
    box_threshold: float         # person boxes shown from this detector score
    time_offset: float           # timeline second of video time 0
    tiles: int                   # keyframes on the contact sheet at most
    tile_width: int              # pixels


@dataclasses.dataclass(frozen=True)
class BackboneParams:
    """One backbone: ``finetune`` and ``features``. Audio has no clip or ROI keys (None)."""

    arch: str
    modality: str                # rgb | flow/<method> | audio
    clip_frames: int | None
    clip_stride: int | None
    input_size: int | None
    roi_size: int | None
    roi_pool: str                # max | avg
    roi_op: str                  # align | pool (torchvision's roi_align or roi_pool)
    context_frames: int          # time bins of the context map (1: averaged over time)
    dropout: float               # before the finetuning head's linear layer
    weights: str | None
    weights_layout: str          # torchvision | pyslowfast | mmaction2 | caffe2
    finetune: FinetuneRecipe
    seed: int
    train_box_iou: float         # detections this close to a ground-truth box are training boxes
    compute: ComputeParams


@dataclasses.dataclass(frozen=True)
class ModelParams:
    """One model (a head on one or several backbones' features): ``head`` and ``predict``."""

    backbones: list[str]
    combine: str                 # concat | add (several backbones)
    head: str                    # linear | atr
    train: TrainRecipe
    seed: int
    compute: ComputeParams


@dataclasses.dataclass(frozen=True)
class FusionParams:
    """The ``fuse`` stage."""

    models: list[str]
    strategy: str                # mean_prob | mean_logit | topk_logit | topk_box_logit
    select_split: str | None     # topk_logit: the split whose per-class AP chooses the models; else None


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    """The ``evaluate`` stage."""

    iou: float
    capacity: int | None
    variant: str                 # 2019 | 2020


@dataclasses.dataclass(frozen=True)
class AblationParams:
    """The ``ablation`` stage: the models (heads) and fusions retrained per seed, the pairs of models
    compared (``[model, against]``), the label type whose classes it reports, the evaluated split."""

    seeds: list[int]
    models: dict[str, ModelParams]
    fusions: dict[str, FusionParams]
    compare: list[list[str]]
    label_type: str
    split: str
    evaluate: EvaluateParams


@dataclasses.dataclass(frozen=True)
class ReportParams:
    """The ``report`` stage: what each row of the tables is made of."""

    models: dict[str, ModelParams]
    backbones: dict[str, BackboneParams]
    fusions: dict[str, FusionParams]
    baseline: str
    eval_splits: list[str]
    paper_rows: dict[str, str]   # prediction name -> key of pipeline.paper.TABLE1
    config: dict[str, Any]       # the validated config that produced the run (shown in the report)


class ParamsError(ValueError):
    """``--params`` does not hold the fields of the stage's parameter type."""


def to_json(params: Any) -> str:
    """Canonical JSON of a parameter object (sorted keys, no spaces): Snakemake re-runs a stage
    when, and only when, this text changes."""
    return json.dumps(dataclasses.asdict(params), sort_keys=True, separators=(",", ":"))


def as_dict(params: Any) -> dict[str, Any]:
    """A parameter object as plain data (for provenance)."""
    return dataclasses.asdict(params)


def parse_params(cls: type[P], text: str) -> P:
    """The ``cls`` object that ``text`` (its :func:`to_json`) holds; :class:`ParamsError` names a
    missing, unknown or mistyped field by its path."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ParamsError(f"--params is not JSON: {err}") from None
    return build(cls, data, cls.__name__)


def build(cls: Any, data: Any, where: str) -> Any:
    """``data`` (plain JSON values) as an instance of the type ``cls``, checked field by field."""
    origin = typing.get_origin(cls)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(cls)
        if data is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return build(inner, data, where)
    if dataclasses.is_dataclass(cls):
        if not isinstance(data, dict):
            raise ParamsError(f"{where}: expected an object, got {data!r}")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in data]
        unknown = sorted(set(data) - set(names))
        if missing or unknown:
            raise ParamsError(f"{where}: missing {missing}, unknown {unknown}")
        return cls(**{n: build(hints[n], data[n], f"{where}.{n}") for n in names})
    if origin is dict:
        _, value_type = typing.get_args(cls)
        if not isinstance(data, dict):
            raise ParamsError(f"{where}: expected an object, got {data!r}")
        return {str(k): build(value_type, v, f"{where}.{k}") for k, v in data.items()}
    if origin is list:
        (item_type,) = typing.get_args(cls)
        if not isinstance(data, list):
            raise ParamsError(f"{where}: expected a list, got {data!r}")
        return [build(item_type, v, f"{where}[{i}]") for i, v in enumerate(data)]
    if cls is Any:
        return data
    if cls is float and isinstance(data, (int, float)) and not isinstance(data, bool):
        return float(data)
    if cls in (int, str, bool) and type(data) is cls:
        return data
    raise ParamsError(f"{where}: expected {getattr(cls, '__name__', cls)}, got {data!r}")
