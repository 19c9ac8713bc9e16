# Paths, configuration and input functions: the one place where the DAG's file names live.
import os
import re
import sys

sys.path.insert(0, workflow.basedir)
# Jobs run `python -m pipeline.<stage>`: the interpreter that runs Snakemake comes first on PATH
# (a conda env of --sdm conda is put before it), and the package is importable from the checkout.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
os.environ["PYTHONPATH"] = workflow.basedir + os.pathsep + os.environ.get("PYTHONPATH", "")

from pipeline.config import clip_context_s, model_backbones, section_json, validate_config
from pipeline.dataset import all_video_ids, find_video

validate_config(config, "config.yaml")

R = config["results"]
DATASET_CFG = config["dataset"]
SPLITS = list(DATASET_CFG["splits"])
TRAIN_SPLIT = DATASET_CFG["train_split"]
EVAL_SPLITS = DATASET_CFG["eval_splits"]
VIDEO_SPLIT = all_video_ids(DATASET_CFG)  # {video_id: split}
BACKBONES = config["backbones"]
MODELS = config["models"]
FUSIONS = config["fusions"]
BASELINE = "baseline-prior"


def one_of(names):
    """A wildcard constraint that matches exactly one of ``names``."""
    return "|".join(re.escape(n) for n in names)


MODEL_NAMES = one_of(MODELS)
PRECOMPUTED = config["detect"].get("precomputed", {})  # split -> a SlowFast/LFB box file used instead of the detector
DETECTED_SPLITS = one_of([s for s in SPLITS if s not in PRECOMPUTED]) or "$^"
PRECOMPUTED_SPLITS = one_of(PRECOMPUTED) or "$^"


wildcard_constraints:
    video=r"[^/]+",
    split=one_of(SPLITS),
    method="farneback|tvl1",
    backbone=one_of(BACKBONES),
    fusion=one_of(FUSIONS) if FUSIONS else "$^",


# --- artifact paths (DESIGN.md's contracts) ---------------------------------------------------
LOGS = f"{R}/logs"
BENCH = f"{R}/benchmarks"
MANIFEST = f"{R}/dataset/manifest.parquet"
LABEL_MAP = f"{R}/dataset/label_map.pbtxt"
GROUND_TRUTH = R + "/dataset/{split}.gt.csv"
EXCLUDED = R + "/dataset/{split}.excluded.csv"
KEYFRAMES = R + "/dataset/{split}.keyframes.csv"
PREPARED = R + "/prepared/{video}.mp4"
FRAMES = R + "/frames/{video}.h5"
FLOW = R + "/flow/{method}/{video}.h5"
AUDIO = R + "/audio/{video}.h5"
DETECTOR = f"{R}/models/detector/detector.pt"
BOXES = R + "/detect/{split}.boxes.csv"
DETECT_METRICS = R + "/detect/{split}.metrics.json"
BACKBONE_WEIGHTS = R + "/models/{backbone}/backbone.pt"
FEATURES = R + "/features/{backbone}/{split}/{video}.h5"
HEAD = R + "/models/{model}/head.pt"
PREDICTIONS = R + "/predictions/{model}/{split}.csv"
LOGITS = R + "/predictions/{model}/{split}.logits.parquet"
EVALUATION = R + "/eval/{model}/{split}.json"
REPORT = f"{R}/report/index.md"


def dataset_path(relative):
    return os.path.join(DATASET_CFG["root"], relative)


def videos_of(split):
    return [v for v, s in VIDEO_SPLIT.items() if s == split]


def has_ground_truth(split):
    return "ground_truth" in DATASET_CFG["splits"][split]


def params_json(section, **extra):
    """A config section (plus extra keys) as the canonical JSON that a stage takes as --params."""
    return section_json({**section, **extra})


# --- input functions ------------------------------------------------------------------------
PREPARE_CFG = DATASET_CFG.get("prepare")


def video_path(video):
    """The video the stages read: the prepared AVA segment when dataset.prepare is set, else the dataset's file."""
    if PREPARE_CFG:
        return PREPARED.format(video=video)
    return str(find_video(dataset_path(DATASET_CFG["videos"]), video))


def video_file(wildcards):
    return video_path(wildcards.video)


def movie_file(wildcards):
    return str(find_video(dataset_path(PREPARE_CFG["movies"]), wildcards.video))


