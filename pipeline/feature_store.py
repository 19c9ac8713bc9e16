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
  feature map of each keyframe (the actor-target relation attends to it), or [K, D, T, h, w] with the
  backbone's ``context_frames`` T > 1 (time bins: the relation through space and time)
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


#: Feature arrays whose float32 size is at most this are read into memory at once; larger ones
#: (AVA's context maps: hundreds of GB) are read from the files a batch of rows at a time.
CACHE_BYTES = 1 << 30


class LazyRows:
    """An array ``[N, ...]`` of float32 rows spread over HDF5 files, read when indexed.

    ``sources``: (path, dataset name, first global row, number of rows) per file, in row order;
    ``shape``: the whole array's shape (rows of a file with a smaller map are zero-padded at the
    bottom and right of their last two axes). ``lazy[index]`` (int array or slice) reads only those
    rows, file by file; ``np.asarray(lazy)`` reads everything. Files stay open once read.
    """

    def __init__(self, sources: list[tuple[str, str, int, int]], shape: tuple[int, ...]):
        self.sources, self.shape = sources, tuple(shape)
        self.starts = np.array([s[2] for s in sources], np.int64)
        self.dtype = np.dtype(np.float32)
        self._files: dict[str, h5py.File] = {}

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * 4

    def _file(self, path: str) -> h5py.File:
        if path not in self._files:
            self._files[path] = h5py.File(path, "r")
        return self._files[path]

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, tuple):
            return self[index[0]][(slice(None), *index[1:])]
        rows = np.arange(self.shape[0])[index] if not isinstance(index, np.ndarray) or index.dtype == bool \
            else np.asarray(index, np.int64)
        rows = np.atleast_1d(rows)
        out = np.zeros((len(rows), *self.shape[1:]), np.float32)
        owner = np.searchsorted(self.starts, rows, side="right") - 1
        for k in np.unique(owner):
            path, name, start, _ = self.sources[k]
            picked = np.flatnonzero(owner == k)
            local, inverse = np.unique(rows[picked] - start, return_inverse=True)
            values = self._file(path)[name][local]        # h5py reads increasing indices
            region = (slice(None),) + tuple(slice(0, n) for n in values.shape[1:])
            out[(picked,) + region[1:]] = values[inverse]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[np.arange(self.shape[0])]
        return whole if dtype is None else whole.astype(dtype)

    def close(self) -> None:
        for h5 in self._files.values():
            h5.close()
        self._files = {}


class CombinedRows:
    """Several row arrays ``[N, D_i, ...]`` combined along axis 1 when indexed: ``concat`` or ``add``."""

    def __init__(self, parts: list[Any], how: str):
        self.parts, self.how = parts, how
        first = parts[0].shape
        width = sum(p.shape[1] for p in parts) if how == "concat" else first[1]
        self.shape = (first[0], width, *first[2:])
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * 4

    def __getitem__(self, index: Any) -> np.ndarray:
        arrays = [np.asarray(p[index], np.float32) for p in self.parts]
        if self.how == "concat":
            return np.concatenate(arrays, axis=1)
        return np.sum(arrays, axis=0, dtype=np.float32)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[np.arange(self.shape[0])]
        return whole if dtype is None else whole.astype(dtype)


class OutsideMasks:
    """The ``attend`` masks bool ``[N, h, w]`` (context cells outside each row's box), computed for
    the rows asked for from their boxes and their file's cell size and map size."""

    def __init__(self, box: np.ndarray, cell: np.ndarray, map_hw: np.ndarray, shape: tuple[int, int, int]):
        self.box, self.cell, self.map_hw, self.shape = box, cell, map_hw, tuple(shape)
        self.dtype = np.dtype(bool)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        rows = np.atleast_1d(np.arange(self.shape[0])[index])
        out = np.zeros((len(rows), *self.shape[1:]), bool)
        keys = np.concatenate([self.cell[rows], self.map_hw[rows].astype(np.float64)], axis=1)
        groups, inverse = np.unique(keys, axis=0, return_inverse=True)
        for g, (cell_w, cell_h, h, w) in enumerate(groups):
            picked = np.flatnonzero(inverse.reshape(-1) == g)
            h, w = int(h), int(w)
            out[picked, :h, :w] = outside_mask(torch.from_numpy(self.box[rows[picked]]), h, w,
                                               float(cell_w), float(cell_h)).numpy()
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[np.arange(self.shape[0])]
        return whole if dtype is None else whole.astype(dtype)


@dataclass
class Features:
    """The rows of several features files, with their keyframes' context maps stacked.

    Context maps of different sizes are zero-padded at the bottom and right; ``attend`` is false
    there, as inside each row's box. ``roi``, ``context`` and ``attend`` are numpy arrays, or (read
    from files too large to hold) :class:`LazyRows`, :class:`CombinedRows`, :class:`OutsideMasks`,
    which read or compute the rows a batch indexes; ``np.asarray`` materializes them.
    """

    video_id: np.ndarray     # [N] str
    box: np.ndarray          # float32 [N, 4]
    box_t: np.ndarray        # int64 [N]
    box_score: np.ndarray    # float32 [N]
    box_source: np.ndarray   # uint8 [N]
    train_mask: np.ndarray   # bool [N]
    label: np.ndarray        # uint8 [N, C]
    roi: Any                 # float32 [N, D]
    context: Any             # float32 [K, D', h, w] or [K, D', T, h, w], all files' keyframes
    frame_index: np.ndarray  # int64 [N], each row's keyframe in ``context``
    attend: Any              # bool [N, h, w], the context cells outside each row's box

    def __len__(self) -> int:
        return len(self.box_t)


