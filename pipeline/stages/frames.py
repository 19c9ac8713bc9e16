"""Frames stage: decode one video into its JPEG frame store (resized, at the models' frame rate).

    python -m pipeline.stages.frames --video V --video-id=ID [--keyframes K.csv] --out F.h5
        --params FramesParams --threads N

Reads the video and, with window ``clips``, the split's keyframes CSV (``--keyframes`` is given
exactly then); writes ``results/frames/{video}.h5`` in the layout of :mod:`pipeline.media.frames`.
ffmpeg decodes on ``--threads`` threads, and as many threads encode the JPEGs.
"""

from __future__ import annotations

import sys

from pipeline.cli import add_params_argument, read_params, run_stage, stage_parser
from pipeline.media.frames import extract_frames
from pipeline.params import FramesParams


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.frames", __doc__)
    parser.add_argument("--video", required=True, help="input video file")
    parser.add_argument("--video-id", required=True)
    parser.add_argument("--keyframes", help="video_id,timestamp CSV (window clips only)")
    parser.add_argument("--out", required=True, help="output frame store (.h5)")
    add_params_argument(parser, FramesParams)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    params = read_params(parser, FramesParams, args.params)
    if (params.window == "clips") != (args.keyframes is not None):
        parser.error(f"--keyframes goes with window clips, and only with it (window is {params.window!r})")
    n = extract_frames(args.video, args.out, args.video_id, params, keyframes=args.keyframes, threads=args.threads)
    print(f"{args.video_id}: {n} frames -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
