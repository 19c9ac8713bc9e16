"""Head stage: train a classification head (``linear`` or ``atr``) on a model's cached train features.

    python -m pipeline.stages.head --features F1.h5 F2.h5 ... [--features G1.h5 ...] --label-map L
        --out results/models/{model}/head.pt --log-csv results/models/{model}/train_log.csv
        --params ModelParams --threads N

``--features`` once per backbone of the model (their features are combined row by row: the
model's ``combine``). Rows with ``train_mask`` (ground-truth persons and the detections that overlap
one) are the training set; the loss is binary cross-entropy with logits (multi-label). Writes the
head file of :mod:`pipeline.heads` with a provenance sidecar, and the CSV log (epoch, loss, seconds).
The head trains on ``compute.device`` (CUDA when the job has a GPU) with ``compute.precision``'s
autocast there; on the CPU in float32, so that two runs give identical weights.
"""

from __future__ import annotations

import sys

from pipeline.ava.formats import read_label_map
from pipeline.cli import add_features_argument, add_params_argument, read_params, run_stage, set_threads, stage_parser
from pipeline.devices import select_device
from pipeline.feature_store import read_model_features
from pipeline.heads import save_head, train_head
from pipeline.params import ModelParams, as_dict
from pipeline.store import write_log_csv, write_sidecar

__all__ = ["main", "train_head"]


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.head", __doc__)
    add_features_argument(parser, "feature stores of the training split")
    parser.add_argument("--label-map", required=True)
    parser.add_argument("--out", required=True, help="head weights (.pt)")
    parser.add_argument("--log-csv", required=True, help="per-epoch loss log")
    add_params_argument(parser, ModelParams)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    params = read_params(parser, ModelParams, args.params)
    set_threads(args.threads)

    label_map = read_label_map(args.label_map)
    features = read_model_features(args.features, label_map, params)
    device = select_device(params.compute.device)
    print(f"training a {params.head} head on {int(features.train_mask.sum())} of {len(features)} rows ({device})",
          file=sys.stderr)
    log: list[dict[str, float]] = []
    head = train_head(features, params, log, device)
    save_head(args.out, head, params.head, features, label_map)
    write_sidecar(args.out, "head", as_dict(params))
    write_log_csv(args.log_csv, log)
    write_sidecar(args.log_csv, "head", as_dict(params))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
