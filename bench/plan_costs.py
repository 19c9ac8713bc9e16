"""The CPU speed of the torch stages, measured on a finished run's benchmark files, for ``pipeline.plan``.

    .venv/bin/python bench/plan_costs.py [--results results] [--configfile config.yaml]

For every job of the run that has a benchmark file (``results/benchmarks/``: detector_train, detect,
finetune, features), it counts the operations that ``pipeline.plan`` counts for it (the networks'
forward on the meta device, times its items: keyframes with ground truth times epochs times 3 for
training, keyframes for inference) and divides by the job's measured CPU seconds (``cpu_time``: the
whole job, decoding, loading and writing included). The rates, GFLOP per CPU-second for training and
for inference, are what ``bench/unit_costs.yaml`` holds under ``torch_cpu``. The yardstick: the
plan's CPU hours of the run's torch jobs at those rates against their measured CPU hours, job by job
(``ratio_min`` .. ``ratio_max``; 1 would be exact).

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.ava import formats  # noqa: E402
from pipeline.config import backbone_params, detector_params, load_config  # noqa: E402
from pipeline.data.manifest import read_manifest  # noqa: E402
from pipeline.plan import TRAIN_PASSES, audio_window_shape, backbone_cost, detector_cost  # noqa: E402


def cpu_seconds(path: Path) -> float:
    with path.open() as f:
        return float(next(csv.DictReader(f, delimiter="\t"))["cpu_time"])


def keyframe_count(path: Path) -> int:
    rows = formats.read_keyframes(path) if path.name.endswith("keyframes.csv") else formats.read_ground_truth(path)
    return len(set(zip(rows.video_id.tolist(), rows.timestamp.tolist())))


def measured_jobs(results: Path, config: dict) -> list[tuple[str, bool, float, float]]:
    """(job, training, operations, CPU seconds) of every torch job of the run with a benchmark file."""
    bench = results / "benchmarks"
    videos = read_manifest(results / "dataset" / "manifest.parquet")
    aspect = videos[0].width / videos[0].height
    train_items = keyframe_count(results / "dataset" / f"{config['dataset']['train_split']}.gt.csv")
    det = detector_params(config)
    jobs = []
    if (bench / "detector_train.tsv").exists():
        ops = detector_cost(det, aspect, True).flops * TRAIN_PASSES * train_items * det.train.epochs
        jobs.append(("detector_train", True, ops, cpu_seconds(bench / "detector_train.tsv")))
    for path in sorted((bench / "detect").glob("*.tsv")):
        items = keyframe_count(results / "dataset" / f"{path.stem}.keyframes.csv")
        jobs.append((f"detect {path.stem}", False, detector_cost(det, aspect, False).flops * items, cpu_seconds(path)))
    for name in config["backbones"]:
        b = backbone_params(config, name)
        cost = backbone_cost(b.arch, b.modality, b.clip_frames, b.input_size, aspect, audio_window_shape(config))
        path = bench / "finetune" / f"{name}.tsv"
        if path.exists():
            jobs.append((f"finetune {name}", True, cost.flops * TRAIN_PASSES * train_items * b.finetune.epochs,
                         cpu_seconds(path)))
        for split in config["dataset"]["splits"]:
            keyframes = formats.read_keyframes(results / "dataset" / f"{split}.keyframes.csv")
            per_video = {v: int((keyframes.video_id == v).sum()) for v in set(keyframes.video_id.tolist())}
            for path in sorted((bench / "features" / name / split).glob("*.tsv")):
                jobs.append((f"features {name} {path.stem}", False, cost.flops * per_video[path.stem],
                             cpu_seconds(path)))
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--configfile", type=Path, default=ROOT / "config.yaml")
    args = parser.parse_args(argv)
    config = load_config(args.configfile)
    jobs = measured_jobs(args.results, config)
    # cpu seconds = overhead + operations / rate: the overhead (starting Python, importing torch, reading
    # and writing) from the inference jobs, many of which compute little; the rates from the rest
    infer = [j for j in jobs if not j[1]]
    slope, overhead = np.polyfit([j[2] for j in infer], [j[3] for j in infer], 1)
    overhead = max(0.0, float(overhead))
    rates = {"infer": 1.0 / slope / 1e9}
    train = [j for j in jobs if j[1]]
    rates["train"] = sum(j[2] for j in train) / sum(max(j[3] - overhead, 1e-9) for j in train) / 1e9
    ratios = [(overhead + j[2] / (rates["train" if j[1] else "infer"] * 1e9)) / j[3] for j in jobs]
    for name, training, ops, seconds in jobs:
        print(f"{name}: {ops / 1e12:.2f} TFLOP in {seconds:.1f} CPU-s ({ops / seconds / 1e9:.1f} GFLOP/CPU-s)")
    result = {"results": str(args.results), "config": str(args.configfile), "jobs": len(jobs),
              "train_gflops_per_cpu_s": round(rates["train"], 2), "infer_gflops_per_cpu_s": round(rates["infer"], 2),
              "job_overhead_cpu_s": round(overhead, 2),
              "measured_cpu_hours": round(sum(j[3] for j in jobs) / 3600, 3),
              "ratio_min": round(min(ratios), 2), "ratio_max": round(max(ratios), 2)}
    print(f"training: {result['train_gflops_per_cpu_s']} GFLOP per CPU-second, inference: "
          f"{result['infer_gflops_per_cpu_s']}, {result['job_overhead_cpu_s']} CPU-s per job besides; "
          f"planned / measured per job: {result['ratio_min']} .. {result['ratio_max']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
