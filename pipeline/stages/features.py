"""Features stage: the finetuned backbone's ROI features and context maps at every box of one video.

    python -m pipeline.stages.features --weights results/models/{backbone}/backbone.pt --store STORE.h5
        --video-id=ID --keyframes results/dataset/{split}.keyframes.csv --boxes results/detect/{split}.boxes.csv
        [--ground-truth results/dataset/{split}.gt.csv] --label-map L
        --out results/features/{backbone}/{split}/{video}.h5 --params BackboneParams --threads N

Rows are every ground-truth person box (with ``--ground-truth``) and every detected person box of
the video's keyframes; the layout of the output is :mod:`pipeline.feature_store`'s. The backbone runs
on ``compute.device`` (CUDA when the job has a GPU; ``compute.precision``'s autocast there, features
are written as float16 anyway) while ``compute.loader_workers`` processes decode the next keyframes'
clips (into pinned memory on CUDA; with 0 the stage decodes them itself, between batches). The
output is that of the same weights and inputs whatever the number of workers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.ava.formats import read_boxes, read_ground_truth, read_keyframes, read_label_map
from pipeline.cli import add_params_argument, read_params, run_stage, set_threads, stage_parser
from pipeline.data.clips import ClipSpec, load_clip, pad_clips, rois_in_pixels
from pipeline.detect.training_boxes import DETECTION
from pipeline.devices import autocast, select_device
from pipeline.errors import InputError
from pipeline.feature_store import feature_rows, rows_of_video, write_features
from pipeline.media.stores import Store, open_store
from pipeline.models.atr import keyframe_features
from pipeline.models.registry import build_action_model
from pipeline.params import BackboneParams, as_dict
from pipeline.progress import progress
from pipeline.store import load_torch_file

KEYFRAME_BATCH = 8


class KeyframeBatches(torch.utils.data.Dataset):
    """Item ``i``: the ``i``-th batch of :data:`KEYFRAME_BATCH` keyframes of one video, as the model
    takes it: ``{"clips": [B, C, T, H, W], "rois": [K, 5], "rows": int64 [K] (the boxes' rows),
    "shape": (H, W)}``. The store opens once in each process that reads it (DataLoader workers
    each their own: an HDF5 handle does not survive a fork)."""

    def __init__(self, store_path: str | Path, spec: ClipSpec, times: np.ndarray, box_t: np.ndarray,
                 boxes: np.ndarray):
        self.store_path, self.spec, self.box_t, self.boxes = store_path, spec, box_t, boxes
        self.batches = [times[i:i + KEYFRAME_BATCH] for i in range(0, len(times), KEYFRAME_BATCH)]
        self._store: Store | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self._store is None or self._pid != os.getpid():
            self._store, self._pid = open_store(self.store_path, self.spec.modality), os.getpid()
        batch_times = self.batches[i]
        clip_list = [load_clip(self._store, float(t), self.spec) for t in batch_times]
        shape = tuple(clip_list[0].shape[2:])   # a video's clips share one input size
        rows = [np.flatnonzero(self.box_t == t) for t in batch_times]
        rois = rois_in_pixels([self.boxes[r] for r in rows], [shape] * len(rows))
        return {"clips": pad_clips(clip_list), "rois": rois, "rows": np.concatenate(rows), "shape": shape}

    def close(self) -> None:
        if self._store is not None and self._pid == os.getpid():
            self._store.close()
        self._store = None


def _as_is(item: dict[str, Any]) -> dict[str, Any]:
    return item


@torch.no_grad()
def extract(model: torch.nn.Module, store_path: str | Path, spec: ClipSpec, times: np.ndarray,
            box_t: np.ndarray, boxes: np.ndarray, precision: str = "off",
            workers: int = 0, context_frames: int = 1) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """ROI features and context maps of one video, on the model's device.

    times: int64 [K] keyframes; box_t: int64 [N] (each in ``times``); boxes: float32 [N, 4] normalized.
    ``workers`` DataLoader processes decode the next batches of clips while the model runs (none
    when there is only one batch); on CUDA the forward runs under ``precision``'s autocast, from
    pinned memory. Returns roi float32 [N, D], context float32 [K, D, h, w] (``context_frames`` > 1:
    [K, D, bins, h, w], :func:`pipeline.models.atr.keyframe_features`) and the input (H, W)
    (audio: the window's (n_mels, frames)). On the CPU the result does not depend on ``workers``.
    """
    model.eval()
    device = next(model.parameters()).device
    dataset = KeyframeBatches(store_path, spec, times, box_t, boxes)
    workers = min(workers, len(dataset) - 1) if len(dataset) > 1 else 0
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers,
                                         collate_fn=_as_is, pin_memory=device.type == "cuda")
    roi = None
    contexts = []
    shape: tuple[int, int] = (0, 0)
    try:
        for batch in progress(loader, desc=f"features {Path(store_path).stem}", unit="batch"):
            clips = batch["clips"].to(device, non_blocking=True)
            rois = batch["rois"].to(device, non_blocking=True)
            with autocast(device, precision):
                batch_roi, context = keyframe_features(model, clips, rois, context_frames)
            if roi is None:
                roi = np.zeros((len(boxes), batch_roi.shape[1]), np.float32)
            roi[batch["rows"]] = batch_roi.float().cpu().numpy()
            contexts.append(context.float().cpu().numpy())
            shape = tuple(batch["shape"])
    finally:
        dataset.close()
    return roi, np.concatenate(contexts), shape


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.features", __doc__)
    parser.add_argument("--weights", required=True, help="finetuned backbone.pt")
    parser.add_argument("--store", required=True, help="the video's frame, flow or audio store (.h5)")
    parser.add_argument("--video-id", help="default: the store's stem (write --video-id=ID for ids that start with '-')")
    parser.add_argument("--keyframes", required=True, help="split's keyframes CSV (video_id,timestamp)")
    parser.add_argument("--boxes", required=True, help="split's person boxes CSV")
    parser.add_argument("--ground-truth", help="split's ground truth CSV (labels the rows)")
    parser.add_argument("--label-map", required=True)
    parser.add_argument("--out", required=True, help="features file (.h5)")
    add_params_argument(parser, BackboneParams)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    params = read_params(parser, BackboneParams, args.params)
    video_id = args.video_id if args.video_id is not None else Path(args.store).stem
    set_threads(args.threads)

    label_map = read_label_map(args.label_map)
    times = np.unique(rows_of_video(read_keyframes(args.keyframes), video_id).timestamp)
    detections = rows_of_video(read_boxes(args.boxes), video_id)
    gt = rows_of_video(read_ground_truth(args.ground_truth), video_id) if args.ground_truth else None
    for name, part in (("person boxes", detections), ("ground truth", gt)):
        if part is not None and not np.isin(part.timestamp, times).all():
            stray = sorted(set(part.timestamp.tolist()) - set(times.tolist()))
            raise InputError(args.keyframes, f"{name} of {video_id} at timestamps that are not keyframes: {stray[:5]}")
    if len(times) == 0:
        raise InputError(args.keyframes, f"no keyframe of video {video_id!r}")
    rows = feature_rows(detections, gt, label_map, params.train_box_iou if gt is not None else 0.0)

    device = select_device(params.compute.device)
    model = build_action_model(params.arch, params.modality, len(label_map), params.roi_size, params.roi_pool,
                               roi_op=params.roi_op, head=params.finetune.head,
                               context_frames=params.context_frames)
    state = load_torch_file(args.weights, "finetuned backbone")
    model.backbone.load_state_dict(state["backbone"])
    model.head.load_state_dict(state["head"])
    model.to(device)
    # Loader workers only feed a GPU: on the CPU the forward already has every thread of the job, and a
    # worker decoding beside it slows the stage down (2 workers on 2 cores: 8-30 % slower, issue 10).
    workers = params.compute.loader_workers
    roi, context, input_hw = extract(model, args.store, ClipSpec.from_params(params), times,
                                     rows.boxes.timestamp, rows.boxes.box, params.compute.precision, workers,
                                     params.context_frames)
    write_features(args.out, video_id, times, rows, roi, context, input_hw,
                   model.backbone.spatial_stride, label_map, as_dict(params))
    print(f"{video_id}: {len(times)} keyframes, {len(rows.source)} boxes "
          f"({int((rows.source == DETECTION).sum())} detections) on {device} -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
