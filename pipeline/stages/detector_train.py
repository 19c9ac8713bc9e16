"""Detector training stage: fine-tune the person detector on the training split's ground-truth person boxes.

    python -m pipeline.stages.detector_train --frames F1.h5 F2.h5 ... \\
        --ground-truth results/dataset/train.gt.csv --out results/models/detector/detector.pt \\
        --log-csv results/models/detector/train_log.csv --params DetectorParams --threads N

    python -m torch.distributed.run --standalone --nproc_per_node=P -m pipeline.stages.detector_train ...

``--frames``: the training videos' frame stores (video id = file stem). Each (video, keyframe) of
the ground truth is one training image: the stored frame nearest the keyframe, with one box per
person (:mod:`pipeline.detect.training`). The detector starts from the COCO checkpoint named in
``weights`` (reduced to the person class) or from random initialisation, seeded with ``seed``: the
same seed gives the same detector. The output holds the weights only
(``torch.load(weights_only=True)`` reads it), with a provenance sidecar that names the architecture
(the ``detect`` stage checks it); the log has a row per epoch.

It runs on ``compute.device`` (CUDA in mixed precision at ``compute.precision``, or the CPU in float32)
with ``compute.loader_workers`` DataLoader workers. Under torchrun, each of the P processes (one per
GPU, NCCL; or CPU processes, gloo) takes its share of every batch of ``train.batch_size`` images
(DistributedDataParallel); ``--threads`` are each process's. Rank 0 alone writes. After every epoch
it saves the training state beside the output (``{out}.resume.pt``, :mod:`pipeline.training_state`);
a training started again with the same parameters goes on from there and ends where an
uninterrupted one ends (bit-identical on the CPU); the state goes once the output is written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from pipeline.ava.formats import read_ground_truth
from pipeline.cli import add_params_argument, read_params, run_stage, set_threads, stage_parser
from pipeline.detect.keyframes import KeyframeImages
from pipeline.detect.model import initial_detector
from pipeline.detect.training import EpochEnd, KeyframeSamples, fit, training_keyframes
from pipeline.devices import Processes, process_group, processes_from_env, select_device
from pipeline.errors import InputError
from pipeline.params import DetectorParams, as_dict, to_json
from pipeline.store import atomic_path, write_log_csv, write_sidecar
from pipeline.training_state import load_state, remove_state, save_state

STAGE = "detector_train"


def print_epoch(row: dict[str, float]) -> None:
    """One epoch's log row as a JSON line on stderr."""
    print(json.dumps({k: round(v, 5) for k, v in row.items()}), file=sys.stderr)


def train_detector(frame_files: list[Path], ground_truth: Path, out: Path, params: DetectorParams,
                   log_path: Path | None, processes: Processes | None = None) -> list[dict[str, float]]:
    """Fine-tune the detector of ``params`` on ``ground_truth`` and save its weights to ``out`` (rank 0);
    returns the log. ``processes``: this process's place among torchrun's (from the environment)."""
    processes = processes or processes_from_env()
    device = select_device(params.compute.device, processes.local_rank)
    keyframes = training_keyframes(read_ground_truth(ground_truth))
    if not keyframes:
        raise InputError(ground_truth, "no ground-truth boxes to train the detector on")
    params_json = to_json(params)

    def end_of_epoch(end: EpochEnd) -> None:
        if processes.is_main:
            print_epoch(end.row)
            save_state(out, params_json, end.epochs_done, end.model, end.optimizer, end.log, extra=end.extra)

    with process_group(processes, device):
        torch.manual_seed(params.seed)   # the random initialisation too: same seed, same detector
        model = initial_detector(params)
        if processes.is_main:
            print(f"detector {params.arch} from {params.weights or 'random initialisation'}: "
                  f"{len(keyframes)} keyframes, {sum(len(k.boxes) for k in keyframes)} person boxes, "
                  f"{params.train.epochs} epochs on {device} ({processes.world_size} process(es))", file=sys.stderr)
        with KeyframeImages(frame_files) as images:
            rows = fit(model, KeyframeSamples(keyframes, images), params.train, seed=params.seed,
                       frozen_norm=bool(params.weights), on_epoch=end_of_epoch, device=device,
                       precision=params.compute.precision, loader_workers=params.compute.loader_workers,
                       processes=processes, resume=load_state(out, params_json))
    if processes.is_main:
        with atomic_path(out) as tmp:
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp)
        write_sidecar(out, STAGE, {**as_dict(params), "n_keyframes": len(keyframes),
                                   "ground_truth": str(ground_truth), "processes": processes.world_size})
        if log_path is not None:
            write_log_csv(log_path, rows)
        remove_state(out)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.detector_train", __doc__)
    parser.add_argument("--frames", type=Path, nargs="+", required=True,
                        help="frame stores of the training videos (video id = file stem)")
    parser.add_argument("--ground-truth", type=Path, required=True, help="training split's ground-truth CSV")
    parser.add_argument("--out", type=Path, required=True, help="detector weights (.pt)")
    parser.add_argument("--log-csv", type=Path, default=None, help="per-epoch loss log")
    add_params_argument(parser, DetectorParams)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each process")
    args = parser.parse_args(argv)
    params = read_params(parser, DetectorParams, args.params)
    set_threads(args.threads)
    train_detector(args.frames, args.ground_truth, args.out, params, args.log_csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
