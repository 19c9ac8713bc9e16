"""Clips around keyframes from the frame and flow stores, and the keyframe dataset for finetuning.

A clip is ``clip_frames`` stored frames ``clip_stride`` apart, centred on the keyframe (the store's
``clip``), resized so that the short side is ``input_size`` (aspect kept: normalized boxes map onto
it directly), normalized, as float32 ``[C, T, H, W]``:
- ``rgb``: Kinetics mean and std (torchvision's video models were trained with them);
- ``flow/<method>``: dx / bound, dy / bound and sign(dx * dy) * sqrt(|dx * dy|) / bound, the product
  channel as the signed geometric mean of |dx| and |dy|, so that it has their units and range (all
  within [-1, 1]; dx * dy / bound**2 would be tens of times smaller than dx and dy for the usual
  flows of a few pixels against a bound of 20, and nearly inert).
An ``audio`` clip is the log-mel window of the keyframe's second as a one-step clip
``[1, 1, n_mels, frames]`` (the backbone standardizes it); clip keys and ``input_size`` do not apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from pipeline.ava.formats import AvaRows
from pipeline.batches import item_rng
from pipeline.detect.boxes import keyframe_groups
from pipeline.media.stores import Store, open_store
from pipeline.params import BackboneParams

RGB_MEAN = np.array([0.43216, 0.394666, 0.37645], dtype=np.float32)
RGB_STD = np.array([0.22803, 0.22145, 0.216989], dtype=np.float32)


@dataclass(frozen=True)
class ClipSpec:
    """How a backbone samples its input: the config's backbone keys that concern clips."""

    modality: str        # rgb | flow/<method> | audio
    clip_frames: int
    clip_stride: int     # in stored frames
    input_size: int      # short side, pixels

    @classmethod
    def from_params(cls, params: BackboneParams) -> "ClipSpec":
        if params.modality == "audio":
            return cls("audio", 1, 1, 0)
        return cls(params.modality, params.clip_frames, params.clip_stride, params.input_size)

    @property
    def is_flow(self) -> bool:
        return self.modality.startswith("flow/")

    @property
    def is_audio(self) -> bool:
        return self.modality == "audio"


def input_shape(height: int, width: int, input_size: int) -> tuple[int, int]:
    """(H, W) of a ``height`` x ``width`` frame resized so that its short side is ``input_size``."""
    scale = input_size / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resize(frames: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``[T, h, w, 3]`` -> ``[T, H, W, 3]`` (area interpolation when shrinking, linear otherwise)."""
    height, width = shape
    if frames.shape[1:3] == (height, width):
        return frames
    interp = cv2.INTER_AREA if height < frames.shape[1] else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in frames])


def normalize_rgb(frames: np.ndarray) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` RGB -> float32 ``[3, T, H, W]``."""
    x = (frames.astype(np.float32) / 255.0 - RGB_MEAN) / RGB_STD
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2))


def normalize_flow(frames: np.ndarray, bound: float) -> np.ndarray:
    """float32 ``[T, H, W, 3]`` (dx, dy in pixels, dx*dy in pixels²) -> float32 ``[3, T, H, W]``:
    dx / bound, dy / bound, sign(dx*dy) sqrt(|dx*dy|) / bound, all within [-1, 1]."""
    x = frames.astype(np.float32).transpose(3, 0, 1, 2).copy()
    x[2] = np.sign(x[2]) * np.sqrt(np.abs(x[2]))
    x *= np.float32(1.0 / bound)
    return np.ascontiguousarray(x)


def load_clip(store: Store, center_t: float, spec: ClipSpec) -> torch.Tensor:
    """The clip of ``spec`` around time ``center_t``: float32 ``[3, T, H, W]`` (audio: ``[1, 1, n_mels, frames]``)."""
    if spec.is_audio:
        return torch.from_numpy(store.window(np.array([center_t]))[None])
    frames = store.clip(center_t, spec.clip_frames, spec.clip_stride)
    frames = _resize(frames, input_shape(store.height, store.width, spec.input_size))
    x = normalize_flow(frames, store.bound) if spec.is_flow else normalize_rgb(frames)
    return torch.from_numpy(x)


def flip_clip(clip: torch.Tensor, spec: ClipSpec) -> torch.Tensor:
    """Mirror ``[C, T, H, W]`` left-right; flow's dx (and so dx*dy) changes sign; mono audio stays."""
    if spec.is_audio:
        return clip
    flipped = np.ascontiguousarray(clip.numpy()[..., ::-1])   # numpy: much faster than Tensor.flip on CPU
    if spec.is_flow:
        flipped[0] *= -1.0
        flipped[2] *= -1.0
    return torch.from_numpy(flipped)


