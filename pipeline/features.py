"""Features stage: the finetuned backbone's ROI features and context maps for one video's keyframes.

Rows are every ground-truth person box (when ``--ground-truth`` is given) and every detection of the
video's keyframes. Ground-truth boxes and the detections that overlap one (``training_boxes``) carry
labels and ``train_mask``; other detections have zero labels. Every keyframe gets its context map,
with or without boxes.

Output HDF5 (``results/features/{backbone}/{split}/{video}.h5``):
- ``t`` int64 [K]: keyframe timestamps (AVA seconds), sorted
- ``box`` float32 [N, 4] normalized x1, y1, x2, y2; ``box_t`` int64 [N] timestamp of each row;
  ``box_score`` float32 [N] (1 for ground truth); ``box_source`` uint8 [N] (0 ground truth,
  1 detection); ``train_mask`` bool [N]; ``label`` uint8 [N, C] (label-map order)
- ``roi`` float16 [N, D]: ROI features; ``context`` float16 [K, D, h, w]: the time-averaged last
  feature map of each keyframe (the actor-target relation attends to it)
- attrs: video_id, label_ids (int64 [C]), input_height, input_width, spatial_stride, provenance.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np
import torch

from pipeline.ava.formats import AvaRows, LabelMap, read_boxes, read_ground_truth, read_label_map
from pipeline.data.clips import ClipSpec, load_clip, open_store, pad_clips, rois_in_pixels
from pipeline.dataset import read_keyframes
from pipeline.detect.training_boxes import DETECTION, training_boxes
from pipeline.errors import InputError
from pipeline.models.atr import outside_mask
from pipeline.progress import progress
from pipeline.store import atomic_path, set_h5_provenance
from pipeline.train.finetune import build_detector

KEYFRAME_BATCH = 8


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


@torch.no_grad()
def extract(model: torch.nn.Module, store_path: str | Path, spec: ClipSpec, times: np.ndarray,
            box_t: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """ROI features and context maps of one video.

    times: int64 [K] keyframes; box_t: int64 [N] (each in ``times``); boxes: float32 [N, 4] normalized.
    Returns roi float32 [N, D], context float32 [K, D, h, w] and the input (H, W) (audio: the
    window's (n_mels, frames)).
    """
    model.eval()
    roi = None
    contexts = []
    with open_store(store_path, spec) as store:
        batches = [times[i:i + KEYFRAME_BATCH] for i in range(0, len(times), KEYFRAME_BATCH)]
        for batch_times in progress(batches, desc=f"features {Path(store_path).stem}", unit="batch"):
            clip_list = [load_clip(store, float(t), spec) for t in batch_times]
            shape = tuple(clip_list[0].shape[2:])   # a video's clips share one input size
            clips = pad_clips(clip_list)
            rows = [np.flatnonzero(box_t == t) for t in batch_times]
            rois = rois_in_pixels([boxes[r] for r in rows], [shape] * len(batch_times))
            batch_roi, context = model.features(clips, rois)
            if roi is None:
                roi = np.zeros((len(boxes), batch_roi.shape[1]), np.float32)
            roi[np.concatenate(rows)] = batch_roi.numpy()
            contexts.append(context.numpy())
    return roi, np.concatenate(contexts), shape


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


def video_features(args: argparse.Namespace, params: dict[str, Any]) -> None:
    label_map = read_label_map(args.label_map)
    times = np.unique(rows_of_video(read_keyframes(args.keyframes), args.video_id).timestamp)
    detections = rows_of_video(read_boxes(args.detections), args.video_id)
    gt = rows_of_video(read_ground_truth(args.ground_truth), args.video_id) if args.ground_truth else None
    for name, part in (("detections", detections), ("ground truth", gt)):
        if part is not None and not np.isin(part.timestamp, times).all():
            stray = sorted(set(part.timestamp.tolist()) - set(times.tolist()))
            raise InputError(args.keyframes, f"{name} of {args.video_id} at timestamps that are not keyframes: {stray[:5]}")
    if len(times) == 0:
        raise InputError(args.keyframes, f"no keyframe of video {args.video_id!r}")
    iou_threshold = float(params["train_box_iou"]) if gt is not None else 0.0
    rows = feature_rows(detections, gt, label_map, iou_threshold)

    model = build_detector(params, len(label_map))
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    model.backbone.load_state_dict(state["backbone"])
    model.head.load_state_dict(state["head"])
    spec = ClipSpec.from_params(params)
    roi, context, input_hw = extract(model, args.store, spec, times, rows.boxes.timestamp, rows.boxes.box)
    write_features(args.out, args.video_id, times, rows, roi, context, input_hw,
                   model.backbone.spatial_stride, label_map, params)
    print(f"{args.video_id}: {len(times)} keyframes, {len(rows.source)} boxes "
          f"({int((rows.source == DETECTION).sum())} detections) -> {args.out}", file=sys.stderr)


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


def combine_features(parts: list[Features], how: str = "concat", with_context: bool = True) -> Features:
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


def read_model_features(groups: list[list[str | Path]], label_map: LabelMap, model: dict[str, Any]) -> Features:
    """The features that the ``models`` entry ``model`` reads: one group of files per backbone,
    combined by :func:`combine_features` (its ``combine``; context kept for an ``atr`` head) when
    there are several."""
    parts = [read_features(group, label_map) for group in groups]
    if len(parts) == 1:
        return parts[0]
    return combine_features(parts, model.get("combine", "concat"), with_context=model.get("head") == "atr")


def add_features_argument(parser: argparse.ArgumentParser, files: str) -> None:
    """``--features``: a model's ``files`` (features files), one backbone's per use of the flag."""
    parser.add_argument("--features", nargs="+", action="append", required=True,
                        help=f"{files}, one backbone's; repeat the flag for each backbone of the model")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.features", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="finetuned backbone.pt")
    parser.add_argument("--store", required=True, help="the video's frame or flow store (.h5)")
    parser.add_argument("--video-id", help="default: the store's stem (write --video-id=ID for ids that start with '-')")
    parser.add_argument("--keyframes", required=True, help="split's keyframes CSV (video_id,timestamp)")
    parser.add_argument("--detections", required=True, help="split's person boxes CSV")
    parser.add_argument("--ground-truth", help="split's ground truth CSV (labels the rows)")
    parser.add_argument("--label-map", required=True)
    parser.add_argument("--out", required=True, help="features file (.h5)")
    parser.add_argument("--params", required=True,
                        help="backbone section as JSON, with train_box_iou when --ground-truth is given")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.video_id is None:
        args.video_id = Path(args.store).stem
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    video_features(args, json.loads(args.params))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
