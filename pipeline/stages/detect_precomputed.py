"""Precomputed-boxes stage: SlowFast's or LFB's person-box file in place of the detector, with its metrics.

    python -m pipeline.stages.detect_precomputed --boxes ava_detection_val_boxes_and_labels.csv \\
        --keyframes results/dataset/{split}.keyframes.csv --out results/detect/{split}.boxes.csv \\
        --metrics results/detect/{split}.metrics.json \\
        [--ground-truth results/dataset/{split}.gt.csv] [--excluded EXCLUDED.csv] --params DetectorParams

Each box of the file is kept once per keyframe with its highest score, then ``score_threshold``
applies, as in SlowFast (:mod:`pipeline.detect.precomputed`). Only the keyframes of ``--keyframes``
are kept; the log and the metrics say how many boxes and keyframes of the file lie outside them.
The outputs are the ``detect`` stage's.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pipeline.ava.formats import read_boxes, read_keyframes
from pipeline.cli import add_params_argument, add_person_box_outputs, read_params, run_stage, stage_parser
from pipeline.detect.outputs import write_outputs
from pipeline.detect.precomputed import distinct_boxes, on_keyframes
from pipeline.params import DetectorParams

STAGE = "detect_precomputed"


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.detect_precomputed", __doc__)
    parser.add_argument("--boxes", type=Path, required=True, help="SlowFast/LFB person-box CSV")
    add_person_box_outputs(parser)
    add_params_argument(parser, DetectorParams)
    args = parser.parse_args(argv)
    params = read_params(parser, DetectorParams, args.params)

    rows = read_boxes(args.boxes)
    boxes = distinct_boxes(rows)
    keyframes = read_keyframes(args.keyframes)
    kept, counts = on_keyframes(boxes, keyframes)
    threshold = params.score_threshold
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
    write_outputs(kept, keyframes, args.out, args.metrics, params, args.ground_truth, args.excluded, STAGE, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
