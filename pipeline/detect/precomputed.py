"""Precomputed person boxes in place of the detector (SlowFast's and LFB's box files).

    python -m pipeline.detect.precomputed --boxes ava_detection_val_boxes_and_labels.csv \\
        --keyframes results/dataset/{split}.keyframes.csv --out results/detect/{split}.boxes.csv \\
        --metrics results/detect/{split}.metrics.json --params JSON \\
        [--ground-truth results/dataset/{split}.gt.csv --excluded EXCLUDED.csv]

The files are taken as they are: ``video_id,timestamp,x1,y1,x2,y2,action_id,score`` with a row per
(box, action) where a box has labels, an empty or -1 action for the others (the
``include_negative`` file). Each box is kept once per keyframe with its highest score, then
``score_threshold`` applies, as in SlowFast. Only the keyframes of ``--keyframes`` are kept; the log
and the metrics say how many boxes and keyframes of the file lie outside them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.ava.formats import AvaRows, read_boxes
from pipeline.dataset import read_keyframes
from pipeline.detect.infer import add_box_output_arguments, write_outputs

STAGE = "detect.precomputed"


def distinct_boxes(rows: AvaRows) -> AvaRows:
    """One row per (video_id, timestamp, box) with the highest score of its rows, action -1.

    Rows keep the order of each box's first appearance.
    """
    if len(rows) == 0:
        return rows
    _, video_index = np.unique(rows.video_id, return_inverse=True)
    key = np.empty(len(rows), dtype=[("v", np.int64), ("t", np.int64), ("box", rows.box.dtype, (4,))])
    key["v"], key["t"], key["box"] = video_index, rows.timestamp, rows.box
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    best = np.full(len(first), -np.inf, dtype=np.float64)
    np.maximum.at(best, inverse, rows.score.astype(np.float64))
    order = np.argsort(first, kind="stable")
    out = rows.take(first[order])
    out.score = best[order].astype(rows.score.dtype)
    out.action_id = np.full(len(out), -1, dtype=np.int64)
    return out


def on_keyframes(rows: AvaRows, keyframes: AvaRows) -> tuple[AvaRows, dict[str, int]]:
    """The rows on ``keyframes`` and counts of what lies outside: boxes and keyframes both ways."""
    wanted = set(zip(keyframes.video_id.tolist(), keyframes.timestamp.tolist()))
    keys = list(zip(rows.video_id.tolist(), rows.timestamp.tolist()))
    inside = np.fromiter((k in wanted for k in keys), dtype=bool, count=len(keys))
    file_keyframes = set(keys)
    counts = {
        "n_file_boxes_outside_keyframes": int((~inside).sum()),
        "n_file_keyframes_outside_keyframes": len(file_keyframes - wanted),
        "n_keyframes_without_file_boxes": len(wanted - file_keyframes),
    }
    return rows.take(inside), counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boxes", type=Path, required=True, help="SlowFast/LFB person-box CSV")
    add_box_output_arguments(parser)
    args = parser.parse_args(argv)
    rows = read_boxes(args.boxes)
    boxes = distinct_boxes(rows)
    keyframes = read_keyframes(args.keyframes)
    kept, counts = on_keyframes(boxes, keyframes)
    threshold = float(args.params["score_threshold"])
    summary: dict[str, Any] = {
        "source": f"precomputed boxes {args.boxes}", "n_file_rows": len(rows),
        "n_file_boxes": len(boxes), **counts,
        "n_boxes_below_threshold": int((kept.score < threshold).sum()),
    }
    print(f"{args.boxes}: {len(rows)} rows, {len(boxes)} distinct boxes; "
          f"{counts['n_file_boxes_outside_keyframes']} boxes on "
          f"{counts['n_file_keyframes_outside_keyframes']} keyframes not in {args.keyframes} left out; "
          f"{summary['n_boxes_below_threshold']} boxes under score {threshold} left out; "
          f"{counts['n_keyframes_without_file_boxes']} of {len(keyframes)} keyframes have no box",
          file=sys.stderr)
    write_outputs(kept, keyframes, args.out, args.metrics, args.params, args.ground_truth,
                  args.excluded, STAGE, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
