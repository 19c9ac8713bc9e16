"""Dataset stage: validate an AVA-layout dataset and write the manifest every other stage reads.

    python -m pipeline.stages.dataset --params DatasetParams --out-dir results/dataset --threads N

Reads, under ``params.root``: the folder of videos, the label map, and per split a ground-truth
CSV, an excluded-timestamps CSV and a list of video ids (each optional where AVA allows it: a test
split has no ground truth; a split without a list takes the ids of its ground truth).

Writes (``--out-dir``):
- ``manifest.parquet``: a row per usable video (:class:`pipeline.data.manifest.VideoInfo`), every
  video probed (``threads`` at once); with ``segment`` (dataset.prepare) the movies are read to their
  end without decoding and the row describes the segment that the prepare stage will cut;
- ``problems.csv``: a row per video left out (missing, empty, not a video, unreadable, truncated)
  and per video whose ground truth lies partly outside it
  (:class:`pipeline.data.problems.VideoProblem`), with the ground-truth rows left out for it: one
  bad video never stops the others, and the evaluation names them; video files that no split
  lists are named on stderr and not used;
- ``{split}.gt.csv``: validated ground truth, label-map classes only. Repairs, each logged on
  stderr with its count and the first lines: rows of other classes, rows at an excluded keyframe
  (the official evaluator drops them too) and exact duplicate rows are left out. A box with
  x1 >= x2 or y1 >= y2 is an :class:`InputError` naming the file and the line;
- ``{split}.excluded.csv``: the excluded keyframes (``video_id,timestamp``);
- ``{split}.keyframes.csv``: ``video_id,timestamp`` of every keyframe to detect and predict on:
  each integer second from ``time_offset + margin`` to ``time_offset + duration - margin``, plus any
  keyframe that has ground truth, less the excluded ones;
- ``label_map.pbtxt``: the label map, in the form with label types.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.ava import formats
from pipeline.cli import add_params_argument, read_params, run_stage, stage_parser
from pipeline.data import manifest
from pipeline.data.manifest import (VideoInfo, keyframes_for_split, probe_videos, split_video_ids,
                                    write_manifest)
from pipeline.data.problems import VideoProblem, write_problems
from pipeline.errors import InputError
from pipeline.params import DatasetParams


def filter_to_label_map(rows: formats.AvaRows, label_map: formats.LabelMap, path: str | Path) -> formats.AvaRows:
    """Keep rows whose action is in the label map; say on stderr how many of each other id were left out."""
    known = label_map.index_array(rows.action_id) >= 0
    if not known.all():
        ids, counts = np.unique(rows.action_id[~known], return_counts=True)
        listed = ", ".join(f"{i} ({c} rows)" for i, c in zip(ids.tolist(), counts.tolist()))
        print(f"{path}: {int((~known).sum())} rows have action ids outside the label map and are left out: {listed}",
              file=sys.stderr)
    return rows.take(known)


def _first_lines(path: str | Path, rows: np.ndarray, limit: int = 5) -> str:
    """'lines 3, 7, ...' of the rows at indices ``rows`` (int [n]) of the CSV at ``path``."""
    lines = ", ".join(map(str, formats.row_lines(path)[rows[:limit]].tolist()))
    return ("lines " if len(rows) > 1 else "line ") + lines + (", ..." if len(rows) > limit else "")


def check_boxes(rows: formats.AvaRows, path: str | Path) -> None:
    """InputError naming the file and line of the first box with x1 >= x2 or y1 >= y2."""
    bad = np.flatnonzero((rows.box[:, 0] >= rows.box[:, 2]) | (rows.box[:, 1] >= rows.box[:, 3]))
    if len(bad):
        x1, y1, x2, y2 = rows.box[bad[0]].tolist()
        raise InputError(path, f"empty box: x1 {x1:.3f}, y1 {y1:.3f}, x2 {x2:.3f}, y2 {y2:.3f} (needs x1 < x2 and "
                               f"y1 < y2); {len(bad)} such rows in the file", int(formats.row_lines(path)[bad[0]]))


def repair_ground_truth(rows: formats.AvaRows, excluded: set[tuple[str, int]], path: str | Path) -> formats.AvaRows:
    """Leave out the rows at an excluded keyframe (as the official evaluator does) and the rows equal
    in every field to an earlier row, saying on stderr how many of each and their first lines."""
    at_excluded = np.fromiter(((v, t) in excluded for v, t in zip(rows.video_id.tolist(), rows.timestamp.tolist())),
                              dtype=bool, count=len(rows))
    duplicate = np.zeros(len(rows), dtype=bool)
    seen: set[tuple] = set()
    keys = zip(rows.video_id.tolist(), rows.timestamp.tolist(), map(tuple, rows.box.tolist()), rows.action_id.tolist(),
               rows.person_id.tolist())
    for i, key in enumerate(keys):
        if not at_excluded[i]:
            duplicate[i] = key in seen
            seen.add(key)
    for mask, what in ((at_excluded, "ground-truth rows at excluded keyframes"),
                       (duplicate, "duplicate ground-truth rows")):
        if mask.any():
            print(f"{path}: {int(mask.sum())} {what} are left out ({_first_lines(path, np.flatnonzero(mask))})",
                  file=sys.stderr)
    return rows.take(~(at_excluded | duplicate))


def check_gt_videos(rows: formats.AvaRows, video_ids: list[str], path: str | Path) -> None:
    """Ground truth may only name videos of its split's list."""
    unknown = sorted(set(rows.video_id.tolist()) - set(video_ids))
    if unknown:
        raise InputError(path, f"ground truth names {len(unknown)} videos that are not in the split's video list: "
                               f"{', '.join(unknown[:10])}")


