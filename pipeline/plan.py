"""What a run will cost, before anything runs: jobs per rule, disk, CPU hours and GPU hours per stage.

    python -m pipeline.plan --configfile CONFIG [--videos SPLIT=N ...] [--gpu-tflops 50] [--costs FILE]

Jobs come from Snakemake's own DAG: a dry run of the whole workflow with ``CONFIG`` (``--forceall``,
in a scratch folder), on the dataset when ``dataset.root`` is there, else on placeholder files with
the config's file names and AVA's sizes (or ``--videos``). The costs per job are estimated from
per-unit figures measured on small runs (``bench/unit_costs.yaml``: seconds and bytes per frame, flow
pair, second of audio, measured at AVA's settings; the CPU speed of the torch stages, measured on
the demo run's benchmark files) scaled by the units of this config and dataset:

- media stages (prepare, frames, flow, audio, dataset): frames and flow pairs that ``frames.window``
  keeps, scaled by pixels per frame against the measurement's;
- torch stages: floating-point operations of the config's networks at its input sizes, counted by
  torch's ``FlopCounterMode`` on the meta device (nothing is computed, nothing is loaded), times the
  items (keyframes, times epochs for training, times 3 for the backward pass), over a rate: the
  measured CPU rate where the stage has no GPU (``compute.gpus``), else ``--gpu-tflops``, an
  assumed sustained rate (no GPU was measured; measure yours with ``bench/train.py``);
- disk: the stores' bytes per frame, pair and second; feature files from the networks' output
  shapes (float16 ROI features per box, float16 context maps per keyframe); weights from their
  parameter counts.

Every figure is an estimate for planning (tens of percent, not digits): the table says which inputs
were measured and which assumed.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import yaml

from pipeline.config import (ConfigError, backbone_params, clip_context_s, dataset_params, detector_params, load_config,
                             model_backbones)
from pipeline.data.manifest import all_video_ids, keyframe_times
from pipeline.params import DetectorParams

ROOT = Path(__file__).resolve().parent.parent
COSTS = ROOT / "bench" / "unit_costs.yaml"
# AVA's movies per split (v2.1 and v2.2 alike): 235 train, 64 val, 131 test; 15-minute segments.
AVA_VIDEOS = {"train": 235, "val": 64, "test": 131}
AVA_SEGMENT_S = 901.0
TRAIN_PASSES = 3          # a training step: the forward, and a backward of about twice its operations
GPU_STAGES = ("detector_train", "detect", "finetune", "features", "head", "predict")


@dataclasses.dataclass(frozen=True)
class DatasetShape:
    """How many videos each split has, and what one video is like."""

    videos: dict[str, int]        # split -> videos
    duration_s: float             # seconds of one video (the prepared segment with dataset.prepare)
    aspect: float                 # width / height of its frames
    boxes_per_keyframe: float     # person boxes the action stages see per keyframe
    source: str                   # where these figures come from

    def keyframes(self, config: dict[str, Any]) -> int:
        """Keyframes of one video: the 1 Hz grid inside its margins (``manifest.keyframe_times``)."""
        d = config["dataset"]
        return len(keyframe_times(self.duration_s, d["time_offset"], d["keyframe_margin"]))


@dataclasses.dataclass(frozen=True)
class StagePlan:
    """One row of the plan: a rule (or a rule of one flow method / backbone) and its totals."""

    stage: str
    jobs: int
    gpus_per_job: int
    disk_bytes: float
    cpu_hours: float
    gpu_hours: float

    @property
    def hours_per_job(self) -> float:
        """Wall hours of one job: its GPU hours over its GPUs, else its CPU hours (one CPU's worth)."""
        if self.jobs == 0:
            return 0.0
        if self.gpus_per_job:
            return self.gpu_hours / self.jobs / self.gpus_per_job
        return self.cpu_hours / self.jobs


# --------------------------------------------------------------------------------------------- the DAG

def placeholder_dataset(root: Path, config: dict[str, Any], videos: dict[str, int]) -> None:
    """Empty files under ``root`` with ``config``'s dataset file names: ``videos[split]`` videos (movies with
    dataset.prepare) per split, each named once in its split's ground truth (or video list), the label map."""
    dataset = config["dataset"]
    media = root / (dataset["prepare"]["movies"] if dataset.get("prepare") else dataset["videos"])
    media.mkdir(parents=True, exist_ok=True)
    _write(root / dataset["label_map"], "item {\n  name: \"stand\"\n  id: 12\n}\n")
    start = 0
    for split, files in dataset["splits"].items():
        ids = [f"video{i:04d}" for i in range(start, start + videos.get(split, 0))]
        start += len(ids)
        rows = "".join(f"{v},0902,0.100,0.100,0.500,0.900,12,0\n" for v in ids)
        for key in ("ground_truth", "excluded", "videos"):
            if files.get(key):
                _write(root / files[key], {"ground_truth": rows, "excluded": "",
                                           "videos": "".join(f"{v}\n" for v in ids)}[key])
        for v in ids:
            (media / f"{v}.mkv").touch()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def job_counts(configfile: Path, shape: DatasetShape, dataset_present: bool) -> dict[str, int]:
    """Jobs per rule of the whole DAG of ``configfile`` (``snakemake -n --forceall`` in a scratch folder),
    on placeholders of ``shape``'s sizes unless the dataset is there."""
    config = yaml.safe_load(configfile.read_text())     # as written: Snakemake validates it again
    with tempfile.TemporaryDirectory(prefix="ava_plan_") as tmp:
        work = Path(tmp)
        planned = dict(config, results="results")
        if dataset_present:      # the dry run runs in the scratch folder: a relative root from here
            planned["dataset"] = dict(config["dataset"], root=str(Path(config["dataset"]["root"]).resolve()))
        else:
            planned["dataset"] = dict(config["dataset"], root=str(work / "data"))
            placeholder_dataset(work / "data", planned, shape.videos)
        (work / "config.yaml").write_text(yaml.safe_dump(planned))
        cmd = [sys.executable, "-m", "snakemake", "-n", "--forceall", "--snakefile", str(ROOT / "Snakefile"),
               "--directory", str(work), "--configfile", str(work / "config.yaml"), "--cores", "1",
               "--quiet", "rules"]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    if done.returncode != 0:
        raise SystemExit(f"the dry run of the DAG failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return parse_job_stats(done.stdout + done.stderr)


def parse_job_stats(output: str) -> dict[str, int]:
    """Rule -> jobs from Snakemake's 'Job stats' table (``all``, which runs nothing, left out)."""
    counts: dict[str, int] = {}
    for line in output.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) not in ("total", "all"):
            counts[match.group(1)] = int(match.group(2))
    return counts


# --------------------------------------------------------------------------------------------- the networks

@dataclasses.dataclass(frozen=True)
class NetCost:
    """One network at its input size: forward operations per item, parameters, output per item."""

    flops: float                  # floating-point operations of one forward pass of one item
    params: int                   # parameters (4 bytes each in a weights file)
    context_values: int           # values of one keyframe's context map (D * h * w); 0 for the detector
    roi_values: int               # values of one box's ROI feature (D)


@functools.lru_cache(maxsize=None)
def backbone_cost(arch: str, modality: str, clip_frames: int | None, input_size: int | None, aspect: float,
                  audio_shape: tuple[int, int]) -> NetCost:
    """Operations of ``arch``'s forward on one clip (``input_size`` short side, ``aspect``) or one
    log-mel window (``audio_shape`` = (n_mels, frames)), counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.models.registry import build_backbone, modality_channels

    with torch.device("meta"):
        net = build_backbone(arch, modality)
        if modality == "audio":
            x = torch.empty(1, 1, 1, *audio_shape)
        else:
            h, w = input_size, max(1, round(input_size * aspect))
            x = torch.empty(1, modality_channels(modality), clip_frames, h, w)
        with FlopCounterMode(display=False) as counter:
            out = net(x)
    d, _, h, w = out.shape[1:]
    return NetCost(float(counter.get_total_flops()), sum(p.numel() for p in net.parameters()), d * h * w, d)


@functools.lru_cache(maxsize=None)
def detector_cost(params: DetectorParams, aspect: float, training: bool) -> NetCost:
    """Operations of the person detector on one keyframe image (``min_size`` short side, ``aspect``, the long
    side capped): backbone and FPN, RPN head, and the box head on the model's own number of boxes per
    image (the sampled proposals in training, the proposals kept after NMS in inference)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.detect.model import build_detector, max_image_size

    h = params.min_size
    w = min(max_image_size(params), round(params.min_size * aspect))
    with torch.device("meta"):
        model = build_detector(params, pretrained=False)
        proposals = (model.roi_heads.fg_bg_sampler.batch_size_per_image if training
                     else model.rpn._post_nms_top_n["testing"])
        with FlopCounterMode(display=False) as counter:
            features = model.backbone(torch.empty(1, 3, h, w))
            model.rpn.head(list(features.values()))
            channels = next(iter(features.values())).shape[1]
            pooled = torch.empty(proposals, channels, 7, 7)
            model.roi_heads.box_predictor(model.roi_heads.box_head(pooled))
    return NetCost(float(counter.get_total_flops()), sum(p.numel() for p in model.parameters()), 0, 0)


# --------------------------------------------------------------------------------------------- the stages

def load_costs(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def stage_plans(config: dict[str, Any], shape: DatasetShape, counts: dict[str, int], costs: dict[str, Any],
                gpu_tflops: float) -> list[StagePlan]:
    """Every rule of ``counts`` with its disk, CPU hours and GPU hours (flow by method, finetune and
    features by backbone)."""
    media = costs["media"]
    torch_rates = costs["torch_cpu"]
    d = config["dataset"]
    seconds = shape.duration_s
    fps = float(config["frames"]["fps"])
    keyframes = shape.keyframes(config)
    n_videos = sum(shape.videos.values())
    videos_of = shape.videos
    train_videos = videos_of.get(d["train_split"], 0)
    gpus = config["compute"]["gpus"]
    ref = media["reference"]
    frame_pixels = config["frames"]["short_side"] ** 2 * shape.aspect
    pixels = frame_pixels / (ref["frames_short_side"] ** 2 * ref["aspect"])
    flow_pixels = frame_pixels / (ref["flow_short_side"] ** 2 * ref["aspect"])
    plans: list[StagePlan] = []

    def hours(flops: float, stage: str, training: bool, jobs: int) -> tuple[float, float]:
        """(CPU hours, GPU hours) of ``jobs`` jobs of ``stage`` computing ``flops`` operations in all; each
        job's fixed CPU seconds (starting, reading, writing) counted on the CPU either way."""
        overhead = jobs * torch_rates["job_overhead_cpu_s"] / 3600
        if gpus.get(stage, 0):
            return overhead, flops / (gpu_tflops * 1e12) / 3600
        rate = torch_rates["train_gflops_per_cpu_s" if training else "infer_gflops_per_cpu_s"] * 1e9
        return overhead + flops / rate / 3600, 0.0

    def add(stage: str, jobs: int, disk: float, cpu_h: float, gpu_h: float, rule: str | None = None) -> None:
        plans.append(StagePlan(stage, jobs, gpus.get(rule or stage, 0) if jobs else 0, disk, cpu_h, gpu_h))

    if counts.get("dataset"):
        add("dataset", counts["dataset"], 0.0, n_videos * seconds * media["probe_cpu_s_per_video_s"] / 3600, 0.0)
    if counts.get("prepare"):
        add("prepare", counts["prepare"], n_videos * seconds * media["prepare_bytes_per_video_s"],
            n_videos * seconds * media["prepare_cpu_s_per_video_s"] / 3600, 0.0)
    if counts.get("frames"):
        kept = kept_fraction(config, None)
        frames = n_videos * seconds * fps * kept
        add("frames", counts["frames"], frames * media["frames_bytes_per_frame"] * pixels,
            frames * media["frames_cpu_s_per_frame"] * pixels / 3600, 0.0)
    for method in config["flow"]["methods"] if counts.get("flow") else []:
        pairs = n_videos * seconds * fps * kept_fraction(config, f"flow/{method}")
        add(f"flow ({method})", n_videos, pairs * media["flow_bytes_per_pair"][method] * flow_pixels,
            pairs * media["flow_cpu_s_per_pair"][method] * flow_pixels / 3600, 0.0, rule="flow")
    if counts.get("audio"):
        add("audio", counts["audio"], n_videos * seconds * media["audio_bytes_per_s"],
            n_videos * seconds * media["audio_cpu_s_per_s"] / 3600, 0.0)

    det = detector_params(config)
    if counts.get("detector_train"):
        cost = detector_cost(det, shape.aspect, True)
        items = train_videos * keyframes * det.train.epochs
        add("detector_train", counts["detector_train"], cost.params * 4.0,
            *hours(cost.flops * TRAIN_PASSES * items, "detector_train", True, counts["detector_train"]))
    if counts.get("detect"):
        cost = detector_cost(det, shape.aspect, False)
        detected = [s for s in videos_of if s not in config["detect"].get("precomputed", {})]
        items = sum(videos_of[s] for s in detected) * keyframes
        add("detect", counts["detect"], 0.0, *hours(cost.flops * items, "detect", False, counts["detect"]))

    audio_shape = audio_window_shape(config)
    for name in config["backbones"]:
        b = backbone_params(config, name)
        cost = backbone_cost(b.arch, b.modality, b.clip_frames, b.input_size, shape.aspect, audio_shape)
        if counts.get("finetune") and is_trained(config, name):
            items = train_videos * keyframes * b.finetune.epochs
            add(f"finetune ({name})", 1, cost.params * 4.0,
                *hours(cost.flops * TRAIN_PASSES * items, "finetune", True, 1), rule="finetune")
        if counts.get("features") and is_trained(config, name):
            per_video = keyframes * (2.0 * cost.context_values + 2.0 * cost.roi_values * shape.boxes_per_keyframe)
            add(f"features ({name})", n_videos, n_videos * per_video,
                *hours(cost.flops * keyframes * n_videos, "features", False, n_videos), rule="features")
    for rule in ("head", "predict", "baseline", "fuse", "evaluate", "report", "detect_precomputed"):
        if counts.get(rule):     # small networks on cached features, or none: their start and reading
            add(rule, counts[rule], 0.0, counts[rule] * torch_rates["job_overhead_cpu_s"] / 3600, 0.0)
    return plans


def kept_fraction(config: dict[str, Any], modality: str | None) -> float:
    """Share of a video's frames (``modality`` None) or flow pairs that ``frames.window`` keeps: windows of
    ``clip_context_s`` each side of keyframes 1 s apart, at most all of them."""
    if config["frames"]["window"] != "clips":
        return 1.0
    return min(1.0, 2.0 * clip_context_s(config, modality))


def is_trained(config: dict[str, Any], backbone: str) -> bool:
    """Whether a model reads ``backbone`` (else the DAG has no finetune or features job for it)."""
    return any(backbone in model_backbones(spec) for spec in config["models"].values())


def audio_window_shape(config: dict[str, Any]) -> tuple[int, int]:
    """(n_mels, frames) of one log-mel window of ``audio.window_s``."""
    a = config["audio"]
    return int(a["n_mels"]), int(a["window_s"] * a["sample_rate"] / a["hop"]) + 1


# --------------------------------------------------------------------------------------------- the dataset

def dataset_shape(config: dict[str, Any], videos: dict[str, int] | None, duration_s: float | None,
                  aspect: float, boxes_per_keyframe: float) -> tuple[DatasetShape, bool]:
    """Sizes of the dataset, and whether it is there: read from ``dataset.root`` where it is, else AVA's
    (``videos`` and ``duration_s`` override); the duration of a prepared dataset is its segment's."""
    d = config["dataset"]
    prepared = d.get("prepare", {}).get("duration")
    present = Path(d["root"]).is_dir()
    if present and videos is None:
        owners = all_video_ids(dataset_params(config))
        counted = {split: sum(1 for s in owners.values() if s == split) for split in d["splits"]}
        source = f"{len(owners)} videos listed under {d['root']}"
    else:
        counted = {split: (videos or AVA_VIDEOS).get(split, 0) for split in d["splits"]}
        source = "given by --videos" if videos else f"AVA's sizes: {d['root']} is not there"
    seconds = duration_s or prepared
    if seconds is None and present:
        seconds, aspect = probe_first_video(config, counted)
    if seconds is None:
        seconds = AVA_SEGMENT_S
    return DatasetShape(counted, float(seconds), aspect, boxes_per_keyframe, source), present


def probe_first_video(config: dict[str, Any], counted: dict[str, int]) -> tuple[float, float]:
    """Duration and aspect of the dataset's first video (taken as every video's)."""
    from pipeline.data.manifest import find_video
    from pipeline.media.probe import probe

    owners = all_video_ids(dataset_params(config))
    first = next(iter(owners))
    info = probe(find_video(Path(config["dataset"]["root"]) / config["dataset"]["videos"], first))
    return float(info.duration_s), float(info.width) / float(info.height)


# --------------------------------------------------------------------------------------------- the table

def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"


def hours_text(h: float) -> str:
    """Hours with one decimal and their unit; under 6 minutes in minutes, under one in seconds."""
    if h == 0:
        return "–"
    if h * 3600 < 1:
        return "< 1 s"
    if h * 60 < 1:
        return f"{h * 3600:.0f} s"
    if h < 0.1:
        return f"{h * 60:.1f} min"
    return f"{h:,.1f} h"


def format_table(plans: Sequence[StagePlan]) -> str:
    """The plan as a markdown table, with a total row."""
    lines = ["| stage | jobs | GPUs per job | wall per job | disk | CPU hours | GPU hours |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in plans:
        lines.append(f"| {p.stage} | {p.jobs:,} | {p.gpus_per_job or '–'} | {hours_text(p.hours_per_job)} | "
                     f"{human_bytes(p.disk_bytes) if p.disk_bytes else '–'} | {hours_text(p.cpu_hours)} | "
                     f"{hours_text(p.gpu_hours)} |")
    total = StagePlan("total", sum(p.jobs for p in plans), 0, sum(p.disk_bytes for p in plans),
                      sum(p.cpu_hours for p in plans), sum(p.gpu_hours for p in plans))
    lines.append(f"| **total** | {total.jobs:,} | | | {human_bytes(total.disk_bytes)} | "
                 f"{hours_text(total.cpu_hours)} | {hours_text(total.gpu_hours)} |")
    return "\n".join(lines)


def parse_videos(items: Sequence[str] | None) -> dict[str, int] | None:
    if not items:
        return None
    videos = {}
    for item in items:
        split, _, n = item.partition("=")
        if not n.isdigit():
            raise SystemExit(f"--videos {item!r}: expected SPLIT=N")
        videos[split] = int(n)
    return videos


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", required=True, type=Path)
    parser.add_argument("--videos", nargs="+", metavar="SPLIT=N",
                        help="videos per split (default: the dataset's, or AVA's 235 train, 64 val, 131 test)")
    parser.add_argument("--duration", type=float, help="seconds per video (default: dataset.prepare's, "
                        "the first video's, or AVA's 901)")
    parser.add_argument("--aspect", type=float, default=16 / 9, help="frame width / height (default 16/9)")
    parser.add_argument("--boxes-per-keyframe", type=float, default=3.0,
                        help="person boxes per keyframe that the action stages see (default 3)")
    parser.add_argument("--gpu-tflops", type=float, default=50.0,
                        help="sustained TFLOP/s of one GPU (assumed, default 50: measure yours with bench/train.py)")
    parser.add_argument("--costs", type=Path, default=COSTS, help="per-unit costs (default bench/unit_costs.yaml)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.configfile)
    except ConfigError as error:
        raise SystemExit(str(error)) from None
    shape, present = dataset_shape(config, parse_videos(args.videos), args.duration, args.aspect,
                                   args.boxes_per_keyframe)
    counts = job_counts(args.configfile, shape, present)
    costs = load_costs(args.costs)
    plans = stage_plans(config, shape, counts, costs, args.gpu_tflops)
    videos = ", ".join(f"{n} {split}" for split, n in shape.videos.items())
    print(f"Plan of {args.configfile}: {sum(counts.values()):,} jobs in {len(counts)} rules; videos: {videos} "
          f"({shape.source}); {shape.duration_s:.0f} s and {shape.keyframes(config)} keyframes each, "
          f"{shape.boxes_per_keyframe:g} boxes per keyframe (assumed), frames {shape.aspect:.2f}:1.\n")
    print(format_table(plans))
    print(f"\nJobs per rule (Snakemake's DAG): {', '.join(f'{r} {n:,}' for r, n in sorted(counts.items()))}.")
    print(f"CPU hours: media stages from {args.costs.name} (measured at AVA's settings: {costs['media']['measured']}); "
          f"torch stages on the CPU at {costs['torch_cpu']['train_gflops_per_cpu_s']:g} (training) and "
          f"{costs['torch_cpu']['infer_gflops_per_cpu_s']:g} (inference) GFLOP per CPU-second "
          f"({costs['torch_cpu']['measured']}). GPU hours: network operations over {args.gpu_tflops:g} TFLOP/s "
          f"per GPU (assumed; --gpu-tflops). Wall per job: one job on its GPUs, or on one CPU (divide by its threads). "
          f"GPU jobs' CPU hours are their start and reading only; head and predict (small networks on cached "
          f"features) and the evaluation are not priced beyond that.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
