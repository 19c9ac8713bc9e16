"""Command line: ``python -m pipeline.synth --out DIR --size tiny|demo|ava --seed N [overrides]``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from pipeline.synth.dataset import SIZES, generate, resolve_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.synth", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="dataset directory to write")
    parser.add_argument("--size", choices=sorted(SIZES), default="demo", help="preset (default: demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--videos-per-split", help="N for every split, or e.g. train=3,val=2")
    parser.add_argument("--duration", type=int, help="seconds per video")
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--fps", help="frame rates to mix, e.g. 25,30 (the first is the most common)")
    parser.add_argument("--params", default="{}",
                        help="JSON with the same overrides (videos_per_split, duration, width, height, fps); "
                             "command-line options win")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                        help="videos rendered in parallel (default: min(2, cores))")
    args = parser.parse_args(argv)
    overrides = json.loads(args.params)
    if not isinstance(overrides, dict):
        parser.error("--params must be a JSON object")
    for key in ("videos_per_split", "duration", "width", "height", "fps"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    try:
        config = resolve_config(args.size, overrides)
    except ValueError as err:
        parser.error(str(err))
    generate(args.out, config, args.seed, args.size, threads=max(1, args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
