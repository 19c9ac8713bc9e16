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
import time

import numpy as np
import torch
from torch import nn

from pipeline.ava.formats import read_label_map
from pipeline.cli import add_features_argument, add_params_argument, read_params, run_stage, set_threads, stage_parser
from pipeline.feature_store import Features, read_model_features
from pipeline.devices import autocast, grad_scaler, select_device
from pipeline.heads import head_logits, save_head, to_device
from pipeline.models.optim import make_optimizer
from pipeline.models.registry import build_head
from pipeline.params import ModelParams, as_dict
from pipeline.store import write_log_csv, write_sidecar


def train_head(features: Features, params: ModelParams, log: list[dict[str, float]] | None = None,
               device: torch.device | None = None) -> nn.Module:
    """Train the head of ``params`` on the rows with ``train_mask`` on ``device`` (default: ``params.compute``'s);
    appends {epoch, loss, seconds} to ``log``. Forward passes under ``params.compute.precision``'s
    autocast on CUDA (fp16 with a loss scaler); on the CPU in float32, deterministic for the seed."""
    device = device or select_device(params.compute.device)
    precision = params.compute.precision
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    settings = params.train
    rows = np.flatnonzero(features.train_mask)
    if len(rows) == 0:
        raise ValueError("no training row (train_mask) in the features")
    head = build_head(params.head, features.roi.shape[1], features.context.shape[1], features.label.shape[1])
    head.to(device)
    optimizer = make_optimizer(settings.optimizer, head.parameters(), settings.lr, settings.weight_decay)
    scaler = grad_scaler(device, precision)
    loss_fn = nn.BCEWithLogitsLoss()
    start = time.monotonic()
    head.train()
    for epoch in range(1, settings.epochs + 1):
        order = rng.permutation(rows)
        total = torch.zeros((), dtype=torch.float64, device=device)   # summed on the device: no sync per step
        for i in range(0, len(order), settings.batch_size):
            index = np.sort(order[i:i + settings.batch_size])
            labels = to_device(features.label[index].astype(np.float32), device)
            with autocast(device, precision):
                logits = head_logits(head, features, index)
            loss = loss_fn(logits.float(), labels)
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.detach().double() * len(index)
        row = {"epoch": epoch, "loss": total.item() / len(rows), "seconds": time.monotonic() - start}
        if log is not None:
            log.append(row)
        if epoch == 1 or epoch % 10 == 0 or epoch == settings.epochs:
            print(f"epoch {epoch}: loss {row['loss']:.4f} ({row['seconds']:.1f} s)", file=sys.stderr)
    return head.eval()


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
