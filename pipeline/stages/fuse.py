"""Fuse stage: late fusion of several models' logits on the same boxes (paper II.B (ii), (iii)).

    python -m pipeline.stages.fuse --logits results/predictions/{model}/{split}.logits.parquet ...
        --label-map L --out results/predictions/fusion-{name}/{split}.csv
        --out-logits results/predictions/fusion-{name}/{split}.logits.parquet --params FusionParams
        [--select-evaluations results/eval/{model}/{select_split}.json ...]

The strategies are :mod:`pipeline.fusion`'s; the fused "logit" written for further fusion is the
logit of the fused probability. ``topk_logit`` chooses, per class, the k = n // 2 models of best AP
on the validation split ``select_split``: ``--select-evaluations`` gives the members' evaluation
files of that split, in the order of ``models`` (they are made from the members' own predictions, so
the DAG has no cycle). The models chosen per class go to the provenance sidecar.
"""

from __future__ import annotations

import sys

import numpy as np

from pipeline.ava import formats
from pipeline.cli import add_params_argument, read_params, run_stage, stage_parser
from pipeline.fusion import SELECTING, fuse_probabilities, load_aligned, probability_logit, read_class_ap, select_topk
from pipeline.params import FusionParams, as_dict
from pipeline.scores import to_detections, write_logits
from pipeline.store import write_sidecar


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.fuse", __doc__)
    parser.add_argument("--logits", nargs="+", required=True, help="the models' {split}.logits.parquet")
    parser.add_argument("--label-map", required=True)
    parser.add_argument("--out", required=True, help="fused AVA detection CSV")
    parser.add_argument("--out-logits", required=True, help="fused logits parquet")
    parser.add_argument("--select-evaluations", nargs="+", default=[],
                        help="topk_logit: each model's evaluation on the validation split, in models' order")
    add_params_argument(parser, FusionParams)
    args = parser.parse_args(argv)
    params = read_params(parser, FusionParams, args.params)
    if len(args.logits) != len(params.models):
        parser.error(f"--logits gives {len(args.logits)} files for the {len(params.models)} models "
                     f"{', '.join(params.models)}")
    selecting = params.strategy in SELECTING
    if selecting and len(args.select_evaluations) != len(params.models):
        parser.error(f"{params.strategy} needs --select-evaluations, one per model ({', '.join(params.models)}), "
                     f"got {len(args.select_evaluations)}")
    if not selecting and args.select_evaluations:
        parser.error(f"{params.strategy} chooses no models: --select-evaluations does not apply")
    label_map = formats.read_label_map(args.label_map)
    boxes, logits = load_aligned(args.logits, label_map)
    provenance = {**as_dict(params), "inputs": args.logits}
    selection = None
    if selecting:
        ap = np.stack([read_class_ap(path, label_map) for path in args.select_evaluations])
        selection = select_topk(ap)
        provenance["selected"] = {str(a): [m for m, chosen in zip(params.models, selection[:, c]) if chosen]
                                  for c, a in enumerate(label_map.ids)}
        provenance["select_evaluations"] = args.select_evaluations
    probs = fuse_probabilities(logits, params.strategy, selection)
    formats.write_detections(args.out, to_detections(boxes, probs, label_map))
    write_sidecar(args.out, "fuse", provenance)
    write_logits(args.out_logits, boxes, probability_logit(probs), label_map, "fuse", provenance)
    print(f"fused {len(args.logits)} models ({params.strategy}) on {len(boxes)} boxes -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
