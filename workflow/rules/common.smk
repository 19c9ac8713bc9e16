# Configuration, artifact paths and input functions: the one place where the DAG's file names live.
import os
import re
import sys

from snakemake.exceptions import IncompleteCheckpointException, WorkflowError

sys.path.insert(0, workflow.basedir)

from pipeline.config import (
    ConfigError,
    ablation_models,
    ablation_params,
    audio_params,
    backbone_params,
    dataset_params,
    detector_params,
    drawn_predictions,
    evaluate_params,
    flow_params,
    frames_params,
    fusion_params,
    infer_audio_params,
    infer_frames_params,
    infer_video_params,
    model_backbones,
    model_params,
    prepare_params,
    pretrained_detector_params,
    report_params,
    stage_processes,
    validate_config,
    visualize_params,
)
from pipeline.data.manifest import VIDEO_EXTENSIONS, all_video_ids, find_video, read_manifest, videos_in_folder
from pipeline.errors import InputError
from pipeline.media.stores import store_kind
from pipeline.reporting import files as report_files
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

# Videos without annotations (`snakemake infer --config infer_videos=DIR`): each is a split of its own,
# infer-{video}, that runs the dataset's stages with the trained models and no ground truth.
INFER_CFG = config["infer"]
try:
    INFER_VIDEOS = videos_in_folder(config["infer_videos"]) if config["infer_videos"] else {}  # {video_id: file}
except InputError as error:
    raise WorkflowError(f"infer_videos: {error}") from None
INFER_SPLIT = {video: f"infer-{video}" for video in INFER_VIDEOS}
SPLIT_VIDEO = {split: video for video, split in INFER_SPLIT.items()}
if set(INFER_VIDEOS) & set(VIDEO_SPLIT):
    raise WorkflowError(
        f"infer_videos: video ids {sorted(set(INFER_VIDEOS) & set(VIDEO_SPLIT))[:5]} are also dataset videos; "
        "rename the files (the frame, flow and audio stores are named by video id)"
    )
DRAWN = drawn_predictions(config)  # the model or fusion that inference exports and draws


