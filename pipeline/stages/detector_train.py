"""Detector training stage: fine-tune the person detector on the training split's ground-truth person boxes.

    python -m pipeline.stages.detector_train --frames F1.h5 F2.h5 ... \\
        --ground-truth results/dataset/train.gt.csv --out results/models/detector/detector.pt \\
        --log-csv results/models/detector/train_log.csv --params DetectorParams --threads N

``--frames``: the training videos' frame stores (video id = file stem). Each (video, keyframe) of
the ground truth is one training image: the stored frame nearest the keyframe, with one box per
person (:mod:`pipeline.detect.training`). The detector starts from the COCO checkpoint named in
``weights`` (reduced to the person class) or from random initialisation, seeded with ``seed``: the
same seed gives the same detector. The output holds the weights only
(``torch.load(weights_only=True)`` reads it), with a provenance sidecar that names the architecture
(the ``detect`` stage checks it); the log has a row per epoch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from pipeline.ava.formats import read_ground_truth
from pipeline.cli import add_params_argument, read_params, set_threads, stage_parser
from pipeline.detect.keyframes import KeyframeImages
from pipeline.detect.model import initial_detector
from pipeline.detect.training import KeyframeSamples, fit, training_keyframes
from pipeline.errors import InputError
from pipeline.params import DetectorParams, as_dict
from pipeline.store import atomic_path, write_log_csv, write_sidecar

STAGE = "detector_train"


def print_epoch(row: dict[str, float]) -> None:
    """One epoch's log row as a JSON line on stderr."""
    print(json.dumps({k: round(v, 5) for k, v in row.items()}), file=sys.stderr)


def train_detector(frame_files: list[Path], ground_truth: Path, out: Path, params: DetectorParams,
                   log_path: Path | None) -> list[dict[str, float]]:
    """Fine-tune the detector of ``params`` on ``ground_truth`` and save its weights to ``out``; returns the log."""
    keyframes = training_keyframes(read_ground_truth(ground_truth))
    if not keyframes:
        raise InputError(ground_truth, "no ground-truth boxes to train the detector on")
    torch.manual_seed(params.seed)   # the random initialisation too: same seed, same detector
    model = initial_detector(params)
    print(f"detector {params.arch} from {params.weights or 'random initialisation'}: "
          f"{len(keyframes)} keyframes, {sum(len(k.boxes) for k in keyframes)} person boxes, "
          f"{params.train.epochs} epochs", file=sys.stderr)
    with KeyframeImages(frame_files) as images:
        rows = fit(model, KeyframeSamples(keyframes, images), params.train, seed=params.seed,
                   frozen_norm=bool(params.weights), on_epoch=print_epoch)
    with atomic_path(out) as tmp:
        torch.save(model.state_dict(), tmp)
    write_sidecar(out, STAGE, {**as_dict(params), "n_keyframes": len(keyframes), "ground_truth": str(ground_truth)})
    if log_path is not None:
        write_log_csv(log_path, rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.detector_train", __doc__)
    parser.add_argument("--frames", type=Path, nargs="+", required=True,
                        help="frame stores of the training videos (video id = file stem)")
    parser.add_argument("--ground-truth", type=Path, required=True, help="training split's ground-truth CSV")
    parser.add_argument("--out", type=Path, required=True, help="detector weights (.pt)")
    parser.add_argument("--log-csv", type=Path, default=None, help="per-epoch loss log")
    add_params_argument(parser, DetectorParams)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    params = read_params(parser, DetectorParams, args.params)
    set_threads(args.threads)
    train_detector(args.frames, args.ground_truth, args.out, params, args.log_csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
