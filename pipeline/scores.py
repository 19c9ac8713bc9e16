"""Per-box class scores: the logits table that fusion reads, and AVA detection rows.

The logits parquet (``results/predictions/{model}/{split}.logits.parquet``) has a row per box:
``video_id`` (string), ``timestamp`` (int64), ``x1, y1, x2, y2``, ``box_score`` (float32), and one
float32 column ``logit_{action_id}`` per class in label-map order; rows sorted by
(video_id, timestamp, x1, y1, x2, y2); provenance in the schema metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.ava import formats
from pipeline.errors import InputError
from pipeline.store import atomic_path, provenance

BOX_COLUMNS = ("x1", "y1", "x2", "y2")


def logit_column(action_id: int) -> str:
    return f"logit_{action_id}"


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, same shape and float32."""
    x = np.asarray(x, dtype=np.float64)
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


def box_order(boxes: formats.AvaRows) -> np.ndarray:
    """Indices that sort boxes by (video_id, timestamp, x1, y1, x2, y2): int64 [N]."""
    b = boxes.box
    return np.lexsort((b[:, 3], b[:, 2], b[:, 1], b[:, 0], boxes.timestamp, boxes.video_id)).astype(np.int64)


def write_logits(path: str | Path, boxes: formats.AvaRows, logits: np.ndarray, label_map: formats.LabelMap,
                 stage: str, params: dict[str, Any]) -> None:
    """Write a logits table; ``boxes`` [N] and ``logits`` float [N, C] in label-map order are sorted first."""
    if logits.shape != (len(boxes), len(label_map)):
        raise ValueError(f"logits have shape {logits.shape}, expected ({len(boxes)}, {len(label_map)})")
    order = box_order(boxes)
    boxes, logits = boxes.take(order), np.asarray(logits, dtype=np.float32)[order]
    columns: dict[str, Any] = {
        "video_id": pa.array(boxes.video_id.tolist(), pa.string()),
        "timestamp": pa.array(boxes.timestamp, pa.int64()),
        **{name: pa.array(boxes.box[:, i], pa.float32()) for i, name in enumerate(BOX_COLUMNS)},
        "box_score": pa.array(boxes.score, pa.float32()),
        **{logit_column(a): pa.array(logits[:, i], pa.float32()) for i, a in enumerate(label_map.ids)},
    }
    table = pa.table(columns).replace_schema_metadata(
        {k: v.encode() for k, v in provenance(stage, params).items()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_logits(path: str | Path, label_map: formats.LabelMap) -> tuple[formats.AvaRows, np.ndarray]:
    """Read a logits table: boxes (AvaRows [N], score = box score) and logits float32 [N, C] in label-map order."""
    table = pq.read_table(path)
    wanted = ["video_id", "timestamp", *BOX_COLUMNS, "box_score"] + [logit_column(a) for a in label_map.ids]
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise InputError(path, f"logits table lacks columns {missing[:5]}{'...' if len(missing) > 5 else ''}")
    n = table.num_rows
    boxes = formats.AvaRows(
        video_id=np.asarray(table.column("video_id").to_pylist(), dtype=str),
        timestamp=table.column("timestamp").to_numpy().astype(np.int64),
        box=np.stack([table.column(c).to_numpy() for c in BOX_COLUMNS], axis=1).astype(np.float32).reshape(n, 4),
        action_id=np.full(n, -1, np.int64),
        person_id=np.full(n, -1, np.int64),
        score=table.column("box_score").to_numpy().astype(np.float32),
    )
    logits = np.stack([table.column(logit_column(a)).to_numpy() for a in label_map.ids], axis=1)
    return boxes, logits.astype(np.float32).reshape(n, len(label_map))


def to_detections(boxes: formats.AvaRows, scores: np.ndarray, label_map: formats.LabelMap) -> formats.AvaRows:
    """AVA detection rows, one per (box, class): ``scores`` float [N, C] in label-map order -> AvaRows [N * C]."""
    n, c = scores.shape
    if n != len(boxes) or c != len(label_map):
        raise ValueError(f"scores have shape {scores.shape}, expected ({len(boxes)}, {len(label_map)})")
    rows = boxes.take(np.repeat(np.arange(n), c))
    rows.action_id = np.tile(np.asarray(label_map.ids, dtype=np.int64), n)
    rows.score = np.asarray(scores, dtype=np.float32).reshape(-1)
    return rows
