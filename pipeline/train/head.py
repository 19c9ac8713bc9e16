"""Head stage: train a classification head (``linear`` or ``atr``) on cached ROI features.

Rows with ``train_mask`` (ground-truth persons and the detections that overlap one) are the
training set; the loss is binary cross-entropy with logits (multi-label). Writes ``head.pt``
(weights only: ``{"head": state_dict, "kind", "roi_dim", "context_dim", "label_ids"}``) with a
provenance sidecar, and a CSV log (epoch, loss, seconds).

Params (a config ``models`` entry plus ``seed``): backbone (or backbones, with combine: concat |
add, whose features are combined row by row), head (linear | atr), train {epochs, lr, batch_size,
weight_decay}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.ava.formats import read_label_map
from pipeline.features import Features, add_features_argument, read_model_features
from pipeline.models.atr import AtrHead
from pipeline.models.registry import build_head
from pipeline.store import atomic_path, write_sidecar, write_text
from pipeline.train.finetune import log_csv


def head_logits(head: nn.Module, features: Features, index: np.ndarray) -> torch.Tensor:
    """Logits float32 ``[len(index), C]`` of the rows ``index`` of ``features``."""
    roi = torch.from_numpy(features.roi[index])
    if isinstance(head, AtrHead):
        frames, frame_index = np.unique(features.frame_index[index], return_inverse=True)
        return head(roi, torch.from_numpy(features.context[frames]), torch.from_numpy(frame_index.astype(np.int64)),
                    torch.from_numpy(features.attend[index]))
    return head(roi)


def train_head(features: Features, params: dict[str, Any], log: list[dict[str, float]] | None = None) -> nn.Module:
    """Train the head of ``params`` on the rows with ``train_mask``; appends {epoch, loss, seconds} to ``log``."""
    seed = int(params.get("seed", 0))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    settings = params["train"]
    rows = np.flatnonzero(features.train_mask)
    if len(rows) == 0:
        raise ValueError("no training row (train_mask) in the features")
    head = build_head(params["head"], features.roi.shape[1], features.context.shape[1], features.label.shape[1])
    optimizer = torch.optim.AdamW(head.parameters(), lr=float(settings["lr"]),
                                  weight_decay=float(settings["weight_decay"]))
    loss_fn = nn.BCEWithLogitsLoss()
    batch_size = int(settings["batch_size"])
    start = time.monotonic()
    head.train()
    for epoch in range(1, int(settings["epochs"]) + 1):
        order = rng.permutation(rows)
        total = 0.0
        for i in range(0, len(order), batch_size):
            index = np.sort(order[i:i + batch_size])
            loss = loss_fn(head_logits(head, features, index), torch.from_numpy(features.label[index].astype(np.float32)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        row = {"epoch": epoch, "loss": total / len(rows), "seconds": time.monotonic() - start}
        if log is not None:
            log.append(row)
        if epoch == 1 or epoch % 10 == 0 or epoch == int(settings["epochs"]):
            print(f"epoch {epoch}: loss {row['loss']:.4f} ({row['seconds']:.1f} s)", file=sys.stderr)
    return head.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.train.head", description=__doc__.splitlines()[0])
    add_features_argument(parser, "features files of the training split")
    parser.add_argument("--label-map", required=True)
    parser.add_argument("--out", required=True, help="head weights (.pt)")
    parser.add_argument("--log-csv", required=True, help="per-epoch loss log")
    parser.add_argument("--params", required=True, help="models entry + seed, as JSON")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    params = json.loads(args.params)
    torch.set_num_threads(args.threads)

    label_map = read_label_map(args.label_map)
    features = read_model_features(args.features, label_map, params)
    print(f"training a {params['head']} head on {int(features.train_mask.sum())} of {len(features)} rows",
          file=sys.stderr)
    log: list[dict[str, float]] = []
    head = train_head(features, params, log)
    with atomic_path(args.out) as tmp:
        torch.save({"head": head.state_dict(), "kind": params["head"], "roi_dim": features.roi.shape[1],
                    "context_dim": features.context.shape[1], "label_ids": list(label_map.ids)}, tmp)
    write_sidecar(args.out, "head", params)
    write_text(args.log_csv, log_csv(log))
    write_sidecar(args.log_csv, "head", params)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
