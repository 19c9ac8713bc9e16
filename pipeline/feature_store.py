"""Feature stores: the files of ROI features and context maps that the features stage writes and the
head and predict stages read (one per backbone and video), and how several backbones' are combined.

Rows are every ground-truth person box (when the split has ground truth) and every detected box of
the video's keyframes. Ground-truth boxes and the detections that overlap one (``training_boxes``)
carry labels and ``train_mask``; other detections have zero labels. Every keyframe has its context
map, with or without boxes.

Layout (``results/features/{backbone}/{split}/{video}.h5``):
- ``t`` int64 [K]: keyframe timestamps (AVA seconds), sorted
- ``box`` float32 [N, 4] normalized x1, y1, x2, y2; ``box_t`` int64 [N] timestamp of each row;
  ``box_score`` float32 [N] (1 for ground truth); ``box_source`` uint8 [N] (0 ground truth,
  1 detection); ``train_mask`` bool [N]; ``label`` uint8 [N, C] (label-map order)
- ``roi`` float16 [N, D]: ROI features; ``context`` float16 [K, D, h, w]: the time-averaged last
  feature map of each keyframe (the actor-target relation attends to it)
- attrs: video_id, label_ids (int64 [C]), input_height, input_width, spatial_stride, provenance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from pipeline.ava.formats import AvaRows, LabelMap
from pipeline.detect.training_boxes import DETECTION, training_boxes
from pipeline.errors import InputError
from pipeline.models.atr import outside_mask
from pipeline.params import ModelParams
from pipeline.store import atomic_path, set_h5_provenance


@dataclass
class FeatureRows:
    """The boxes of one video that get features."""

    boxes: AvaRows          # [N]; score 1 for ground truth
    labels: np.ndarray      # uint8 [N, C]
    source: np.ndarray      # uint8 [N]
    train_mask: np.ndarray  # bool [N]


def feature_rows(detections: AvaRows, ground_truth: AvaRows | None, label_map: LabelMap,
                 iou_threshold: float) -> FeatureRows:
    """Ground-truth persons and matched detections (labelled, in ``training_boxes`` order), then the
    unmatched detections (zero labels), sorted by timestamp (stable)."""
    n_classes = len(label_map)
    if ground_truth is None:
        rows = FeatureRows(detections, np.zeros((len(detections), n_classes), np.uint8),
                           np.full(len(detections), DETECTION, np.uint8), np.zeros(len(detections), bool))
    else:
        boxes, labels, source = training_boxes(ground_truth, detections, label_map, iou_threshold)
        matched = {_box_key(t, b) for t, b, s in zip(boxes.timestamp, boxes.box, source) if s == DETECTION}
        unmatched = np.array([_box_key(t, b) not in matched for t, b in zip(detections.timestamp, detections.box)],
                             dtype=bool)
        extra = detections.take(unmatched)
        rows = FeatureRows(
            AvaRows.concat([boxes, extra]),
            np.concatenate([labels.astype(np.uint8), np.zeros((len(extra), n_classes), np.uint8)]),
            np.concatenate([source.astype(np.uint8), np.full(len(extra), DETECTION, np.uint8)]),
            np.concatenate([np.ones(len(boxes), bool), np.zeros(len(extra), bool)]),
        )
    order = np.argsort(rows.boxes.timestamp, kind="stable")
    return FeatureRows(rows.boxes.take(order), rows.labels[order], rows.source[order], rows.train_mask[order])


def _box_key(timestamp: int, box: np.ndarray) -> tuple[int, bytes]:
    return int(timestamp), np.asarray(box, dtype=np.float32).tobytes()


def rows_of_video(rows: AvaRows, video_id: str) -> AvaRows:
    return rows.take(rows.video_id == video_id)


def write_features(path: str | Path, video_id: str, times: np.ndarray, rows: FeatureRows, roi: np.ndarray,
                   context: np.ndarray, input_hw: tuple[int, int], spatial_stride: int,
                   label_map: LabelMap, params: dict[str, Any]) -> None:
    """Write the features file of one video atomically (layout in the module docstring)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("t", data=times.astype(np.int64))
        h5.create_dataset("box", data=rows.boxes.box.astype(np.float32))
        h5.create_dataset("box_t", data=rows.boxes.timestamp.astype(np.int64))
        h5.create_dataset("box_score", data=rows.boxes.score.astype(np.float32))
        h5.create_dataset("box_source", data=rows.source.astype(np.uint8))
        h5.create_dataset("train_mask", data=rows.train_mask.astype(bool))
        h5.create_dataset("label", data=rows.labels.astype(np.uint8))
        h5.create_dataset("roi", data=_float16(roi, "roi"))
        h5.create_dataset("context", data=_float16(context, "context"))
        h5.attrs.update({
            "video_id": video_id, "label_ids": np.asarray(label_map.ids, dtype=np.int64),
            "input_height": input_hw[0], "input_width": input_hw[1], "spatial_stride": spatial_stride,
        })
        set_h5_provenance(h5, "features", params)


def _float16(values: np.ndarray, name: str) -> np.ndarray:
    """``values`` as float16; an error if they do not fit (the head would read inf)."""
    half = values.astype(np.float16)
    if not np.isfinite(half).all():
        raise ValueError(f"{name} features are not finite in float16 (max |value| {np.abs(values).max():.3g})")
    return half


