"""Audio stage: one log-mel window per second of the AVA timeline of one video.

    python -m pipeline.stages.audio --video V --video-id=ID --out A.h5 --params AudioParams

Reads the video (probed for its duration: one decode); writes ``results/audio/{video}.h5`` in the
layout of :mod:`pipeline.media.audio` (silence and ``has_audio = False`` without an audio track).
"""

from __future__ import annotations

import sys

from pipeline.cli import add_params_argument, read_params, run_stage, stage_parser
from pipeline.media.audio import compute_audio
from pipeline.media.probe import probe
from pipeline.params import AudioParams


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.audio", __doc__)
    parser.add_argument("--video", required=True, help="input video file")
    parser.add_argument("--video-id", required=True)
    parser.add_argument("--out", required=True, help="output audio store (.h5)")
    add_params_argument(parser, AudioParams)
    args = parser.parse_args(argv)
    params = read_params(parser, AudioParams, args.params)
    n = compute_audio(args.video, args.out, args.video_id, probe(args.video).duration_s, params)
    print(f"{args.video_id}: {n} audio windows -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