def flip_boxes(boxes: np.ndarray) -> np.ndarray:
    """Mirror normalized ``[N, 4]`` x1, y1, x2, y2 boxes left-right."""
    return np.stack([1.0 - boxes[:, 2], boxes[:, 1], 1.0 - boxes[:, 0], boxes[:, 3]], axis=1).astype(boxes.dtype)


@dataclass
class Keyframe:
    """One keyframe's person boxes and their labels."""

    video_id: str
    timestamp: int
    boxes: np.ndarray    # [k, 4] float32, normalized
    labels: np.ndarray   # [k, C] uint8 multi-hot, label-map order


def group_keyframes(rows: AvaRows, labels: np.ndarray) -> list[Keyframe]:
    """Split box rows and their labels ``[N, C]`` by (video_id, timestamp), sorted by both."""
    groups = keyframe_groups(rows)
    return [Keyframe(vid, ts, rows.box[groups[(vid, ts)]].astype(np.float32), labels[groups[(vid, ts)]])
            for vid, ts in sorted(groups)]


class KeyframeDataset(torch.utils.data.Dataset):
    """One item per keyframe: ``{"clip": [3, T, H, W], "boxes": [k, 4] normalized, "labels": [k, C]}``.

    Items are asked for as ``(epoch, index)`` (:class:`pipeline.batches.GlobalBatchSampler` gives them) or as a bare
    index (epoch 0). With ``flip`` an item is mirrored with probability 1/2 (clip, boxes and flow's
    sign), drawn from :func:`pipeline.batches.item_rng`, so a run gives the same items with any number of loader
    workers or training processes.
    """

    def __init__(self, keyframes: Sequence[Keyframe], stores: dict[str, Path], spec: ClipSpec,
                 flip: bool = False, seed: int = 0):
        self.keyframes = list(keyframes)
        self.stores = stores
        self.spec = spec
        self.flip = flip
        self.seed = seed

    def __len__(self) -> int:
        return len(self.keyframes)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        kf = self.keyframes[i]
        with open_store(self.stores[kf.video_id], self.spec.modality) as store:
            clip = load_clip(store, float(kf.timestamp), self.spec)
        boxes = kf.boxes
        if self.flip and item_rng(self.seed, epoch, i).random() < 0.5:
            clip, boxes = flip_clip(clip, self.spec), flip_boxes(boxes)
        return {"clip": clip, "boxes": boxes, "labels": kf.labels}


def rois_in_pixels(boxes: Sequence[np.ndarray], shapes: Sequence[tuple[int, int]]) -> torch.Tensor:
    """ROIAlign's boxes ``[K, 5]`` float32 (batch index, x1, y1, x2, y2 in input pixels).

    boxes: per clip ``[k_i, 4]`` normalized; shapes: per clip its (H, W).
    """
    parts = []
    for b, (item_boxes, (height, width)) in enumerate(zip(boxes, shapes)):
        scale = np.array([width, height, width, height], dtype=np.float32)
        pixels = np.asarray(item_boxes, dtype=np.float32).reshape(-1, 4) * scale
        parts.append(np.concatenate([np.full((len(pixels), 1), b, np.float32), pixels], axis=1))
    return torch.from_numpy(np.concatenate(parts) if parts else np.zeros((0, 5), np.float32))


def pad_clips(clips: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack ``[C, T, H_i, W_i]`` clips into ``[B, C, T, H, W]``, zero-padding at the bottom and right
    (pixel coordinates of boxes stay valid)."""
    height = max(c.shape[2] for c in clips)
    width = max(c.shape[3] for c in clips)
    out = clips[0].new_zeros((len(clips), *clips[0].shape[:2], height, width))
    for i, c in enumerate(clips):
        out[i, :, :, : c.shape[2], : c.shape[3]] = c
    return out


def collate_keyframes(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Batch dataset items: ``clips`` [B, C, T, H, W], ``rois`` [K, 5], ``labels`` float32 [K, C]."""
    clips = [item["clip"] for item in items]
    rois = rois_in_pixels([item["boxes"] for item in items], [tuple(c.shape[2:]) for c in clips])
    labels = torch.from_numpy(np.concatenate([item["labels"] for item in items]).astype(np.float32))
    return {"clips": pad_clips(clips), "rois": rois, "labels": labels}
