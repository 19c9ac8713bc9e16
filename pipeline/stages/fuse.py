"""Fuse stage: late fusion of several models' logits on the same boxes (paper II.B (ii), (iii)).

    python -m pipeline.stages.fuse --logits results/predictions/{model}/{split}.logits.parquet ...
        --label-map L --out results/predictions/fusion-{name}/{split}.csv
        --out-logits results/predictions/fusion-{name}/{split}.logits.parquet --params FusionParams

The strategies are :mod:`pipeline.fusion`'s; the fused "logit" written for further fusion is the
logit of the fused probability.
"""

from __future__ import annotations

import sys

from pipeline.ava import formats
from pipeline.cli import add_params_argument, read_params, run_stage, stage_parser
from pipeline.fusion import fuse_probabilities, load_aligned, probability_logit
from pipeline.params import FusionParams, as_dict
from pipeline.scores import to_detections, write_logits
from pipeline.store import write_sidecar


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.fuse", __doc__)
    parser.add_argument("--logits", nargs="+", required=True, help="the models' {split}.logits.parquet")
    parser.add_argument("--label-map", required=True)
    parser.add_argument("--out", required=True, help="fused AVA detection CSV")
    parser.add_argument("--out-logits", required=True, help="fused logits parquet")
    add_params_argument(parser, FusionParams)
    args = parser.parse_args(argv)
    params = read_params(parser, FusionParams, args.params)
    if len(args.logits) != len(params.models):
        parser.error(f"--logits gives {len(args.logits)} files for the {len(params.models)} models "
                     f"{', '.join(params.models)}")
    label_map = formats.read_label_map(args.label_map)
    boxes, logits = load_aligned(args.logits, label_map)
    probs = fuse_probabilities(logits, params.strategy)
    provenance = {**as_dict(params), "inputs": args.logits}
    formats.write_detections(args.out, to_detections(boxes, probs, label_map))
    write_sidecar(args.out, "fuse", provenance)
    write_logits(args.out_logits, boxes, probability_logit(probs), label_map, "fuse", provenance)
    print(f"fused {len(args.logits)} models ({params.strategy}) on {len(boxes)} boxes -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
