"""Flow stage: optical flow between consecutive stored frames of one video (the method of the params).

    python -m pipeline.stages.flow --frames F.h5 [--keyframes K.csv] --out O.h5 --params FlowParams --threads N

Reads the video's frame store and, when given, the split's keyframes CSV (then only the pairs
within ``context_s`` of a keyframe are computed); writes ``results/flow/{method}/{video}.h5`` in
the layout of :mod:`pipeline.media.flow`. Pairs are spread over ``--threads`` processes.
"""

from __future__ import annotations

import sys

from pipeline.cli import add_params_argument, read_params, run_stage, stage_parser
from pipeline.media.flow import compute_flow
from pipeline.params import FlowParams


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.flow", __doc__)
    parser.add_argument("--frames", required=True, help="input frame store (.h5)")
    parser.add_argument("--keyframes", help="video_id,timestamp CSV: only the pairs near keyframes")
    parser.add_argument("--out", required=True, help="output flow store (.h5)")
    add_params_argument(parser, FlowParams)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    params = read_params(parser, FlowParams, args.params)
    if args.keyframes is not None and params.context_s is None:
        parser.error("--keyframes needs context_s in --params")
    n = compute_flow(args.frames, args.out, params, keyframes=args.keyframes, threads=args.threads)
    print(f"{args.frames}: {n} {params.method} flow pairs -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