def left_out_problems(gt: formats.AvaRows | None, videos: list[VideoInfo], unusable: dict[str, str],
                      split: str, path: str | Path | None) -> tuple[list[VideoProblem], np.ndarray]:
    """The split's :class:`VideoProblem` rows and bool [n] over ``gt``: the ground-truth rows left
    out, those of unusable videos and those at keyframes outside their video's span."""
    problems: list[VideoProblem] = []
    if gt is None:
        return [VideoProblem(v, split, False, 0, why) for v, why in unusable.items()], np.zeros(0, dtype=bool)
    of_unusable = np.isin(gt.video_id, list(unusable)) if unusable else np.zeros(len(gt), dtype=bool)
    problems += [VideoProblem(v, split, False, int((gt.video_id == v).sum()), why) for v, why in unusable.items()]
    outside = manifest.outside_video(gt, videos)
    spans = manifest.video_spans(videos)
    for video_id in dict.fromkeys(gt.video_id[outside].tolist()):
        rows = np.flatnonzero(outside & (gt.video_id == video_id))
        start, end = spans[video_id]
        times = sorted(set(gt.timestamp[rows].tolist()))
        problems.append(VideoProblem(video_id, split, True, len(rows), (
            f"{path}: {len(rows)} ground-truth rows at keyframes outside the video's span [{start:g}, {end:.2f}) s "
            f"(t = {', '.join(map(str, times[:5]))}{', ...' if len(times) > 5 else ''}; {_first_lines(path, rows)})")))
    return problems, of_unusable | outside


def build(params: DatasetParams, out_dir: str | Path, threads: int = 1) -> list[VideoInfo]:
    """Validate each split's annotations, then probe its videos; write the stage's files into
    ``out_dir``; returns the manifest rows (the usable videos).

    A video that cannot be used (missing, empty, not a video, unreadable, truncated) is left out
    with its ground truth and named in ``problems.csv``, as are ground-truth rows at keyframes
    outside their video: one bad video never stops the others. A split left with no usable video
    is an :class:`InputError`.
    """
    root = Path(params.root)
    out_dir = Path(out_dir)
    label_map = formats.read_label_map(root / params.label_map)
    formats.write_label_map(out_dir / "label_map.pbtxt", label_map)
    videos: list[VideoInfo] = []
    problems: list[VideoProblem] = []
    listed: set[str] = set()
    for name, split in params.splits.items():
        ids = split_video_ids(root, split)
        listed |= set(ids)
        if not ids:
            raise InputError(root / (split.videos or split.ground_truth or ""), f"split {name!r} has no videos")
        excluded: set[tuple[str, int]] = set()
        if split.excluded:
            excluded = formats.read_excluded(root / split.excluded)
        gt, gt_path = None, None
        if split.ground_truth:
            gt_path = root / split.ground_truth
            gt = formats.read_ground_truth(gt_path)
            check_boxes(gt, gt_path)
            gt = repair_ground_truth(gt, excluded, gt_path)
            gt = filter_to_label_map(gt, label_map, gt_path)
            check_gt_videos(gt, ids, gt_path)
        # the annotations are checked before the videos are probed (one decode each)
        split_videos, unusable = probe_videos(ids, name, root / params.videos, params.time_offset, params.segment,
                                              threads)
        split_problems, left_out = left_out_problems(gt, split_videos, unusable, name, gt_path)
        for problem in split_problems:
            what = "only its rows are left out" if problem.usable else "left out"
            print(f"video {problem.video_id} ({name}, {problem.ground_truth_rows} ground-truth rows): {what}: "
                  f"{problem.problem}", file=sys.stderr)
        if not split_videos:
            raise InputError(root / (split.videos or split.ground_truth or ""),
                             f"split {name!r} has no usable video: "
                             + "; ".join(f"{v}: {why}" for v, why in list(unusable.items())[:5]))
        if gt is not None:
            gt = gt.take(~left_out)
            formats.write_ground_truth(out_dir / f"{name}.gt.csv", gt)
        videos += split_videos
        problems += split_problems
        formats.write_keyframes(out_dir / f"{name}.excluded.csv", sorted(excluded))
        keyframes = keyframes_for_split(split_videos, gt, excluded, params.keyframe_margin)
        formats.write_keyframes(out_dir / f"{name}.keyframes.csv",
                                zip(keyframes.video_id.tolist(), keyframes.timestamp.tolist()))
        print(f"split {name}: {len(split_videos)} of {len(ids)} videos usable, {len(keyframes)} keyframes, "
              f"{0 if gt is None else len(gt)} ground-truth rows, {len(excluded)} excluded keyframes", file=sys.stderr)
    unlisted = manifest.unlisted_videos(root / params.videos, listed)
    if unlisted:
        print(f"{root / params.videos}: {len(unlisted)} video files are in no split and are not used: "
              f"{', '.join(unlisted[:10])}{', ...' if len(unlisted) > 10 else ''}", file=sys.stderr)
    write_problems(out_dir / "problems.csv", problems)
    write_manifest(out_dir / "manifest.parquet", videos, params)
    return videos


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.dataset", __doc__)
    add_params_argument(parser, DatasetParams)
    parser.add_argument("--out-dir", required=True, help="results/dataset")
    parser.add_argument("--threads", type=int, default=1, help="videos probed at once")
    args = parser.parse_args(argv)
    params = read_params(parser, DatasetParams, args.params)
    for info in build(params, args.out_dir, args.threads):
        print(json.dumps(asdict(info)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
