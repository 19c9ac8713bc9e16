# Configuration, artifact paths and input functions: the one place where the DAG's file names live.
import os
import re
import sys

from snakemake.exceptions import WorkflowError

sys.path.insert(0, workflow.basedir)

from pipeline.config import (
    ConfigError,
    ablation_models,
    ablation_params,
    audio_params,
    backbone_params,
    dataset_params,
    detector_params,
    evaluate_params,
    flow_params,
    frames_params,
    fusion_params,
    model_backbones,
    model_params,
    prepare_params,
    report_params,
    stage_processes,
    validate_config,
)
from pipeline.data.manifest import all_video_ids, find_video
from pipeline.media.stores import store_kind
from pipeline.params import to_json


def job_environment(basedir):
    """PATH and PYTHONPATH of every job: jobs run `python -m pipeline.stages.<rule>`, so the interpreter
    that runs Snakemake comes first on PATH (a conda env of --sdm conda is put before it) and the
    package is importable from the checkout."""
    return {
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([basedir, os.environ.get("PYTHONPATH", "")]),
    }


os.environ.update(job_environment(workflow.basedir))

CONFIG_SOURCE = ", ".join(map(str, workflow.overwrite_configfiles)) or "config.yaml"
try:
    validate_config(config, CONFIG_SOURCE)
except ConfigError as error:
    raise WorkflowError(str(error)) from None

R = config["results"]
DATASET_CFG = config["dataset"]
SPLITS = list(DATASET_CFG["splits"])
TRAIN_SPLIT = DATASET_CFG["train_split"]
EVAL_SPLITS = DATASET_CFG["eval_splits"]
BACKBONES = config["backbones"]
MODELS = config["models"]
FUSIONS = config["fusions"]
PRECOMPUTED = config["detect"].get("precomputed", {})  # split -> a box file used instead of the detector
PREPARE_CFG = DATASET_CFG.get("prepare")
BASELINE = "baseline-prior"

if os.path.isdir(DATASET_CFG["root"]):
    VIDEO_SPLIT = all_video_ids(dataset_params(config))  # {video_id: split}
elif workflow.check_envvars:  # false only for --lint, which reads the rules without any data
    raise WorkflowError(
        f"{CONFIG_SOURCE}: dataset.root {DATASET_CFG['root']!r} is not a folder "
        "(`make demo` makes the demo's; for AVA see the README)"
    )
else:
    VIDEO_SPLIT = {}


# --- each stage's --params, built once (pipeline.config builds them; pipeline.params types them) ---
PARAMS_JSON = {
    "dataset": to_json(dataset_params(config)),
    "frames": to_json(frames_params(config)),
    "audio": to_json(audio_params(config)),
    "detect": to_json(detector_params(config)),
    "evaluate": to_json(evaluate_params(config)),
    "report": to_json(report_params(config, BASELINE)),
    **({"prepare": to_json(prepare_params(config))} if PREPARE_CFG else {}),
    **({"ablation": to_json(ablation_params(config))} if "ablation" in config else {}),
}
FLOW_JSON = {method: to_json(flow_params(config, method)) for method in config["flow"]["methods"]}
BACKBONE_JSON = {name: to_json(backbone_params(config, name)) for name in BACKBONES}
MODEL_JSON = {name: to_json(model_params(config, name)) for name in MODELS}
FUSION_JSON = {name: to_json(fusion_params(config, name)) for name in FUSIONS}


def one_of(names):
    """A wildcard constraint that matches exactly one of ``names`` (none: nothing)."""
    return "|".join(re.escape(n) for n in names) or "$^"


wildcard_constraints:
    video=r"[^/]+",
    split=one_of(SPLITS),
    method=one_of(["farneback", "tvl1"]),
    backbone=one_of(BACKBONES),
    fusion=one_of(FUSIONS),