# --- each stage's --params, built once (pipeline.config builds them; pipeline.params types them) ---
PARAMS_JSON = {
    "dataset": to_json(dataset_params(config)),
    "frames": to_json(frames_params(config)),
    "audio": to_json(audio_params(config)),
    "detect": to_json(detector_params(config)),
    "evaluate": to_json(evaluate_params(config)),
    "report": to_json(report_params(config, BASELINE)),
    **({"prepare": to_json(prepare_params(config))} if PREPARE_CFG else {}),
    "infer_frames": to_json(infer_frames_params(config)),
    "infer_audio": to_json(infer_audio_params(config)),
    "dataset_infer": to_json(infer_video_params(config)),
    "detect_pretrained": to_json(pretrained_detector_params(config)),
    "visualize": to_json(visualize_params(config, infer=False)),
    "visualize_infer": to_json(visualize_params(config, infer=True)),
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
    split=one_of(SPLITS + list(SPLIT_VIDEO)),
    method=one_of(["farneback", "tvl1"]),
    backbone=one_of(BACKBONES),
    fusion=one_of(FUSIONS),


# --- artifact paths (docs/DESIGN.md's contracts) --------------------------------------------
LOGS = f"{R}/logs"
BENCH = f"{R}/benchmarks"
MANIFEST = f"{R}/dataset/manifest.parquet"
PROBLEMS = f"{R}/dataset/problems.csv"
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
INFER_KEYFRAMES = f"{R}/infer/{{video}}/keyframes.csv"
INFER_INFO = f"{R}/infer/{{video}}/video.json"
VISUALIZED = f"{R}/visualize/{{video}}.mp4"
CONTACT_SHEET = f"{R}/visualize/{{video}}.contact_sheet.png"
REPORT_DIR = f"{R}/report"
REPORT = f"{REPORT_DIR}/{report_files.INDEX}"
REPORT_TABLE1 = f"{REPORT_DIR}/{report_files.TABLE1}"
REPORT_CONFIG = f"{REPORT_DIR}/{report_files.CONFIG}"
REPORT_PAGES = {name: f"{REPORT_DIR}/{page}" for name, page in report_files.PAGES.items()}
REPORT_FIGURES = {
    name: [f"{REPORT_DIR}/{report_files.figure_file(name, split)}" for split in EVAL_SPLITS]
    for name in report_files.FIGURES
}
BENCH_DETECTOR_TRAIN = f"{BENCH}/detector_train.tsv"
BENCH_DETECT = f"{BENCH}/detect/{{split}}.tsv"
BENCH_PREPARE = f"{BENCH}/prepare/{{video}}.tsv"
BENCH_FRAMES = f"{BENCH}/frames/{{video}}.tsv"
BENCH_FLOW = f"{BENCH}/flow/{{method}}/{{video}}.tsv"
BENCH_AUDIO = f"{BENCH}/audio/{{video}}.tsv"
BENCH_FINETUNE = f"{BENCH}/finetune/{{backbone}}.tsv"
BENCH_FEATURES = f"{BENCH}/features/{{backbone}}/{{split}}/{{video}}.tsv"


def provenance_of(path):
    """The provenance sidecar that a stage writes beside ``path`` (``store.write_sidecar``)."""
    return f"{path}.provenance.json"


# --- what the dataset holds -----------------------------------------------------------------
def dataset_path(relative):
    return os.path.join(DATASET_CFG["root"], relative)


_USABLE = {}  # manifest path and mtime -> {video: split}


def usable_video_split():
    """``{video: split}`` of the videos that the dataset checkpoint found usable (its manifest).

    Before the dataset stage has run, a dry run (``-n``) plans with every annotated video and a
    real run waits for the stage (Snakemake re-evaluates the jobs after it): a video that cannot be
    read is left out of every later job, and named in ``problems.csv`` and the evaluation. A job run
    by a cluster executor reads the manifest that the main process's checkpoint wrote.
    """
    try:
        manifest = checkpoints.dataset.get().output.manifest
    except IncompleteCheckpointException:
        if workflow.dryrun:
            return VIDEO_SPLIT
        if workflow.remote_exec and os.path.exists(MANIFEST):
            # a cluster job's own Snakemake plans only its job: the main process ran the checkpoint before it
            manifest = MANIFEST
        else:
            raise
    key = (manifest, os.path.getmtime(manifest))
    if key not in _USABLE:
        _USABLE.clear()
        _USABLE[key] = {info.video_id: info.split for info in read_manifest(manifest)}
    return _USABLE[key]


def videos_of(split):
    """The usable videos of ``split`` (:func:`usable_video_split`), or the one video of an inference split."""
    if split in SPLIT_VIDEO:
        return [SPLIT_VIDEO[split]]
    return [v for v, s in usable_video_split().items() if s == split]


def split_of(video):
    """The split of a dataset video, or the inference split of a video of infer_videos."""
    return INFER_SPLIT[video] if video in INFER_SPLIT else VIDEO_SPLIT[video]


def keyframes_of(split):
    """The keyframes CSV of a split: the dataset stage's, or dataset_infer's for an inference split."""
    if split in SPLIT_VIDEO:
        return INFER_KEYFRAMES.format(video=SPLIT_VIDEO[split])
    return KEYFRAMES.format(split=split)


def has_ground_truth(split):
    return "ground_truth" in DATASET_CFG["splits"].get(split, {})


def ground_truth_splits():
    return [s for s in SPLITS if has_ground_truth(s)]


def detected_splits():
    """Splits whose person boxes the DAG's detector finds: the dataset's (less precomputed ones), and
    the inference splits when infer.detector is `trained`."""
    infer = list(SPLIT_VIDEO) if INFER_CFG["detector"] == "trained" else []
    return [s for s in SPLITS if s not in PRECOMPUTED] + infer


def pretrained_splits():
    """Inference splits whose person boxes come from a pretrained COCO detector (infer.detector)."""
    return list(SPLIT_VIDEO) if INFER_CFG["detector"] != "trained" else []


def source_video(video):
    """The file the dataset stage probes for ``video`` (the full movie when dataset.prepare is set),
    or None when it is missing: the stage names it then, and the other videos go on."""
    folder = dataset_path(PREPARE_CFG["movies"] if PREPARE_CFG else DATASET_CFG["videos"])
    for ext in VIDEO_EXTENSIONS:
        if os.path.exists(os.path.join(folder, video + ext)):
            return os.path.join(folder, video + ext)
    return None


def video_path(video):
    """The video the stages read: the prepared AVA segment when dataset.prepare is set, else the dataset's file."""
    if video in INFER_VIDEOS:
        return str(INFER_VIDEOS[video])
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


def visualized(video):
    return [VISUALIZED.format(video=video), CONTACT_SHEET.format(video=video)]


def demo_video():
    """The dataset video that a `visualize` section draws: visualize.video, else the first video of the
    first eval split whose file is there and not empty. Chosen when the DAG is built (the report's
    outputs are named after it), before the dataset stage probes the videos."""
    video = config["visualize"].get("video")
    if video is None:
        candidates = [v for v, s in VIDEO_SPLIT.items() if s == EVAL_SPLITS[0]]
        present = [v for v in candidates if (path := source_video(v)) and os.path.getsize(path) > 0]
        video = (present or candidates)[0]
    if video not in VIDEO_SPLIT:
        raise WorkflowError(f"{CONFIG_SOURCE}: visualize.video {video!r} is not a video of the dataset")
    return video


def demo_contact_sheets():
    """The contact sheet that the report may show: the drawn demo video's, with a `visualize` section."""
    return [CONTACT_SHEET.format(video=demo_video())] if "visualize" in config and VIDEO_SPLIT else []


# Contact sheets that the report shows; the report copies each into its folder.
REPORT_CONTACT_SHEETS = demo_contact_sheets()
REPORT_CONTACT_SHEET_COPIES = [f"{REPORT_DIR}/{report_files.contact_sheet_file(p)}" for p in REPORT_CONTACT_SHEETS]
# Every file of the report (`all` asks for each: Snakemake re-runs a job for its missing requested outputs only).
REPORT_OUTPUTS = [REPORT, REPORT_TABLE1, REPORT_CONFIG, *REPORT_PAGES.values(), *REPORT_CONTACT_SHEET_COPIES]
REPORT_OUTPUTS += [path for paths in REPORT_FIGURES.values() for path in paths]


def final_outputs(wildcards):
    """The report, every evaluation, the audio of every usable video (made even when no model uses it
    yet), and with a `visualize` section one eval video drawn."""
    outputs = list(REPORT_OUTPUTS)
    outputs += expand(EVALUATION, model=prediction_names(), split=EVAL_SPLITS)
    outputs += [ABLATION, ABLATION_MD] if "ablation" in config else []
    outputs += expand(AUDIO, video=list(usable_video_split()))
    if "visualize" in config and VIDEO_SPLIT:
        outputs += visualized(demo_video())
    return outputs


def infer_outputs(wildcards):
    """What `snakemake infer` makes for every video of infer_videos: its AVA detections CSV (of the
    drawn model or fusion) and its annotated video and contact sheet."""
    if not INFER_VIDEOS:
        raise WorkflowError("snakemake infer needs a folder of videos: --config infer_videos=DIR")
    outputs = []
    for video, split in INFER_SPLIT.items():
        outputs += [PREDICTIONS.format(model=DRAWN, split=split)] + visualized(video)
    return outputs


def used_backbones():
    """The backbones that some model reads, in config order (the others are never trained)."""
    return list(dict.fromkeys(b for model in MODELS.values() for b in model_backbones(model)))


def benchmark_files(wildcards):
    """The benchmark file of every job that `all` runs: the report reads them (so it runs after them
    all). The same jobs that the input functions below ask for: asking for more would run more."""
    splits = list(dict.fromkeys([TRAIN_SPLIT, *EVAL_SPLITS]))  # whose boxes and features the models read
    detected = [s for s in splits if s not in PRECOMPUTED]
    modalities = {BACKBONES[b]["modality"] for b in used_backbones()}
    methods = sorted({store_kind(m)[1] for m in modalities if store_kind(m)[0] == "flow"})
    frame_splits = splits if "rgb" in modalities or methods else []  # flow is made from frames
    frame_splits = list(dict.fromkeys([*frame_splits, *detected, *([TRAIN_SPLIT] if detected else [])]))
    files = [BENCH_DETECTOR_TRAIN] if detected else []
    files += expand(BENCH_DETECT, split=detected)
    files += expand(BENCH_PREPARE, video=list(usable_video_split())) if PREPARE_CFG else []
    files += [BENCH_FRAMES.format(video=v) for s in frame_splits for v in videos_of(s)]
    files += [BENCH_FLOW.format(method=m, video=v) for m in methods for s in splits for v in videos_of(s)]
    files += expand(BENCH_AUDIO, video=list(usable_video_split()))
    files += expand(BENCH_FINETUNE, backbone=used_backbones())
    files += [
        BENCH_FEATURES.format(backbone=b, split=s, video=v)
        for b in used_backbones()
        for s in splits
        for v in videos_of(s)
    ]
    return files


def report_items(paths, caption, category, item):
    """``paths`` (one per evaluated split) marked for `snakemake --report`, labelled by item and split."""
    labels = [{"item": item, "split": split} for split in EVAL_SPLITS]
    return [report(p, caption=caption, category=category, labels=lab) for p, lab in zip(paths, labels)]


# --- input functions ------------------------------------------------------------------------
def dataset_inputs(wildcards):
    files = [dataset_path(DATASET_CFG["label_map"])]
    for split_cfg in DATASET_CFG["splits"].values():
        files += [dataset_path(p) for p in split_cfg.values()]
    files += [path for path in map(source_video, VIDEO_SPLIT) if path is not None]
    return files


def movie_file(wildcards):
    return str(find_video(dataset_path(PREPARE_CFG["movies"]), wildcards.video))


def video_file(wildcards):
    return video_path(wildcards.video)


def clip_window_inputs(wildcards):
    """The keyframes of the video's split when frames and flow keep only the clips' windows, else nothing."""
    if config["frames"]["window"] == "clips":
        return {"keyframes": keyframes_of(split_of(wildcards.video))}
    return {}


def frames_inputs(wildcards):
    return {"video": video_file(wildcards), **clip_window_inputs(wildcards)}


def flow_inputs(wildcards):
    return {"frames": FRAMES.format(video=wildcards.video), **clip_window_inputs(wildcards)}


def optional_ground_truth(split):
    return {"ground_truth": GROUND_TRUTH.format(split=split)} if has_ground_truth(split) else {}


def detector_train_inputs(wildcards):
    return {"frames": frames_of_split(TRAIN_SPLIT), "ground_truth": GROUND_TRUTH.format(split=TRAIN_SPLIT)}


def detect_inputs(wildcards):
    return {
        "checkpoint": DETECTOR,
        "frames": frames_of_split(wildcards.split),
        "keyframes": keyframes_of(wildcards.split),
        **optional_ground_truth(wildcards.split),
    }


def precomputed_inputs(wildcards):
    return {
        "boxes": PRECOMPUTED[wildcards.split],
        "keyframes": KEYFRAMES.format(split=wildcards.split),
        **optional_ground_truth(wildcards.split),
    }


def pretrained_inputs(wildcards):
    return {"frames": frames_of_split(wildcards.split), "keyframes": keyframes_of(wildcards.split)}


def finetune_inputs(wildcards):
    modality = BACKBONES[wildcards.backbone]["modality"]
    return {
        "label_map": LABEL_MAP,
        "ground_truth": GROUND_TRUTH.format(split=TRAIN_SPLIT),
        "boxes": BOXES.format(split=TRAIN_SPLIT),
        "stores": [store_path(modality, v) for v in videos_of(TRAIN_SPLIT)],
    }


def features_inputs(wildcards):
    split = split_of(wildcards.video)
    return {
        "weights": BACKBONE_WEIGHTS.format(backbone=wildcards.backbone),
        "store": store_path(BACKBONES[wildcards.backbone]["modality"], wildcards.video),
        "keyframes": keyframes_of(split),
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
        "problems": PROBLEMS,
        "label_map": LABEL_MAP,
    }


def visualize_inputs(wildcards):
    split = split_of(wildcards.video)
    return {
        "video": video_path(wildcards.video),
        "logits": LOGITS.format(model=DRAWN, split=split),
        "keyframes": keyframes_of(split),
        "label_map": LABEL_MAP,
    }


def media_params_json(stage, video):
    """The frames or audio params of a video: on infer's timeline for a video of infer_videos."""
    return PARAMS_JSON[f"infer_{stage}" if video in INFER_VIDEOS else stage]


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
