"""Evaluate stage: AVA frame-mAP of one model's (or fusion's) action detections on one split.

    python -m pipeline.stages.evaluate --label-map L.pbtxt --ground-truth results/dataset/{split}.gt.csv \\
        --detections results/predictions/{model}/{split}.csv [--excluded EXCLUDED.csv] \\
        [--problems results/dataset/problems.csv --split SPLIT] --out results/eval/{model}/{split}.json \\
        --params EvaluateParams

As the official ActivityNet evaluator computes it (:mod:`pipeline.ava.evaluate`): ``iou`` is the
match threshold, ``capacity`` the detection rows kept per keyframe (None: all), ``variant`` the 2019
form (excluded keyframes leave both sides) or the 2020 form (no exclusions: ``--excluded`` is then
not used, and the log says so). Prints each class's AP to stderr and ``mAP@<iou>IOU: <mAP>`` to
stdout; the JSON holds the result with its precision-recall curves and provenance, and
``missing_videos``: the split's videos that the dataset stage left out (or whose ground truth it
left out in part), each with the reason and the ground-truth boxes not scored, so that a run on
fewer videos says so instead of silently scoring less.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.ava.evaluate import EvalResult, evaluate_files
from pipeline.ava.formats import LabelMap, read_label_map
from pipeline.cli import add_params_argument, read_params, run_stage, stage_parser
from pipeline.data.problems import read_problems
from pipeline.params import EvaluateParams, as_dict
from pipeline.store import provenance, write_json

STAGE = "evaluate"


def print_result(result: EvalResult, label_map: LabelMap) -> None:
    """Each class's AP, ground truth and detection counts and each label type's mAP to stderr; the mAP to stdout."""
    for action_id, ap in result.per_class.items():
        shown = "   n/a" if ap is None else f"{100 * ap:6.2f}"
        print(f"AP {action_id:>4} {shown}  gt {result.n_gt[action_id]:>7}  det {result.n_det[action_id]:>8}  "
              f"{label_map.name(action_id)}", file=sys.stderr)
    for label_type, value in result.per_type.items():
        print(f"mAP {label_type}: {100 * value:.2f}", file=sys.stderr)
    print(f"mAP@{result.iou_threshold}IOU: {result.mAP:.6f}")


def missing_videos(problems_csv: Path | None, split: str | None) -> list[dict]:
    """The ``missing_videos`` of the result JSON: ``split``'s rows of the dataset stage's problems.csv."""
    if problems_csv is None:
        return []
    return [{"video": p.video_id, "reason": p.problem, "ground_truth_boxes": p.ground_truth_rows,
             "whole_video": not p.usable} for p in read_problems(problems_csv) if p.split == split]


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.evaluate", __doc__)
    parser.add_argument("--label-map", type=Path, required=True, help="label map (pbtxt)")
    parser.add_argument("--ground-truth", type=Path, required=True, help="ground-truth CSV")
    parser.add_argument("--detections", type=Path, required=True, help="action detections CSV")
    parser.add_argument("--excluded", type=Path, default=None, help="excluded keyframes CSV (2019 form only)")
    parser.add_argument("--problems", type=Path, default=None, help="the dataset stage's problems.csv")
    parser.add_argument("--split", default=None, help="the split evaluated (its rows of --problems are named)")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    add_params_argument(parser, EvaluateParams)
    args = parser.parse_args(argv)
    if args.problems is not None and args.split is None:
        parser.error("--problems needs --split")
    params = read_params(parser, EvaluateParams, args.params)

    excluded = args.excluded
    if params.variant == "2020" and excluded is not None:
        print(f"the 2020 form has no exclusions: {excluded} is not used", file=sys.stderr)
        excluded = None
    label_map = read_label_map(args.label_map)
    result = evaluate_files(label_map, args.ground_truth, args.detections, excluded,
                            capacity=params.capacity, variant=params.variant, iou_threshold=params.iou)
    print_result(result, label_map)
    missing = missing_videos(args.problems, args.split)
    for video in missing:
        print(f"not scored: {video['ground_truth_boxes']} ground-truth rows of video {video['video']} "
              f"({'the whole video' if video['whole_video'] else 'part of it'}): {video['reason']}", file=sys.stderr)
    inputs = {"label_map": str(args.label_map), "ground_truth": str(args.ground_truth),
              "detections": str(args.detections), "excluded": None if excluded is None else str(excluded)}
    write_json(args.out, {**result.to_json(label_map), "missing_videos": missing,
                          "provenance": provenance(STAGE, {**as_dict(params), **inputs})})
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
