"""The config: validated against the schema (which fills in every default), checked for references
between sections, and turned into each stage's typed parameters (:func:`stage_params`).

The Snakefile calls :func:`validate_config` before any job starts; the schema at
``workflow/schemas/config.schema.yaml`` documents every key and holds every default.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import yaml

from pipeline.fusion import SELECTING
from pipeline.models.names import arch_problem, layout_problem
from pipeline.paper import row_problem
from pipeline.params import (AblationParams, AudioParams, BackboneParams, DatasetParams, DetectorParams, EvaluateParams,
                             FlowParams, FramesParams, FusionParams, InferVideoParams, ModelParams, PrepareParams,
                             PretrainedDetectorParams, ReportParams, VisualizeParams, build)

#: Backbone keys that say how clips of frames or flow are sampled and pooled.
CLIP_KEYS = {"clip_frames", "clip_stride", "input_size", "roi_size", "roi_pool", "roi_op", "context_frames"}
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """config.yaml breaks the schema or refers to something it does not define."""


@functools.lru_cache(maxsize=1)
def _schema_text() -> str:
    return SCHEMA_PATH.read_text()


def load_schema() -> dict[str, Any]:
    """The config schema (a fresh copy: callers may change it)."""
    return yaml.safe_load(_schema_text())


@functools.lru_cache(maxsize=1)
def _validators() -> tuple[Any, Any]:
    """The checking and the defaulting validator of the schema, built once."""
    schema = load_schema()
    return jsonschema.Draft202012Validator(schema), _DefaultingValidator(schema)


def _where(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _fill_defaults(validator: Any, properties: dict[str, Any], instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    """jsonschema's ``properties`` check, which first sets each absent property that has a ``default``."""
    if validator.is_type(instance, "object"):
        for name, subschema in properties.items():
            if "default" in subschema and name not in instance:
                instance[name] = copy.deepcopy(subschema["default"])
    yield from jsonschema.Draft202012Validator.VALIDATORS["properties"](validator, properties, instance, schema)


#: Draft 2020-12 that fills in the schema's defaults as it validates.
_DefaultingValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"properties": _fill_defaults})


