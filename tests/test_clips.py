"""Clips from the frame and flow stores, flip augmentation and batching."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from pipeline.batches import GlobalBatchSampler
from pipeline.data.clips import (RGB_MEAN, RGB_STD, ClipSpec, Keyframe, KeyframeDataset,
                                 collate_keyframes,
                                 flip_boxes, flip_clip, input_shape, load_clip)
from pipeline.media.flow import quantize
from pipeline.media.stores import open_store
from pipeline.media.frames import encode_jpeg

FPS = 10.0


def write_gray_frame_store(path, n_frames: int, height: int = 24, width: int = 32, start_t: float = 900.0):
    """A frame store whose frame i is uniformly gray at level 8 * i."""
    with h5py.File(path, "w") as h5:
        jpeg = h5.create_dataset("jpeg", shape=(n_frames,), dtype=h5py.vlen_dtype(np.uint8))
        for i in range(n_frames):
            jpeg[i] = encode_jpeg(np.full((height, width, 3), 8 * i, np.uint8), 95)
        h5.create_dataset("t", data=start_t + np.arange(n_frames) / FPS)
        h5.attrs.update({"fps": FPS, "height": height, "width": width})


def write_flow_store(path, dx: float, dy: float, n_pairs: int = 6, height: int = 24, width: int = 32,
                     bound: float = 20.0):
    """A flow store with a constant flow (dx, dy) in every pair."""
    vlen = h5py.vlen_dtype(np.uint8)
    with h5py.File(path, "w") as h5:
        x = h5.create_dataset("x", shape=(n_pairs,), dtype=vlen)
        y = h5.create_dataset("y", shape=(n_pairs,), dtype=vlen)
        for i in range(n_pairs):
            x[i] = encode_jpeg(quantize(np.full((height, width), dx, np.float32), bound), 95)
            y[i] = encode_jpeg(quantize(np.full((height, width), dy, np.float32), bound), 95)
        h5.create_dataset("t", data=900.0 + np.arange(n_pairs) / FPS)
        h5.attrs.update({"bound": bound, "height": height, "width": width, "fps": FPS})


def gray_levels(clip: torch.Tensor) -> np.ndarray:
    """Per-frame gray level (0..255) of a normalized RGB clip [3, T, H, W]."""
    red = clip[0].mean(dim=(1, 2)).numpy()
    return (red * RGB_STD[0] + RGB_MEAN[0]) * 255.0


@pytest.mark.parametrize("center_t, expected", [
    (900.0, [0, 0, 0, 2, 4]),           # at the start: clamped to the first frame
    (901.0, [6, 8, 10, 12, 14]),        # inside
    (901.9, [15, 17, 19, 19, 19]),      # at the end: clamped to the last frame
])
def test_clip_sampling_indices_at_the_edges(tmp_path, center_t, expected):
    path = tmp_path / "v.h5"
    write_gray_frame_store(path, n_frames=20)
    spec = ClipSpec("rgb", clip_frames=5, clip_stride=2, input_size=12)
    with open_store(path, spec.modality) as store:
        clip = load_clip(store, center_t, spec)
    assert clip.dtype == torch.float32 and clip.shape == (3, 5, 12, 16)
    np.testing.assert_allclose(gray_levels(clip), 8 * np.asarray(expected), atol=2.0)


def test_audio_clip_is_the_keyframes_log_mel_window(tmp_path):
    path = tmp_path / "a.h5"
    logmel = np.arange(5 * 4 * 6, dtype=np.float16).reshape(5, 4, 6)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("logmel", data=logmel)
        h5.create_dataset("t", data=900.0 + np.arange(5))
        h5.attrs.update({"sr": 16000, "n_mels": 4, "has_audio": True})
    spec = ClipSpec("audio", 1, 1, 0)
    with open_store(path, spec.modality) as store:
        clip = load_clip(store, 902.0, spec)
    assert clip.dtype == torch.float32 and clip.shape == (1, 1, 4, 6)
    np.testing.assert_array_equal(clip[0, 0].numpy(), logmel[2])
    assert flip_clip(clip, spec) is clip                 # mono audio has no left and right


def test_input_shape_keeps_the_aspect():
    assert input_shape(240, 320, 112) == (112, 149)
    assert input_shape(320, 240, 112) == (149, 112)
    assert input_shape(112, 112, 112) == (112, 112)


def test_flow_clip_is_normalized_by_the_bound(tmp_path):
    path = tmp_path / "flow.h5"
    write_flow_store(path, dx=4.0, dy=-10.0)
    spec = ClipSpec("flow/farneback", clip_frames=4, clip_stride=1, input_size=12)
    with open_store(path, spec.modality) as store:
        clip = load_clip(store, 900.2, spec)
    assert clip.shape == (3, 4, 12, 16)
    tol = 2 * 20.0 / 255 / 20.0
    np.testing.assert_allclose(clip[0].numpy(), 4.0 / 20, atol=tol)
    np.testing.assert_allclose(clip[1].numpy(), -10.0 / 20, atol=tol)
    # dx * dy as the signed geometric mean of |dx| and |dy|, over the bound: the range of dx and dy
    np.testing.assert_allclose(clip[2].numpy(), -np.sqrt(40.0) / 20, atol=tol)


def test_flip_mirrors_boxes_and_negates_flow_dx():
    boxes = np.array([[0.1, 0.2, 0.4, 0.9]], np.float32)
    np.testing.assert_allclose(flip_boxes(boxes), [[0.6, 0.2, 0.9, 0.9]], atol=1e-6)
    np.testing.assert_allclose(flip_boxes(flip_boxes(boxes)), boxes, atol=1e-6)

    clip = torch.randn(3, 2, 4, 6)
    rgb = flip_clip(clip, ClipSpec("rgb", 2, 1, 4))
    assert torch.equal(rgb, clip.flip(-1))
    flow = flip_clip(clip, ClipSpec("flow/tvl1", 2, 1, 4))
    assert torch.equal(flow[0], -clip[0].flip(-1))
    assert torch.equal(flow[1], clip[1].flip(-1))
    assert torch.equal(flow[2], -clip[2].flip(-1))


def test_dataset_flip_moves_the_box_with_the_content(tmp_path):
    # a bright left half: after a flip the box over it must sit over the bright right half
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as h5:
        frame = np.zeros((24, 32, 3), np.uint8)
        frame[:, :16] = 255
        jpeg = h5.create_dataset("jpeg", shape=(4,), dtype=h5py.vlen_dtype(np.uint8))
        for i in range(4):
            jpeg[i] = encode_jpeg(frame, 95)
        h5.create_dataset("t", data=900.0 + np.arange(4) / FPS)
        h5.attrs.update({"fps": FPS, "height": 24, "width": 32})
    kf = Keyframe("v", 900, np.array([[0.0, 0.0, 0.5, 1.0]], np.float32), np.array([[1, 0]], np.uint8))
    spec = ClipSpec("rgb", 2, 1, 24)
    flipped = {}
    for seed in range(8):
        item = KeyframeDataset([kf], {"v": path}, spec, flip=True, seed=seed)[(0, 0)]
        x1, _, x2, _ = (item["boxes"][0] * 32).round().astype(int)
        flipped[bool(x1 > 0)] = True
        assert item["clip"][0, :, :, x1 + 2:x2 - 2].mean() > 1.5      # box over the bright half
    assert flipped == {True: True, False: True}                        # both outcomes drawn


def test_collate_builds_rois_in_input_pixels():
    items = [
        {"clip": torch.ones(3, 2, 12, 16), "boxes": np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]),
         "labels": np.array([[1, 0], [0, 1]], np.uint8)},
        {"clip": torch.ones(3, 2, 16, 12), "boxes": np.array([[0.25, 0.25, 0.75, 0.75]]),
         "labels": np.array([[1, 1]], np.uint8)},
    ]
    batch = collate_keyframes(items)
    assert batch["clips"].shape == (2, 3, 2, 16, 16)
    assert batch["clips"][0, :, :, 12:].abs().sum() == 0          # padded at the bottom
    np.testing.assert_allclose(batch["rois"].numpy(), [[0, 0, 0, 8, 6], [0, 8, 6, 16, 12], [1, 3, 4, 9, 12]])
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (3, 2)


def test_processes_share_out_exactly_the_global_batches_of_one_process():
    one = GlobalBatchSampler(22, batch_size=6, seed=3)
    one.set_epoch(2)
    two = [GlobalBatchSampler(22, batch_size=6, seed=3, rank=r, world_size=2) for r in range(2)]
    for sampler in two:
        sampler.set_epoch(2)
    for whole, part0, part1 in zip(one, *two):
        assert sorted(whole) == sorted(part0 + part1) and len(part0) == len(part1) == len(whole) // 2
    assert sorted(i for batch in one for _, i in batch) == list(range(22))   # every item, once
    other = GlobalBatchSampler(22, batch_size=6, seed=3)
    other.set_epoch(3)
    assert list(one) != list(other)                                       # a new order each epoch


def test_an_items_flip_is_the_same_whoever_loads_it(tmp_path):
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as h5:
        jpeg = h5.create_dataset("jpeg", shape=(4,), dtype=h5py.vlen_dtype(np.uint8))
        for i in range(4):
            jpeg[i] = encode_jpeg(np.random.default_rng(i).integers(0, 255, (24, 32, 3), dtype=np.uint8), 95)
        h5.create_dataset("t", data=900.0 + np.arange(4) / FPS)
        h5.attrs.update({"fps": FPS, "height": 24, "width": 32})
    kfs = [Keyframe("v", 900, np.array([[0.0, 0.0, 0.5, 1.0]], np.float32), np.array([[1, 0]], np.uint8))] * 6
    data = KeyframeDataset(kfs, {"v": path}, ClipSpec("rgb", 2, 1, 24), flip=True, seed=1)
    keys = [(e, i) for e in range(3) for i in range(6)]
    forward = [data[k]["boxes"][0, 0] for k in keys]
    backward = [data[k]["boxes"][0, 0] for k in reversed(keys)][::-1]
    assert forward == backward                                  # the order of loading changes nothing
    assert len(set(forward)) == 2                               # and both outcomes happen