# --- artifact paths (docs/DESIGN.md's contracts) --------------------------------------------
LOGS = f"{R}/logs"
BENCH = f"{R}/benchmarks"
MANIFEST = f"{R}/dataset/manifest.parquet"
LABEL_MAP = f"{R}/dataset/label_map.pbtxt"
GROUND_TRUTH = f"{R}/dataset/{{split}}.gt.csv"
EXCLUDED = f"{R}/dataset/{{split}}.excluded.csv"
KEYFRAMES = f"{R}/dataset/{{split}}.keyframes.csv"
PREPARED = f"{R}/prepared/{{video}}.mp4"
PREPARED_REPORT = f"{R}/prepared/{{video}}.json"
FRAMES = f"{R}/frames/{{video}}.h5"
FLOW = f"{R}/flow/{{method}}/{{video}}.h5"
AUDIO = f"{R}/audio/{{video}}.h5"
DETECTOR = f"{R}/models/detector/detector.pt"
DETECTOR_LOG = f"{R}/models/detector/train_log.csv"
BOXES = f"{R}/detect/{{split}}.boxes.csv"
DETECT_METRICS = f"{R}/detect/{{split}}.metrics.json"
BACKBONE_WEIGHTS = f"{R}/models/{{backbone}}/backbone.pt"
FINETUNE_LOG = f"{R}/models/{{backbone}}/finetune_log.csv"
FEATURES = f"{R}/features/{{backbone}}/{{split}}/{{video}}.h5"
HEAD = f"{R}/models/{{model}}/head.pt"
HEAD_LOG = f"{R}/models/{{model}}/train_log.csv"
PREDICTIONS = f"{R}/predictions/{{model}}/{{split}}.csv"
LOGITS = f"{R}/predictions/{{model}}/{{split}}.logits.parquet"
BASELINE_PREDICTIONS = f"{R}/predictions/{BASELINE}/{{split}}.csv"
FUSED = f"{R}/predictions/fusion-{{fusion}}/{{split}}.csv"
FUSED_LOGITS = f"{R}/predictions/fusion-{{fusion}}/{{split}}.logits.parquet"
EVALUATION = f"{R}/eval/{{model}}/{{split}}.json"
ABLATION = f"{R}/ablation/summary.json"
ABLATION_MD = f"{R}/ablation/summary.md"
REPORT = f"{R}/report/index.md"
REPORT_TABLE1 = f"{R}/report/table1.md"
REPORT_FIGURES = [f"{R}/report/{name}_{split}.png" for split in EVAL_SPLITS for name in ("ap_per_class", "pr_best")]


def provenance_of(path):
    """The provenance sidecar that a stage writes beside ``path`` (``store.write_sidecar``)."""
    return f"{path}.provenance.json"


# --- what the dataset holds -----------------------------------------------------------------
def dataset_path(relative):
    return os.path.join(DATASET_CFG["root"], relative)


def videos_of(split):
    return [v for v, s in VIDEO_SPLIT.items() if s == split]


def has_ground_truth(split):
    return "ground_truth" in DATASET_CFG["splits"][split]


def ground_truth_splits():
    return [s for s in SPLITS if has_ground_truth(s)]


def detected_splits():
    return [s for s in SPLITS if s not in PRECOMPUTED]


def video_path(video):
    """The video the stages read: the prepared AVA segment when dataset.prepare is set, else the dataset's file."""
    if PREPARE_CFG:
        return PREPARED.format(video=video)
    return str(find_video(dataset_path(DATASET_CFG["videos"]), video))


def store_path(modality, video):
    """The per-video store that a backbone of ``modality`` reads."""
    kind, method = store_kind(modality)
    if kind == "frames":
        return FRAMES.format(video=video)
    if kind == "audio":
        return AUDIO.format(video=video)
    return FLOW.format(method=method, video=video)


def frames_of_split(split):
    return expand(FRAMES, video=videos_of(split))


def features_of(backbone, split):
    return expand(FEATURES, backbone=backbone, split=split, video=videos_of(split))


def model_features(model, split):
    """Every features file that ``model`` reads on ``split``: those of each of its backbones."""
    return [path for backbone in model_backbones(MODELS[model]) for path in features_of(backbone, split)]


def prediction_names():
    return list(MODELS) + [f"fusion-{f}" for f in FUSIONS] + [BASELINE]


def final_outputs():
    """The report, every evaluation, and the audio of every video (made even when no model uses it yet)."""
    outputs = [REPORT]
    outputs += expand(EVALUATION, model=prediction_names(), split=EVAL_SPLITS)
    outputs += [ABLATION, ABLATION_MD] if "ablation" in config else []
    outputs += expand(AUDIO, video=list(VIDEO_SPLIT))
    return outputs


# --- input functions ------------------------------------------------------------------------
def dataset_inputs(wildcards):
    files = [dataset_path(DATASET_CFG["label_map"])]
    for split_cfg in DATASET_CFG["splits"].values():
        files += [dataset_path(p) for p in split_cfg.values()]
    files += [video_path(v) for v in VIDEO_SPLIT]
    return files


def movie_file(wildcards):
    return str(find_video(dataset_path(PREPARE_CFG["movies"]), wildcards.video))


def video_file(wildcards):
    return video_path(wildcards.video)


def clip_window_inputs(wildcards):
    """The keyframes of the video's split when frames and flow keep only the clips' windows, else nothing."""
    if config["frames"]["window"] == "clips":
        return {"keyframes": KEYFRAMES.format(split=VIDEO_SPLIT[wildcards.video])}
    return {}


def frames_inputs(wildcards):
    return {"video": video_file(wildcards), **clip_window_inputs(wildcards)}


def flow_inputs(wildcards):
    return {"frames": FRAMES.format(video=wildcards.video), **clip_window_inputs(wildcards)}


def optional_ground_truth(split):
    return {"ground_truth": GROUND_TRUTH.format(split=split)} if has_ground_truth(split) else {}