def check_schema(config: dict[str, Any], source: str = "config") -> None:
    """Raise :class:`ConfigError` listing every schema violation with its key path."""
    errors = sorted(_validators()[0].iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {_where(e.absolute_path)}: {e.message}" for e in errors]
        raise ConfigError(f"{source} does not match {SCHEMA_PATH.name}:\n" + "\n".join(lines))


def check_references(config: dict[str, Any], source: str = "config") -> None:
    """Raise :class:`ConfigError` when a section names a split, method, backbone or model that is not defined."""
    problems: list[str] = []
    splits = config["dataset"]["splits"]
    if config["dataset"]["train_split"] not in splits:
        problems.append(f"dataset.train_split {config['dataset']['train_split']!r} is not in dataset.splits")
    if "ground_truth" not in splits.get(config["dataset"]["train_split"], {}):
        problems.append("dataset.train_split needs ground_truth")
    for split in config["dataset"]["eval_splits"]:
        if split not in splits:
            problems.append(f"dataset.eval_splits names {split!r}, which is not in dataset.splits")
    for name, backbone in config["backbones"].items():
        modality = backbone["modality"]
        if modality.startswith("flow/") and modality.split("/", 1)[1] not in config["flow"]["methods"]:
            problems.append(f"backbones.{name}.modality {modality!r} needs {modality.split('/', 1)[1]!r} in flow.methods")
        if modality == "audio":
            for key in sorted(set(backbone) & CLIP_KEYS):
                problems.append(f"backbones.{name}.{key}: does not apply to audio, which reads the "
                                f"keyframe's log-mel window")
        if modality == "audio" and backbone["finetune"].get("head") == "atr":
            problems.append(f"backbones.{name}.finetune.head: the atr head relates a box to the picture around "
                            f"it; audio has no picture (use linear)")
        problem = arch_problem(backbone["arch"], modality)
        if problem:
            problems.append(f"backbones.{name}.arch: {problem}")
        if "weights_layout" in backbone:
            problem = layout_problem(backbone["arch"], backbone["weights_layout"])
            if problem:
                problems.append(f"backbones.{name}.weights_layout: {problem}")
    for name, model in config["models"].items():
        key = "backbones" if "backbones" in model else "backbone"
        missing = [b for b in model_backbones(model) if b not in config["backbones"]]
        for backbone in missing:
            problems.append(f"models.{name}.{key} names {backbone!r}, which is not in backbones")
        if "combine" in model and "backbones" not in model:
            problems.append(f"models.{name}.combine needs backbones (a list), not backbone")
        if not missing and model["head"] == "atr" and any(
                config["backbones"][b]["modality"] == "audio" for b in model_backbones(model)):
            problems.append(f"models.{name}: the atr head relates a box to the picture around it; "
                            f"audio features have no picture (use head: linear)")
    for name, fusion in config["fusions"].items():
        for model in fusion["models"]:
            if model not in config["models"]:
                problems.append(f"fusions.{name}.models names {model!r}, which is not in models")
        if fusion["strategy"] in SELECTING:
            select = fusion.get("select_on", "val")
            if "ground_truth" not in splits.get(select, {}):
                problems.append(f"fusions.{name}.select_on: {fusion['strategy']} chooses its models by their AP on "
                                f"split {select!r}, which is not a split with ground_truth in dataset.splits")
    ablation = config.get("ablation")
    if ablation is not None:
        for pair in ablation["compare"]:
            for model in pair:
                if model not in config["models"]:
                    problems.append(f"ablation.compare names {model!r}, which is not in models")
        for fusion in ablation.get("fusions", []):
            if fusion not in config["fusions"]:
                problems.append(f"ablation.fusions names {fusion!r}, which is not in fusions")
        split = ablation.get("split", "val")
        if "ground_truth" not in splits.get(split, {}):
            problems.append(f"ablation.split {split!r} is not a split with ground_truth in dataset.splits")
    for section in ("models", "fusions"):
        for name, entry in config[section].items():
            problem = entry.get("paper_row") and row_problem(entry["paper_row"])
            if problem:
                problems.append(f"{section}.{name}.paper_row: {problem}")
    drawn = (config.get("infer") or {}).get("predictions")
    if drawn is not None and drawn not in config["models"] and drawn not in {f"fusion-{f}" for f in config["fusions"]}:
        problems.append(f"infer.predictions names {drawn!r}, which is neither a model nor fusion-<name> of fusions")
    reserved = {"baseline-prior"} | {f"fusion-{f}" for f in config["fusions"]}
    for name in config["models"]:
        if name in reserved or name.startswith("fusion-"):
            problems.append(f"models.{name}: the name is reserved for fusions and the baseline")
    if problems:
        raise ConfigError(f"{source}:\n" + "\n".join(f"  {p}" for p in problems))


def model_backbones(model: dict[str, Any]) -> list[str]:
    """The backbones whose features a ``models`` entry reads: its ``backbones``, or its one ``backbone``."""
    return list(model["backbones"]) if "backbones" in model else [model["backbone"]]


def fill_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """Set every key that the schema gives a default and ``config`` leaves out (in place)."""
    for _ in _validators()[1].iter_errors(config):
        pass
    return config


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Check the schema and the references as the user wrote them, then fill in the schema's
    defaults (in place); return ``config``."""
    check_schema(config, source)
    check_references(config, source)
    return fill_defaults(config)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a config file."""
    with open(path) as f:
        config = yaml.safe_load(f)
    return validate_config(config, str(path))


def clip_context_s(config: dict[str, Any], modality: str | None = None) -> float:
    """Seconds that ``frames.window: clips`` keeps each side of a keyframe for ``modality``.

    Half the longest clip (clip_frames * clip_stride stored frames) that the backbones reading
    ``modality`` take, plus one frame, over ``frames.fps``. Frames (``None``) serve every backbone
    of frames or flow; a modality that no backbone reads keeps what the frames keep; with no such
    backbone at all (audio only), one frame.
    """
    backbones = [b for b in config["backbones"].values() if b["modality"] != "audio"]
    readers = [b for b in backbones if modality in (None, b["modality"])] or backbones
    if not readers:
        return 1.0 / float(config["frames"]["fps"])
    half = max(b["clip_frames"] * b["clip_stride"] / 2 for b in readers)
    return (half + 1) / float(config["frames"]["fps"])


# --------------------------------------------------------------------------------------------- stage parameters

def _typed(cls: Any, data: dict[str, Any], where: str) -> Any:
    return build(cls, data, where)


def compute_section(config: dict[str, Any]) -> dict[str, Any]:
    """What every torch stage takes of ``compute``: device, precision, loader workers (not the
    per-stage GPU and process counts, which the rules give the scheduler and torchrun)."""
    return {k: config["compute"][k] for k in ("device", "precision", "loader_workers")}


def stage_processes(config: dict[str, Any], stage: str) -> int:
    """How many processes a job of ``stage`` runs: one per GPU it asks for, else its CPU processes (1
    for a stage that does not train)."""
    gpus = int(config["compute"]["gpus"].get(stage, 0))
    return gpus if gpus > 0 else int(config["compute"]["cpu_processes"].get(stage, 1))


def dataset_params(config: dict[str, Any]) -> DatasetParams:
    section = {k: v for k, v in config["dataset"].items() if k in ("root", "videos", "label_map", "time_offset",
                                                                    "keyframe_margin")}
    splits = {name: {"ground_truth": s.get("ground_truth"), "excluded": s.get("excluded"), "videos": s.get("videos")}
              for name, s in config["dataset"]["splits"].items()}
    prepare = config["dataset"].get("prepare")
    if prepare:  # the stage reads the full movies; the prepare stage cuts the segment afterwards
        section["videos"] = prepare["movies"]
    segment = {"start": prepare["start"], "duration": prepare["duration"]} if prepare else None
    return _typed(DatasetParams, {**section, "splits": splits, "segment": segment}, "dataset")


def prepare_params(config: dict[str, Any]) -> PrepareParams:
    prepare = config["dataset"]["prepare"]
    return _typed(PrepareParams, {"start": prepare["start"], "duration": prepare["duration"]}, "dataset.prepare")


def frames_params(config: dict[str, Any]) -> FramesParams:
    clips = config["frames"]["window"] == "clips"
    return _typed(FramesParams, {**config["frames"], "time_offset": config["dataset"]["time_offset"],
                                 "context_s": round(clip_context_s(config), 6) if clips else None}, "frames")


def flow_params(config: dict[str, Any], method: str) -> FlowParams:
    """The flow section with only ``method``'s options: changing TV-L1's leaves Farneback's flow alone."""
    flow = config["flow"]
    clips = config["frames"]["window"] == "clips"
    return _typed(FlowParams, {"method": method, "bound": flow["bound"], "jpeg_quality": flow["jpeg_quality"],
                               "options": flow[method],
                               "context_s": round(clip_context_s(config, f"flow/{method}"), 6) if clips else None},
                  "flow")


def audio_params(config: dict[str, Any]) -> AudioParams:
    return _typed(AudioParams, {**config["audio"], "time_offset": config["dataset"]["time_offset"]}, "audio")


def detector_params(config: dict[str, Any]) -> DetectorParams:
    section = {k: v for k, v in config["detect"].items() if k not in ("precomputed", "train_box_iou")}
    return _typed(DetectorParams, {**section, "seed": config["seed"], "compute": compute_section(config)}, "detect")


def backbone_params(config: dict[str, Any], backbone: str) -> BackboneParams:
    section = config["backbones"][backbone]
    clip_keys = {k: section.get(k) for k in ("clip_frames", "clip_stride", "input_size", "roi_size")}
    return _typed(BackboneParams, {**section, **clip_keys, "seed": config["seed"],
                                   "train_box_iou": config["detect"]["train_box_iou"], "compute": compute_section(config)},
                  f"backbones.{backbone}")


def model_params(config: dict[str, Any], model: str) -> ModelParams:
    section = config["models"][model]
    return _typed(ModelParams, {"backbones": model_backbones(section), "combine": section["combine"],
                                "head": section["head"], "train": section["train"], "seed": config["seed"],
                                "compute": compute_section(config)},
                  f"models.{model}")


def fusion_params(config: dict[str, Any], fusion: str) -> FusionParams:
    """A fusion's models and strategy, and the split that chooses its models (``select_on``) for the
    strategies that choose (else None, so that changing it re-runs nothing else)."""
    section = config["fusions"][fusion]
    select = section["select_on"] if section["strategy"] in SELECTING else None
    return _typed(FusionParams, {"models": section["models"], "strategy": section["strategy"],
                                 "select_split": select}, f"fusions.{fusion}")


def evaluate_params(config: dict[str, Any]) -> EvaluateParams:
    return _typed(EvaluateParams, config["evaluate"], "evaluate")


def ablation_models(config: dict[str, Any]) -> list[str]:
    """The models that the ablation retrains: those it compares and the members of its fusions, in order."""
    ablation = config["ablation"]
    names = [m for pair in ablation["compare"] for m in pair]
    names += [m for f in ablation["fusions"] for m in config["fusions"][f]["models"]]
    return list(dict.fromkeys(names))


def ablation_params(config: dict[str, Any]) -> AblationParams:
    ablation = config["ablation"]
    return AblationParams(
        seeds=list(ablation["seeds"]), models={m: model_params(config, m) for m in ablation_models(config)},
        fusions={f: fusion_params(config, f) for f in ablation["fusions"]},
        compare=[list(pair) for pair in ablation["compare"]], label_type=ablation["label_type"],
        split=ablation["split"], evaluate=evaluate_params(config))


def report_params(config: dict[str, Any], baseline: str) -> ReportParams:
    return ReportParams(
        models={name: model_params(config, name) for name in config["models"]},
        backbones={name: backbone_params(config, name) for name in config["backbones"]},
        fusions={name: fusion_params(config, name) for name in config["fusions"]},
        baseline=baseline, eval_splits=list(config["dataset"]["eval_splits"]),
        paper_rows=paper_rows(config), config=copy.deepcopy(config))


def paper_rows(config: dict[str, Any]) -> dict[str, str]:
    """``{prediction name: row of the paper's Table I}`` for the models and fusions that name one."""
    rows = {name: m["paper_row"] for name, m in config["models"].items() if m.get("paper_row")}
    rows.update({f"fusion-{name}": f["paper_row"] for name, f in config["fusions"].items() if f.get("paper_row")})
    return rows



# --------------------------------------------------------------------------------- inference and visualization

def infer_frames_params(config: dict[str, Any]) -> FramesParams:
    """The frames of a video without annotations: on its own timeline (``infer.time_offset``)."""
    return dataclasses.replace(frames_params(config), time_offset=config["infer"]["time_offset"])


def infer_audio_params(config: dict[str, Any]) -> AudioParams:
    return dataclasses.replace(audio_params(config), time_offset=config["infer"]["time_offset"])


def infer_video_params(config: dict[str, Any]) -> InferVideoParams:
    return _typed(InferVideoParams, {k: config["infer"][k] for k in ("time_offset", "keyframe_margin")}, "infer")


def pretrained_detector_params(config: dict[str, Any]) -> PretrainedDetectorParams:
    detector = dataclasses.replace(detector_params(config), score_threshold=config["infer"]["score_threshold"])
    return PretrainedDetectorParams(name=config["infer"]["detector"], detector=detector)


def drawn_predictions(config: dict[str, Any]) -> str:
    """The predictions that inference exports and draws: ``infer.predictions``, else the fusion of the
    most models (the first of those), else the first model."""
    if config["infer"]["predictions"]:
        return config["infer"]["predictions"]
    if config["fusions"]:
        return "fusion-" + max(config["fusions"], key=lambda f: len(config["fusions"][f]["models"]))
    return list(config["models"])[0]


def visualize_section(config: dict[str, Any]) -> dict[str, Any]:
    """``visualize`` with the schema's defaults, also when the config has no such section (inference draws too)."""
    defaults = {k: v["default"] for k, v in load_schema()["properties"]["visualize"]["properties"].items()}
    return {**defaults, **config.get("visualize", {})}


def visualize_params(config: dict[str, Any], infer: bool) -> VisualizeParams:
    """What the ``visualize`` stage draws on a dataset video (``infer`` False) or an inference video."""
    section = visualize_section(config)
    box_threshold = config["infer"]["score_threshold"] if infer and config["infer"]["detector"] != "trained" \
        else config["detect"]["score_threshold"]
    offset = config["infer"]["time_offset"] if infer else config["dataset"]["time_offset"]
    return _typed(VisualizeParams, {"predictions": drawn_predictions(config), "score_threshold": section["score_threshold"],
                                    "top_k": section["top_k"], "box_threshold": box_threshold, "time_offset": offset,
                                    "tiles": section["tiles"], "tile_width": section["tile_width"]}, "visualize")