_ROW_ARRAYS = ("t", "box", "box_t", "box_score", "box_source", "train_mask", "label")


def read_features(paths: list[str | Path], label_map: LabelMap, cache_bytes: int = CACHE_BYTES) -> Features:
    """Read and join features files whose classes are ``label_map``'s.

    The boxes, labels and masks are read at once; the ROI features and the context maps at once
    when each fits in ``cache_bytes`` as float32, else lazily (:class:`LazyRows`): a linear head
    then never reads a context map, and an ATR head reads a batch's. The attend masks are computed
    per batch (:class:`OutsideMasks`) unless everything is read at once.
    """
    parts = []
    for path in paths:
        with h5py.File(path, "r") as h5:
            if not np.array_equal(h5.attrs["label_ids"], np.asarray(label_map.ids)):
                raise InputError(path, "its classes are not the label map's")
            part: dict[str, Any] = {name: h5[name][:] for name in _ROW_ARRAYS}
            part["roi_shape"], part["context_shape"] = h5["roi"].shape, h5["context"].shape
            part["video_id"] = str(h5.attrs["video_id"])
            stride = int(h5.attrs["spatial_stride"])
            part["cell"] = (stride / int(h5.attrs["input_width"]), stride / int(h5.attrs["input_height"]))
            part["path"] = str(path)
        if not np.isin(part["box_t"], part["t"]).all():
            raise InputError(path, "box_t has timestamps that are not in t")
        parts.append(part)
    if not parts:
        raise ValueError("no features file given")
    if len({p["context_shape"][1:-2] for p in parts}) != 1 or len({p["roi_shape"][1:] for p in parts}) != 1:
        raise InputError(paths[0], "features files of one backbone with different feature or time dimensions")
    height = max(p["context_shape"][-2] for p in parts)
    width = max(p["context_shape"][-1] for p in parts)
    n_rows = sum(p["roi_shape"][0] for p in parts)
    n_frames = sum(p["context_shape"][0] for p in parts)
    row_starts = np.cumsum([0] + [p["roi_shape"][0] for p in parts])
    frame_starts = np.cumsum([0] + [p["context_shape"][0] for p in parts])
    roi = LazyRows([(p["path"], "roi", int(row_starts[i]), p["roi_shape"][0]) for i, p in enumerate(parts)],
                   (n_rows, *parts[0]["roi_shape"][1:]))
    context = LazyRows([(p["path"], "context", int(frame_starts[i]), p["context_shape"][0])
                        for i, p in enumerate(parts)],
                       (n_frames, *parts[0]["context_shape"][1:-2], height, width))
    box = np.concatenate([p["box"] for p in parts]).astype(np.float32)
    cell = np.concatenate([np.tile(np.array(p["cell"], np.float64), (len(p["box_t"]), 1)) for p in parts])
    map_hw = np.concatenate([np.tile(np.array(p["context_shape"][-2:], np.int64), (len(p["box_t"]), 1))
                             for p in parts])
    attend = OutsideMasks(box, cell, map_hw, (n_rows, height, width))
    if roi.nbytes <= cache_bytes:
        roi = np.asarray(roi)
    if context.nbytes <= cache_bytes:
        context = np.asarray(context)
        attend = np.asarray(attend)
    return Features(
        video_id=np.concatenate([np.full(len(p["box_t"]), p["video_id"]) for p in parts]).astype(str),
        box=box,
        box_t=np.concatenate([p["box_t"] for p in parts]),
        box_score=np.concatenate([p["box_score"] for p in parts]),
        box_source=np.concatenate([p["box_source"] for p in parts]),
        train_mask=np.concatenate([p["train_mask"] for p in parts]),
        label=np.concatenate([p["label"] for p in parts]),
        roi=roi,
        context=context,
        frame_index=np.concatenate([frame_starts[i] + np.searchsorted(p["t"], p["box_t"])
                                    for i, p in enumerate(parts)]).astype(np.int64),
        attend=attend,
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

    def join(arrays: list[Any], what: str) -> Any:
        if how == "add" and len({a.shape for a in arrays}) != 1:
            raise ValueError(f"add needs {what} of one shape, got {[a.shape[1:] for a in arrays]}")
        if not all(isinstance(a, np.ndarray) for a in arrays):
            return CombinedRows(arrays, how)              # read and combined per batch
        if how == "concat":
            return np.concatenate(arrays, axis=1)
        return np.sum(arrays, axis=0, dtype=np.float32)

    roi = join([p.roi for p in parts], "ROI features")
    if with_context:
        if len({tuple(p.context.shape[2:]) for p in parts}) != 1:
            raise ValueError("the atr head needs context maps of one size from every backbone, got "
                             f"{[p.context.shape[2:] for p in parts]} (make their input_size and stride agree)")
        context = join([p.context for p in parts], "context maps")
    else:
        context = np.zeros((first.context.shape[0], 0, *first.context.shape[2:]), np.float32)   # no bytes
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
