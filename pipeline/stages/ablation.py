"""Ablation stage: models and fusions retrained on cached features over several seeds, with the mean
and spread of their mAP, of a label type's mAP and of its classes' AP (:mod:`pipeline.ablation`).

    python -m pipeline.stages.ablation --train BACKBONE F1.h5 ... [--train ...] --held BACKBONE G1.h5 ...
        [--held ...] --label-map L --ground-truth results/dataset/{split}.gt.csv
        [--excluded results/dataset/{split}.excluded.csv] --out results/ablation/summary.json
        --markdown results/ablation/summary.md --params AblationParams --threads N

``--train`` and ``--held`` once per backbone that a model of the ablation reads, its name first, then
its feature files of the train split and of the evaluated split. Writes the summary JSON (every
seed's figures, their mean, sample standard deviation, min and max; the comparisons; the fusions'
gains over their best member) with provenance, and the same as Markdown for the report.
"""

from __future__ import annotations

import sys

from pipeline.ablation import markdown, run_seed, summarize
from pipeline.ava.formats import read_excluded, read_ground_truth, read_label_map
from pipeline.cli import add_params_argument, read_params, run_stage, set_threads, stage_parser
from pipeline.feature_store import read_features
from pipeline.params import AblationParams, as_dict
from pipeline.store import provenance, write_json, write_text


def grouped(values: list[list[str]], flag: str) -> dict[str, list[str]]:
    """``--flag NAME FILE ...`` uses as {backbone: files}."""
    groups: dict[str, list[str]] = {}
    for name, *files in values:
        if not files:
            raise SystemExit(f"{flag} {name}: no feature files")
        groups[name] = files
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.ablation", __doc__)
    parser.add_argument("--train", nargs="+", action="append", required=True, help="BACKBONE then its train features")
    parser.add_argument("--held", nargs="+", action="append", required=True,
                        help="BACKBONE then its features of the evaluated split")
    parser.add_argument("--label-map", required=True)
    parser.add_argument("--ground-truth", required=True, help="the evaluated split's ground truth")
    parser.add_argument("--excluded", help="its excluded keyframes (evaluate variant 2019)")
    parser.add_argument("--out", required=True, help="summary JSON")
    parser.add_argument("--markdown", required=True, help="summary Markdown")
    add_params_argument(parser, AblationParams)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    params = read_params(parser, AblationParams, args.params)
    set_threads(args.threads)

    label_map = read_label_map(args.label_map)
    train_files, held_files = grouped(args.train, "--train"), grouped(args.held, "--held")
    needed = sorted({b for m in params.models.values() for b in m.backbones})
    missing = [b for b in needed if b not in train_files or b not in held_files]
    if missing:
        parser.error(f"no --train or --held features for backbones {', '.join(missing)}")
    train = {b: read_features(train_files[b], label_map) for b in needed}
    held = {b: read_features(held_files[b], label_map) for b in needed}
    gt = read_ground_truth(args.ground_truth, full_precision=True)
    excluded = read_excluded(args.excluded) if args.excluded and params.evaluate.variant == "2019" else None
    per_seed = {}
    for seed in params.seeds:
        print(f"seed {seed}", file=sys.stderr)
        per_seed[seed] = run_seed(seed, train, held, params.models, params.fusions, gt, excluded, label_map,
                                  params.label_type, params.evaluate)
    summary = summarize(per_seed, params.compare, params.fusions)
    summary.update({"split": params.split, "label_type": params.label_type,
                    "class_names": {str(a): label_map.name(a) for a in label_map.ids}})
    write_json(args.out, {**summary, "provenance": provenance("ablation", as_dict(params))})
    text = markdown(summary, label_map, params.label_type, params.split)
    write_text(args.markdown, text)
    print(text, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
