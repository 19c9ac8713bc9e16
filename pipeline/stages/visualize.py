"""Visualize stage: one video drawn with its person boxes, tracks and top actions, and a contact sheet.

    python -m pipeline.stages.visualize --video V --video-id=ID --logits results/predictions/{model}/{split}.logits.parquet
        --keyframes KEYFRAMES.csv --label-map L --out results/visualize/{video}.mp4
        --contact-sheet results/visualize/{video}.contact_sheet.png --params VisualizeParams

Reads the logits table of the drawn model or fusion (``infer.predictions``) on the video's split
(boxes with their detector scores, one logit per class) and the split's keyframes. Each person
box keeps one colour along its track (an IoU tracker across keyframes), with its top
``top_k`` actions at probability ``score_threshold`` or more; between keyframes, at the video's
own frame rate, a track's box moves linearly from one keyframe to the next, and a box seen at one
keyframe only is held half a second around it. The mp4 keeps every frame of the source, its
frame rate and its audio (AAC) when it has some; small videos are drawn larger
(:func:`pipeline.visualize.render.output_size`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.ava.formats import read_keyframes, read_label_map
from pipeline.cli import add_params_argument, read_params, run_stage, stage_parser
from pipeline.errors import InputError
from pipeline.params import VisualizeParams
from pipeline.scores import read_logits
from pipeline.visualize.annotations import keyframes_of_video
from pipeline.visualize.render import render


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.visualize", __doc__)
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--video-id", required=True)
    parser.add_argument("--logits", type=Path, required=True, help="logits table of the drawn predictions")
    parser.add_argument("--keyframes", type=Path, required=True, help="keyframes CSV of the video's split")
    parser.add_argument("--label-map", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="annotated video (.mp4)")
    parser.add_argument("--contact-sheet", type=Path, required=True, help="contact sheet (.png)")
    add_params_argument(parser, VisualizeParams)
    args = parser.parse_args(argv)
    params = read_params(parser, VisualizeParams, args.params)
    label_map = read_label_map(args.label_map)
    keyframes = read_keyframes(args.keyframes)
    times = keyframes.timestamp[keyframes.video_id == args.video_id]
    if len(times) == 0:
        raise InputError(args.keyframes, f"no keyframe of video {args.video_id!r}")
    boxes, logits = read_logits(args.logits, label_map)
    drawn = keyframes_of_video(boxes, logits, label_map, args.video_id, times, params.time_offset,
                               params.score_threshold, params.top_k, params.box_threshold)
    info = render(args.video, drawn, args.out, args.contact_sheet, params.tiles, params.tile_width,
                  f"{args.video_id} {params.predictions}")
    n_persons = sum(len(k.persons) for k in drawn)
    n_tracks = len({p.track for k in drawn for p in k.persons})
    print(json.dumps({**asdict(info), "keyframes": len(drawn), "boxes": n_persons, "tracks": n_tracks,
                      "mean_boxes_per_keyframe": round(float(np.mean([len(k.persons) for k in drawn])), 3)}),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
