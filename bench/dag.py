"""Benchmark of planning the DAG at AVA's scale: ``snakemake -n`` against a trivial Snakefile of as many jobs.

AVA has 430 movies (235 train, 64 val and 131 test in v2.2; the benchmark splits 299 train and 131
val) of 897 keyframes each. The benchmark writes that dataset as placeholders (empty movie files,
a ground-truth CSV with one person per keyframe, AVA's label map) under the file names of
``configs/ava_v2.2.yaml`` (the paper's seven models, two flows, two fusions, movies cut by the
prepare stage), then times ``snakemake -n`` of the whole pipeline with that config. The
yardstick, timed in the same run, is a trivial Snakefile with the same number of jobs in the same
number of rules (each job one input and one output). Goal: at most 10 s, and at most 2x the yardstick.

    .venv/bin/python bench/dag.py [--videos 430] [--keyframes 897] [--config configs/ava_v2.2.yaml]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def write_dataset(root: Path, config: dict, n_videos: int, n_keyframes: int) -> dict[str, list[str]]:
    """Placeholder movies and annotations where ``config``'s dataset section expects them; returns the
    video ids of each split."""
    dataset = config["dataset"]
    media = root / (dataset["prepare"]["movies"] if dataset.get("prepare") else dataset["videos"])
    media.mkdir(parents=True)
    n_val = round(n_videos * 131 / 430)
    ids = {"train": [f"movie{i:03d}" for i in range(n_videos - n_val)],
           "val": [f"movie{i:03d}" for i in range(n_videos - n_val, n_videos)]}
    labels = (ROOT / "tests/fixtures/ava/ava_action_list_v2.1_for_activitynet_2018.pbtxt").read_text()
    write(root / dataset["label_map"], labels)
    for split, videos in ids.items():
        files = dataset["splits"][split]
        rows = [f"{v},{t:04d},0.100,0.100,0.500,0.900,12,0\n" for v in videos for t in range(902, 902 + n_keyframes)]
        write(root / files["ground_truth"], "".join(rows))
        write(root / files["excluded"], "")
        if files.get("videos"):
            write(root / files["videos"], "".join(f"{v}\n" for v in videos))
        for v in videos:
            (media / f"{v}.mkv").touch()
    return ids


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def pipeline_config(path: Path, root: Path) -> dict:
    config = yaml.safe_load(path.read_text())
    config["dataset"]["root"] = str(root)
    config["results"] = "results"
    return config


def dry_run(workdir: Path, snakefile: Path, configfile: Path | None) -> tuple[float, dict[str, int]]:
    """Seconds of ``snakemake -n`` and its jobs per rule."""
    cmd = [SNAKEMAKE, "-n", "--snakefile", str(snakefile), "--directory", str(workdir), "--cores", "1", "--quiet", "rules"]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, job_counts(done.stdout + done.stderr)


def job_counts(output: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in output.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def trivial_snakefile(path: Path, counts: dict[str, int]) -> None:
    """One rule per rule of the pipeline, with as many jobs, each touching one file from one input."""
    lines = ["rule all:", "    input:"]
    lines += [f"        expand('out/{rule}/{{i}}.txt', i=range({n}))," for rule, n in counts.items() if rule != "all"]
    lines += ["", "", "rule source:", "    output:", "        'in/{i}.txt',", "    shell:", "        'touch {output}'", ""]
    for rule in counts:
        if rule == "all":
            continue
        lines += ["", f"rule {rule}:", "    input:", "        'in/{i}.txt',", "    output:",
                  f"        'out/{rule}/{{i}}.txt',", "    shell:", "        'touch {output}'", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=430)
    parser.add_argument("--keyframes", type=int, default=897)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "ava_v2.2.yaml")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_dag_") as tmp:
        work = Path(tmp)
        config = pipeline_config(args.config, work / "data")
        ids = write_dataset(work / "data", config, args.videos, args.keyframes)
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        seconds, counts = dry_run(work, ROOT / "Snakefile", work / "config.yaml")
        jobs = sum(counts.values())
        trivial = work / "trivial"
        trivial.mkdir()
        trivial_snakefile(trivial / "Snakefile", counts)
        # the trivial DAG's source files: one per job index (they exist, as the videos do)
        (trivial / "in").mkdir()
        for i in range(max(counts.values())):
            (trivial / "in" / f"{i}.txt").touch()
        trivial_seconds, trivial_counts = dry_run(trivial, trivial / "Snakefile", None)
    ratio = seconds / trivial_seconds
    result = {
        "config": str(args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config),
        "videos": args.videos, "keyframes_per_video": args.keyframes,
        "train_videos": len(ids["train"]), "val_videos": len(ids["val"]),
        "jobs": jobs, "jobs_per_rule": counts, "trivial_jobs": sum(trivial_counts.values()),
        "dry_run_s": round(seconds, 2), "trivial_dry_run_s": round(trivial_seconds, 2),
        "ratio_to_trivial": round(ratio, 2),
        "goal_met": seconds <= 10.0 and ratio <= 2.0,
    }
    print(f"snakemake -n: {seconds:.1f} s for {jobs} jobs; a trivial Snakefile of {result['trivial_jobs']} jobs: "
          f"{trivial_seconds:.1f} s ({ratio:.2f}x); goal <= 10 s and <= 2x: "
          f"{'met' if result['goal_met'] else 'not met'}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
