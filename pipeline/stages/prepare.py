"""Prepare stage: cut one full movie to its annotated segment and check that no frame was lost.

    python -m pipeline.stages.prepare --video MOVIE --out results/prepared/V.mp4
        --report results/prepared/V.json --params PrepareParams --threads N

Cuts [start, start + duration) of the movie (:mod:`pipeline.media.segment`: H.264, and AAC when
the movie has audio) into ``--out``, whose stem is the video id, with a provenance sidecar when
the cut is good. ``--report`` (JSON) holds the provenance and ``videos``: one row with the frames
expected from the source segment and found in the cut, and the problem when the check fails; then
the command exits with status 1.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from pipeline.cli import add_params_argument, read_params, run_stage, stage_parser
from pipeline.errors import InputError
from pipeline.media.segment import prepare_video
from pipeline.params import PrepareParams, as_dict
from pipeline.store import provenance, write_json, write_sidecar


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.prepare", __doc__)
    parser.add_argument("--video", required=True, help="the full movie")
    parser.add_argument("--out", required=True, help="the cut (.mp4); its stem is the video id")
    parser.add_argument("--report", required=True, help="JSON report: frames expected and found")
    add_params_argument(parser, PrepareParams)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    params = read_params(parser, PrepareParams, args.params)
    source = Path(args.video)
    if not source.is_file():
        raise InputError(source, "no such movie")
    check = prepare_video(source, Path(args.out), params.start, params.duration, args.threads)
    if check.ok:
        write_sidecar(check.out, "prepare", {**as_dict(params), "source": str(source)})
    write_json(args.report, {"provenance": provenance("prepare", as_dict(params)),
                             "videos": [{**dataclasses.asdict(check), "ok": check.ok}]})
    status = "ok" if check.ok else f"FAILED: {check.problem}"
    print(f"{check.video_id}: {check.cut_frames}/{check.expected_frames} frames: {status}", file=sys.stderr)
    return 0 if check.ok else 1


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