def detect_inputs(wildcards):
    return {
        "checkpoint": DETECTOR,
        "frames": frames_of_split(wildcards.split),
        "keyframes": KEYFRAMES.format(split=wildcards.split),
        **optional_ground_truth(wildcards.split),
    }


def precomputed_inputs(wildcards):
    return {
        "boxes": PRECOMPUTED[wildcards.split],
        "keyframes": KEYFRAMES.format(split=wildcards.split),
        **optional_ground_truth(wildcards.split),
    }


def finetune_inputs(wildcards):
    modality = BACKBONES[wildcards.backbone]["modality"]
    return {
        "label_map": LABEL_MAP,
        "ground_truth": GROUND_TRUTH.format(split=TRAIN_SPLIT),
        "boxes": BOXES.format(split=TRAIN_SPLIT),
        "stores": [store_path(modality, v) for v in videos_of(TRAIN_SPLIT)],
    }


def features_inputs(wildcards):
    split = VIDEO_SPLIT[wildcards.video]
    return {
        "weights": BACKBONE_WEIGHTS.format(backbone=wildcards.backbone),
        "store": store_path(BACKBONES[wildcards.backbone]["modality"], wildcards.video),
        "keyframes": KEYFRAMES.format(split=split),
        "boxes": BOXES.format(split=split),
        "label_map": LABEL_MAP,
        **optional_ground_truth(split),
    }


def head_inputs(wildcards):
    return {"features": model_features(wildcards.model, TRAIN_SPLIT), "label_map": LABEL_MAP}


def predict_inputs(wildcards):
    return {
        "head": HEAD.format(model=wildcards.model),
        "features": model_features(wildcards.model, wildcards.split),
        "label_map": LABEL_MAP,
    }


def fuse_inputs(wildcards):
    """The members' logits on the split; for a fusion that chooses its models per class (topk_logit),
    also the members' evaluations on its select_on split (made from their own predictions: no cycle)."""
    models = FUSIONS[wildcards.fusion]["models"]
    inputs = {"logits": expand(LOGITS, model=models, split=wildcards.split), "label_map": LABEL_MAP}
    select = fusion_params(config, wildcards.fusion).select_split
    if select is not None:
        inputs["selection"] = [EVALUATION.format(model=m, split=select) for m in models]
    return inputs


def ablation_backbones():
    """Every backbone that a model of the ablation reads, in order."""
    return list(dict.fromkeys(b for m in ablation_models(config) for b in model_backbones(MODELS[m])))


def ablation_inputs(wildcards):
    split = config["ablation"]["split"]
    backbones = ablation_backbones()
    return {
        "train": [p for b in backbones for p in features_of(b, TRAIN_SPLIT)],
        "held": [p for b in backbones for p in features_of(b, split)],
        "label_map": LABEL_MAP,
        "ground_truth": GROUND_TRUTH.format(split=split),
        "excluded": EXCLUDED.format(split=split),
    }


def ablation_args():
    """``--train B files... --held B files...`` for each backbone of the ablation."""
    split = config["ablation"]["split"]
    return " ".join(
        f"--train {b} " + " ".join(features_of(b, TRAIN_SPLIT)) + f" --held {b} " + " ".join(features_of(b, split))
        for b in ablation_backbones()
    )


def evaluate_inputs(wildcards):
    return {
        "predictions": PREDICTIONS.format(model=wildcards.model, split=wildcards.split),
        "ground_truth": GROUND_TRUTH.format(split=wildcards.split),
        "excluded": EXCLUDED.format(split=wildcards.split),
        "label_map": LABEL_MAP,
    }


# --- devices and processes ------------------------------------------------------------------
def gpus(stage):
    """GPUs a job of ``stage`` asks the scheduler for (compute.gpus)."""
    return config["compute"]["gpus"].get(stage, 0)


def torchrun(stage):
    """What goes between `python` and `-m pipeline.stages.<stage>`: torchrun with one process per GPU
    (or per CPU process) when a job of ``stage`` runs several, else nothing."""
    n = stage_processes(config, stage)
    return f"-m torch.distributed.run --standalone --nproc_per_node={n}" if n > 1 else ""


def process_threads(stage, threads):
    """Each process's share of a job's ``threads``."""
    return max(1, threads // stage_processes(config, stage))


# --- command-line pieces --------------------------------------------------------------------
def flag(name, input, key):
    """``--name FILE`` when the rule's input has ``key``, else nothing."""
    return f"--{name} {input[key]}" if key in input.keys() else ""


def flag_list(name, input, key):
    """``--name FILE ...`` when the rule's input has ``key`` (a list of files), else nothing."""
    return f"--{name} " + " ".join(input[key]) if key in input.keys() else ""


def features_args(model, split):
    """``--features`` once per backbone of ``model``, each with that backbone's files of ``split``."""
    return " ".join(
        "--features " + " ".join(features_of(backbone, split)) for backbone in model_backbones(MODELS[model])
    )