def dataset_inputs(wildcards):
    files = [dataset_path(DATASET_CFG["label_map"])]
    for split_cfg in DATASET_CFG["splits"].values():
        files += [dataset_path(p) for p in split_cfg.values()]
    files += [video_path(v) for v in VIDEO_SPLIT]
    return files


def frames_of_split(split):
    return expand(FRAMES, video=videos_of(split))


def optional_ground_truth(split):
    return {"ground_truth": GROUND_TRUTH.format(split=split)} if has_ground_truth(split) else {}


def store_path(modality, video):
    """The per-video store a backbone of ``modality`` reads."""
    if modality == "rgb":
        return FRAMES.format(video=video)
    if modality == "audio":
        return AUDIO.format(video=video)
    return FLOW.format(method=modality.split("/", 1)[1], video=video)


def backbone_stores(backbone, split):
    return [store_path(BACKBONES[backbone]["modality"], v) for v in videos_of(split)]


def features_of(backbone, split):
    return expand(FEATURES, backbone=backbone, split=split, video=videos_of(split))


def prediction_names():
    return list(MODELS) + [f"fusion-{f}" for f in FUSIONS] + [BASELINE]


def final_outputs():
    """The report, every evaluation, and the audio of every video (made even when no model uses it yet)."""
    outputs = [REPORT]
    outputs += expand(EVALUATION, model=prediction_names(), split=EVAL_SPLITS)
    outputs += expand(AUDIO, video=list(VIDEO_SPLIT))
    return outputs


def clip_window_inputs(wildcards):
    """The keyframes of the video's split when frames and flow keep only the clips' windows, else nothing."""
    if config["frames"]["window"] == "clips":
        return {"keyframes": KEYFRAMES.format(split=VIDEO_SPLIT[wildcards.video])}
    return {}


def frames_inputs(wildcards):
    return {"video": video_file(wildcards), **clip_window_inputs(wildcards)}


def flow_inputs(wildcards):
    return {"frames": FRAMES.format(video=wildcards.video), **clip_window_inputs(wildcards)}


def clip_windows_arg(input, modality=None):
    if "keyframes" not in input.keys():
        return ""
    return f"--keyframes {input.keyframes} --context-s {clip_context_s(config, modality):.6f}"


def flow_params(wildcards):
    """The flow section with only this method's parameters: changing TV-L1's leaves Farneback's flow alone."""
    flow = config["flow"]
    return section_json({"bound": flow["bound"], "jpeg_quality": flow["jpeg_quality"],
                         wildcards.method: flow[wildcards.method]})


def ground_truth_arg(input):
    return f"--ground-truth {input.ground_truth}" if "ground_truth" in input.keys() else ""


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
    return {
        "label_map": LABEL_MAP,
        "ground_truth": GROUND_TRUTH.format(split=TRAIN_SPLIT),
        "detections": BOXES.format(split=TRAIN_SPLIT),
        "stores": backbone_stores(wildcards.backbone, TRAIN_SPLIT),
    }


def features_inputs(wildcards):
    split = VIDEO_SPLIT[wildcards.video]
    return {
        "weights": BACKBONE_WEIGHTS.format(backbone=wildcards.backbone),
        "store": store_path(BACKBONES[wildcards.backbone]["modality"], wildcards.video),
        "keyframes": KEYFRAMES.format(split=split),
        "detections": BOXES.format(split=split),
        "label_map": LABEL_MAP,
        **optional_ground_truth(split),
    }


def model_features(model, split):
    """Every features file that ``model`` reads on ``split``: those of each of its backbones."""
    return [path for backbone in model_backbones(MODELS[model]) for path in features_of(backbone, split)]


def model_features_args(model, split):
    """``--features`` once per backbone of ``model``, each with that backbone's files of ``split``."""
    return " ".join("--features " + " ".join(features_of(backbone, split))
                    for backbone in model_backbones(MODELS[model]))


def head_inputs(wildcards):
    return {
        "features": model_features(wildcards.model, TRAIN_SPLIT),
        "label_map": LABEL_MAP,
    }


def predict_inputs(wildcards):
    return {
        "head": HEAD.format(model=wildcards.model),
        "features": model_features(wildcards.model, wildcards.split),
        "label_map": LABEL_MAP,
    }


def evaluate_inputs(wildcards):
    return {
        "predictions": PREDICTIONS.format(model=wildcards.model, split=wildcards.split),
        "ground_truth": GROUND_TRUTH.format(split=wildcards.split),
        "excluded": EXCLUDED.format(split=wildcards.split),
        "label_map": LABEL_MAP,
    }
