"""Benchmark of AVA frame-mAP (``pipeline.ava.evaluate``) on an AVA-val-sized case against a plain per-keyframe loop.

Builds, from a seed, 64 videos x 897 keyframes with about 310k ground-truth rows and 1.06M detection rows
(60 classes with ids in AVA's range, excluded keyframes, a few keyframes over the 50-row capacity), then times
the evaluate stage (``python -m pipeline.stages.evaluate``) end to end (interpreter start and CSV reading
included) in a subprocess: wall and CPU seconds, and its peak resident memory from
``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``.
The machine's load average is printed too, since wall time on a shared machine depends on it.
The yardstick is the plain loop of ``pipeline/ava/reference.py`` timed in the same run, on the whole case or,
with ``--loop-videos N``, on the first N videos (then both are timed on that subset for the ratio).
The last line is a JSON object.

    .venv/bin/python bench/evaluate.py [--seed 0] [--loop-videos N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.ava.reference import evaluate_reference  # noqa: E402
from pipeline.ava.formats import (  # noqa: E402
    AvaRows, LabelMap, write_detections, write_keyframes, write_ground_truth, write_label_map,
)

LABEL_TYPES = ("PERSON_MOVEMENT", "OBJECT_MANIPULATION", "PERSON_INTERACTION")


def build_case(out_dir: Path, seed: int, n_videos: int = 64, n_keyframes: int = 897) -> dict[str, Path]:
    """Write lm.pbtxt, gt.csv, det.csv, excluded.csv of a synthetic AVA-like case; return their paths.

    The label map has AVA's shape: 60 classes with ids drawn from 1..80, the first 13 pose-like. Per keyframe:
    1 + Poisson(1.25) persons; each has one pose-like action and Poisson(1.4) others (about 5.4 ground-truth
    rows a keyframe). Detected boxes are the persons jittered (a few missed) plus Poisson(0.5) false boxes,
    each with 1..13 classes at float32 scores that favour the true classes (about 18.5 rows a keyframe).
    1% of the keyframes are excluded.
    """
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(np.arange(1, 81), 60, replace=False))
    label_map = LabelMap(tuple(ids.tolist()), tuple(f"action {i}" for i in ids.tolist()),
                         tuple(LABEL_TYPES[(k >= 13) + (k >= 43)] for k in range(60)))   # 13, 30, 17 as AVA
    videos = np.asarray([f"v{seed:02d}_{i:07d}" for i in range(n_videos)])
    frame_video = np.repeat(np.arange(n_videos), n_keyframes)
    frame_time = np.tile(np.arange(902, 902 + n_keyframes), n_videos)
    n_frames = len(frame_video)

    persons = 1 + rng.poisson(1.25, n_frames)
    person_frame = np.repeat(np.arange(n_frames), persons)
    n_persons = len(person_frame)
    centre = rng.uniform(0.15, 0.85, (n_persons, 2))
    size = rng.uniform(0.1, 0.6, (n_persons, 2))
    person_box = np.clip(np.concatenate([centre - size / 2, centre + size / 2], axis=1), 0, 1).round(3)

    actions = 1 + rng.poisson(1.4, n_persons)
    gt_person = np.repeat(np.arange(n_persons), actions)
    first_action = np.r_[True, gt_person[1:] != gt_person[:-1]]
    gt_action = np.where(first_action, ids[rng.integers(0, 13, len(gt_person))],
                         ids[rng.integers(13, len(ids), len(gt_person))])
    gt_frame = person_frame[gt_person]
    gt = AvaRows(videos[frame_video[gt_frame]], frame_time[gt_frame], person_box[gt_person], gt_action,
                 gt_person - np.searchsorted(person_frame, person_frame[gt_person]))

    detected = rng.random(n_persons) > 0.05
    false_boxes = rng.poisson(0.5, n_frames)
    box_frame = np.r_[person_frame[detected], np.repeat(np.arange(n_frames), false_boxes)]
    n_false = int(false_boxes.sum())
    false_centre = rng.uniform(0.1, 0.9, (n_false, 2))
    false_size = rng.uniform(0.05, 0.5, (n_false, 2))
    box = np.r_[np.clip(person_box[detected] + rng.normal(0, 0.03, (int(detected.sum()), 4)), 0, 1),
                np.clip(np.concatenate([false_centre - false_size / 2, false_centre + false_size / 2], 1), 0, 1)]
    box_person = np.r_[np.flatnonzero(detected), np.full(n_false, -1)]
    classes = rng.integers(1, 14, len(box_frame))
    det_box = np.repeat(np.arange(len(box_frame)), classes)
    det_action = ids[rng.integers(0, len(ids), len(det_box))]
    # a true class for about a third of the rows of true persons, so that APs are far from 0
    owner = box_person[det_box]
    truthful = (owner >= 0) & (rng.random(len(det_box)) < 0.35)
    gt_start = np.searchsorted(gt_person, owner[truthful])
    pick = gt_start + (rng.random(int(truthful.sum())) * actions[owner[truthful]]).astype(np.int64)
    det_action[truthful] = gt_action[pick]
    score = np.clip(rng.beta(2, 5, len(det_box)) + 0.3 * truthful, 0, 1).astype(np.float32)
    frame = box_frame[det_box]
    det = AvaRows(videos[frame_video[frame]], frame_time[frame], box[det_box].astype(np.float32), det_action,
                  None, score)

    excluded_frames = rng.choice(n_frames, n_frames // 100, replace=False)
    paths = {"label_map": out_dir / "lm.pbtxt", "gt": out_dir / "gt.csv", "det": out_dir / "det.csv",
             "excluded": out_dir / "excluded.csv"}
    write_label_map(paths["label_map"], label_map)
    write_ground_truth(paths["gt"], gt)
    write_detections(paths["det"], det.take(rng.permutation(len(det))))
    write_keyframes(paths["excluded"], [(videos[frame_video[f]], int(frame_time[f])) for f in excluded_frames])
    return paths


def subset(paths: dict[str, Path], n_videos: int, out_dir: Path) -> dict[str, Path]:
    """The rows of the first ``n_videos`` videos (by name) of each CSV; the same label map."""
    gt_lines = paths["gt"].read_text().splitlines(keepends=True)
    videos = set(sorted({line.split(",", 1)[0] for line in gt_lines})[:n_videos])
    out = {"label_map": paths["label_map"]}
    for name in ("gt", "det", "excluded"):
        out[name] = out_dir / f"subset_{paths[name].name}"
        lines = paths[name].read_text().splitlines(keepends=True)
        out[name].write_text("".join(line for line in lines if line.split(",", 1)[0] in videos))
    return out


def run_fast(paths: dict[str, Path], out_json: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak resident MB of the command line in a fresh subprocess."""
    params = json.dumps({"iou": 0.5, "capacity": 50, "variant": "2019"})
    command = [sys.executable, "-m", "pipeline.stages.evaluate", "--label-map", str(paths["label_map"]),
               "--ground-truth", str(paths["gt"]), "--detections", str(paths["det"]),
               "--excluded", str(paths["excluded"]), "--out", str(out_json), "--params", params]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if after.ru_maxrss < before.ru_maxrss:
        raise RuntimeError("peak memory of the child not measurable")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return seconds, cpu, after.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loop-videos", type=int, default=None,
                        help="time the plain loop on this many videos only (default: the whole case)")
    parser.add_argument("--keep", type=Path, default=None, help="write the case here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.keep or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        paths = build_case(out_dir, args.seed)
        build_s = time.perf_counter() - start
        n_gt = sum(1 for _ in open(paths["gt"]))
        n_det = sum(1 for _ in open(paths["det"]))
        print(f"case: {n_gt} gt rows, {n_det} detection rows, built in {build_s:.1f} s", file=sys.stderr)

        load = os.getloadavg()[0]
        fast_s, fast_cpu, fast_mb = run_fast(paths, out_dir / "eval.json")
        fast = json.loads((out_dir / "eval.json").read_text())
        print(f"pipeline.stages.evaluate: {fast_s:.2f} s ({fast_cpu:.2f} s CPU), peak {fast_mb:.0f} MB, "
              f"mAP {fast['mAP']:.6f}", file=sys.stderr)

        loop_paths, loop_scope = paths, "full case"
        compare_s, compare_cpu, compare = fast_s, fast_cpu, fast
        if args.loop_videos is not None:
            loop_paths = subset(paths, args.loop_videos, out_dir)
            loop_scope = f"first {args.loop_videos} videos"
            compare_s, compare_cpu, _ = run_fast(loop_paths, out_dir / "eval_subset.json")
            compare = json.loads((out_dir / "eval_subset.json").read_text())
        start, start_cpu = time.perf_counter(), time.process_time()
        ref = evaluate_reference(paths["label_map"], loop_paths["gt"], loop_paths["det"], loop_paths["excluded"])
        loop_s, loop_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        diffs = [abs(ref["per_class"][int(a)] - ap) for a, ap in compare["per_class"].items() if ap is not None]
        print(f"plain loop ({loop_scope}): {loop_s:.2f} s ({loop_cpu:.2f} s CPU), mAP {ref['mAP']:.6f}",
              file=sys.stderr)
    print(json.dumps({
        "gt_rows": n_gt, "detection_rows": n_det, "seconds": round(fast_s, 3), "cpu_seconds": round(fast_cpu, 3),
        "peak_rss_mb": round(fast_mb, 1), "load_average_1min_before": round(load, 2),
        "memory_measure": "ru_maxrss of the evaluating subprocess (whole python process, CSV reading included)",
        "loop_scope": loop_scope, "loop_seconds": round(loop_s, 3), "loop_cpu_seconds": round(loop_cpu, 3),
        "fast_seconds_same_scope": round(compare_s, 3), "fast_cpu_seconds_same_scope": round(compare_cpu, 3),
        "speedup_vs_loop": round(loop_s / compare_s, 1), "cpu_speedup_vs_loop": round(loop_cpu / compare_cpu, 1),
        "max_abs_ap_diff_vs_loop": max(diffs) if diffs else None,
        "mAP": fast["mAP"],
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