@dataclass
class Features:
    """The rows of several features files, with their keyframes' context maps stacked.

    Context maps of different sizes are zero-padded at the bottom and right; ``attend`` is false
    there, as inside each row's box.
    """

    video_id: np.ndarray     # [N] str
    box: np.ndarray          # float32 [N, 4]
    box_t: np.ndarray        # int64 [N]
    box_score: np.ndarray    # float32 [N]
    box_source: np.ndarray   # uint8 [N]
    train_mask: np.ndarray   # bool [N]
    label: np.ndarray        # uint8 [N, C]
    roi: np.ndarray          # float32 [N, D]
    context: np.ndarray      # float32 [K, D', h, w], all files' keyframes
    frame_index: np.ndarray  # int64 [N], each row's keyframe in ``context``
    attend: np.ndarray       # bool [N, h, w], the context cells outside each row's box

    def __len__(self) -> int:
        return len(self.box_t)


def read_features(paths: list[str | Path], label_map: LabelMap) -> Features:
    """Read and join features files whose classes are ``label_map``'s."""
    parts = []
    for path in paths:
        with h5py.File(path, "r") as h5:
            if not np.array_equal(h5.attrs["label_ids"], np.asarray(label_map.ids)):
                raise InputError(path, "its classes are not the label map's")
            part = {name: h5[name][:] for name in
                    ("t", "box", "box_t", "box_score", "box_source", "train_mask", "label", "roi", "context")}
            part["video_id"] = str(h5.attrs["video_id"])
            stride = int(h5.attrs["spatial_stride"])
            part["cell"] = (stride / int(h5.attrs["input_width"]), stride / int(h5.attrs["input_height"]))
        if not np.isin(part["box_t"], part["t"]).all():
            raise InputError(path, "box_t has timestamps that are not in t")
        parts.append(part)
    if not parts:
        raise ValueError("no features file given")
    height = max(p["context"].shape[2] for p in parts)
    width = max(p["context"].shape[3] for p in parts)
    contexts, frame_index, attend, offset = [], [], [], 0
    for p in parts:
        k, _, h, w = p["context"].shape
        padded = np.zeros((k, p["context"].shape[1], height, width), np.float32)
        padded[:, :, :h, :w] = p["context"]
        contexts.append(padded)
        frame_index.append(offset + np.searchsorted(p["t"], p["box_t"]))
        attend_map = np.zeros((len(p["box_t"]), height, width), bool)
        attend_map[:, :h, :w] = outside_mask(torch.from_numpy(p["box"]), h, w, *p["cell"]).numpy()
        attend.append(attend_map)
        offset += k
    return Features(
        video_id=np.concatenate([np.full(len(p["box_t"]), p["video_id"]) for p in parts]).astype(str),
        box=np.concatenate([p["box"] for p in parts]),
        box_t=np.concatenate([p["box_t"] for p in parts]),
        box_score=np.concatenate([p["box_score"] for p in parts]),
        box_source=np.concatenate([p["box_source"] for p in parts]),
        train_mask=np.concatenate([p["train_mask"] for p in parts]),
        label=np.concatenate([p["label"] for p in parts]),
        roi=np.concatenate([p["roi"] for p in parts]).astype(np.float32),
        context=np.concatenate(contexts),
        frame_index=np.concatenate(frame_index).astype(np.int64),
        attend=np.concatenate(attend),
    )


FEATURE_COMBINES = ("concat", "add")
#: Fields that say which box a row is: equal in the features of every backbone of one video.
_ROW_FIELDS = ("video_id", "box_t", "box", "box_score", "box_source", "train_mask", "label")


def combine_features(parts: list[Features], how: str, with_context: bool) -> Features:
    """The features of several backbones for the same rows, combined (paper II.B (i) and (iv)).

    ``roi`` [N, D_i] -> [N, sum D_i] (``concat``) or [N, D] (``add``, every D_i equal); ``context``
    likewise along its channels when ``with_context`` (every map [K, D_i, h, w] of one size), else
    empty ([K, 0, h, w]: a linear head does not read it). Raises ValueError when the parts do not
    hold the same rows.
    """
    if how not in FEATURE_COMBINES:
        raise ValueError(f"unknown combine {how!r}: expected one of {', '.join(FEATURE_COMBINES)}")
    first = parts[0]
    for k, part in enumerate(parts[1:], start=1):
        for field in _ROW_FIELDS:
            a, b = getattr(first, field), getattr(part, field)
            if a.shape != b.shape or not np.array_equal(a, b):
                raise ValueError(f"features of backbone {k + 1} do not hold the rows of backbone 1: {field} differs")

    def join(arrays: list[np.ndarray], what: str) -> np.ndarray:
        if how == "concat":
            return np.concatenate(arrays, axis=1)
        if len({a.shape for a in arrays}) != 1:
            raise ValueError(f"add needs {what} of one shape, got {[a.shape[1:] for a in arrays]}")
        return np.sum(arrays, axis=0, dtype=np.float32)

    roi = join([p.roi for p in parts], "ROI features")
    if with_context:
        if len({p.context.shape[2:] for p in parts}) != 1:
            raise ValueError("the atr head needs context maps of one size from every backbone, got "
                             f"{[p.context.shape[2:] for p in parts]} (make their input_size and stride agree)")
        context = join([p.context for p in parts], "context maps")
    else:
        context = np.zeros((first.context.shape[0], 0, *first.context.shape[2:]), np.float32)
    return replace(first, roi=roi, context=context)


def read_model_features(groups: list[list[str | Path]], label_map: LabelMap, model: ModelParams) -> Features:
    """The features that ``model`` reads: one group of files per backbone, combined by
    :func:`combine_features` (its ``combine``; context kept for an ``atr`` head) when there are several."""
    if len(groups) != len(model.backbones):
        raise ValueError(f"the model reads {len(model.backbones)} backbones' features "
                         f"({', '.join(model.backbones)}), given {len(groups)} groups of files")
    parts = [read_features(group, label_map) for group in groups]
    if len(parts) == 1:
        return parts[0]
    return combine_features(parts, model.combine, with_context=model.head == "atr")
