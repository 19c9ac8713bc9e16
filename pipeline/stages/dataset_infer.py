"""Dataset stage of a video without annotations: probe it and list its keyframes for inference.

    python -m pipeline.stages.dataset_infer --video V --video-id=ID --split S
        --keyframes results/infer/{video}/keyframes.csv --info results/infer/{video}/video.json
        --params InferVideoParams

Writes the video's ``video_id,timestamp`` keyframes, every integer second of its own timeline
(``time_offset``, 0 by default: timestamps are seconds of the video) from ``time_offset +
keyframe_margin`` to ``time_offset + duration - keyframe_margin``, and its manifest row as JSON
(:class:`pipeline.data.manifest.VideoInfo`). Nothing here reads or needs ground truth. A video too
short for one keyframe, or one the probe refuses, is an error naming the file.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from pipeline.ava import formats
from pipeline.cli import add_params_argument, read_params, run_stage, stage_parser
from pipeline.data.manifest import keyframes_for_split, probe_video, video_id_problem
from pipeline.errors import InputError
from pipeline.params import InferVideoParams
from pipeline.store import write_json


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.dataset_infer", __doc__)
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--video-id", required=True)
    parser.add_argument("--split", required=True, help="the inference split of this video")
    parser.add_argument("--keyframes", type=Path, required=True, help="output keyframes CSV")
    parser.add_argument("--info", type=Path, required=True, help="output manifest row (JSON)")
    add_params_argument(parser, InferVideoParams)
    args = parser.parse_args(argv)
    params = read_params(parser, InferVideoParams, args.params)
    problem = video_id_problem(args.video_id)
    if problem:
        raise InputError(args.video, problem)
    info = probe_video(args.video_id, args.split, args.video, params.time_offset)
    keyframes = keyframes_for_split([info], None, set(), params.keyframe_margin)
    if len(keyframes) == 0:
        raise InputError(args.video, f"{info.duration_s:.2f} s long: no keyframe between {params.keyframe_margin} s "
                                     f"from its start and from its end (infer.keyframe_margin)")
    formats.write_keyframes(args.keyframes, zip(keyframes.video_id.tolist(), keyframes.timestamp.tolist()))
    write_json(args.info, asdict(info))
    print(f"{args.video_id}: {info.duration_s:.2f} s, {info.width}x{info.height} at {info.fps:.3f} fps, "
          f"{len(keyframes)} keyframes -> {args.keyframes}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
