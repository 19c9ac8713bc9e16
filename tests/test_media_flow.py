"""Flow stage: quantization, accuracy on known motion (translation, rotation, zoom), the store and pairs."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from pipeline.config import load_schema
from pipeline.errors import InputError
from pipeline.media import flow as flow_mod
from pipeline.media.ffmpeg import ffmpeg_exe
from pipeline.media.flow import (FlowStore, affine_pair, compute_flow, dequantize, known_motions, make_flow,
                                 mean_endpoint_error, quantize, textured_image)
from pipeline.media.frames import FrameStore, extract_frames
from pipeline.params import FlowParams, FramesParams
from pipeline.stages import flow as flow_stage

OFFSET = 900.0
SIZE = 112
STEP = np.array([2.0, -1.0])  # pixels per frame of the test video's motion (dx, dy)
#: Mean endpoint error bounds (pixels) inside a 16-pixel margin, for OpenCV's default parameters.
EPE_BOUND = {"translate": 0.05, "rotate": 0.2, "zoom": 0.2}
#: The schema's flow options: TV-L1's defaults; Farneback's (required keys) as in the demo config.
SCHEMA = load_schema()["properties"]["flow"]["properties"]
OPTIONS = {
    "farneback": {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2,
                  "flags": SCHEMA["farneback"]["properties"]["flags"]["default"]},
    "tvl1": {key: spec["default"] for key, spec in SCHEMA["tvl1"]["properties"].items()},
}


def frames_params(short_side: int, window: str = "all", context_s: float | None = None) -> FramesParams:
    """Every frame of the test video (a rate above its own), JPEG quality 95."""
    return FramesParams(short_side=short_side, fps=1000.0, window=window, jpeg_quality=95, time_offset=OFFSET,
                        context_s=context_s)


def flow_params(method: str, context_s: float | None = None, **options) -> FlowParams:
    """Bound 10 px, JPEG quality 95, the method's :data:`OPTIONS` with ``options`` changed."""
    return FlowParams(method=method, bound=10.0, jpeg_quality=95, options={**OPTIONS[method], **options},
                      context_s=context_s)


@pytest.mark.parametrize("method", ["farneback", "tvl1"])
@pytest.mark.parametrize("motion", ["translate", "rotate", "zoom"])
def test_endpoint_error_on_known_motion(method, motion):
    cv2.setNumThreads(1)
    frame0, frame1, truth = affine_pair(textured_image(SIZE), known_motions(SIZE)[motion])
    flow = make_flow(method, OPTIONS[method])(frame0, frame1)
    assert flow.shape == (SIZE, SIZE, 2) and flow.dtype == np.float32
    assert mean_endpoint_error(flow, truth) < EPE_BOUND[motion]
    # Through the store's quantization (bound 20) the error grows by at most bound / 255.
    stored = dequantize(quantize(flow, 20.0), 20.0)
    assert mean_endpoint_error(stored, truth) < EPE_BOUND[motion] + 20.0 / 255
    assert flow_mod.known_motion_errors(method, OPTIONS[method], SIZE)[motion] == mean_endpoint_error(flow, truth)


def test_quantization_round_trip_error_is_within_half_a_step():
    bound = 15.0
    values = np.linspace(-bound, bound, 100_001, dtype=np.float32)
    q = quantize(values, bound)
    assert q.dtype == np.uint8 and q.min() == 0 and q.max() == 255
    assert np.abs(dequantize(q, bound) - values).max() <= bound / 255 + 1e-5
    np.testing.assert_array_equal(quantize(np.float32([-100, 100, 0]), bound), [0, 255, 128])


def test_every_opencv_parameter_is_configurable_and_names_are_checked():
    assert set(SCHEMA["tvl1"]["properties"]) == set(flow_mod.TVL1_SETTERS)
    assert set(SCHEMA["farneback"]["properties"]) == set(flow_mod.FARNEBACK_ARGS)
    with pytest.raises(ValueError, match=r"farneback options: unknown parameters \['winsiz'\], missing \[\]"):
        make_flow("farneback", {**OPTIONS["farneback"], "winsiz": 3})
    with pytest.raises(ValueError, match=r"tvl1 options: unknown parameters \[\], missing \['tau'\]"):
        make_flow("tvl1", {k: v for k, v in OPTIONS["tvl1"].items() if k != "tau"})
    with pytest.raises(ValueError, match="flow method"):
        make_flow("brox", {})
    frame0, frame1, _ = affine_pair(textured_image(48), known_motions(48)["translate"])
    coarse = make_flow("tvl1", {**OPTIONS["tvl1"], "nscales": 1, "warps": 1, "outer_iterations": 1})
    fine = make_flow("tvl1", OPTIONS["tvl1"])
    assert not np.allclose(coarse(frame0, frame1), fine(frame0, frame1))


def test_schema_defaults_of_tvl1_are_opencvs():
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    for key, setter in flow_mod.TVL1_SETTERS.items():
        assert getattr(tvl1, "g" + setter[1:])() == pytest.approx(OPTIONS["tvl1"][key], rel=1e-6), key


def test_pairs_only_between_consecutive_frames():
    t = np.array([0.0, 0.08, 0.16, 1.0, 1.08, 1.2, 1.24])
    np.testing.assert_array_equal(flow_mod.pair_starts(t, 12.5), [0, 1, 3, 4, 5])
    np.testing.assert_array_equal(flow_mod.pair_starts(t, 0.0), np.arange(6))


@pytest.fixture(scope="module")
def moving_video(tmp_path_factory) -> Path:
    """A lossless 10 fps video of a texture moving by STEP pixels per frame, 12 frames."""
    path = tmp_path_factory.mktemp("flowvideo") / "moving.mkv"
    big = textured_image(SIZE + 64, seed=1)
    frames = []
    for k in range(12):
        shift = np.float32([[1, 0, STEP[0] * k - 24], [0, 1, STEP[1] * k - 24]])
        gray = cv2.warpAffine(big, shift, (SIZE + 16, SIZE), flags=cv2.INTER_CUBIC)
        frames.append(np.repeat(np.clip(np.rint(gray), 0, 255).astype(np.uint8)[..., None], 3, axis=2))
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", f"{SIZE + 16}x{SIZE}", "-r", "10", "-i", "-", "-c:v", "ffv1", str(path)],
                   input=np.stack(frames).tobytes(), check=True)
    return path


@pytest.mark.parametrize("method", ["farneback", "tvl1"])
def test_flow_stage_recovers_the_motion(moving_video, tmp_path, method):
    frames = tmp_path / "frames.h5"
    extract_frames(moving_video, frames, "moving", frames_params(SIZE))
    out = tmp_path / "flow.h5"
    params = flow_params(method, **({"warps": 3, "nscales": 3} if method == "tvl1" else {}))
    assert flow_stage.main(["--frames", str(frames), "--out", str(out),
                            "--params", json.dumps(dataclasses.asdict(params)), "--threads", "2"]) == 0
    with FrameStore(frames) as fs, FlowStore(out) as flow:
        assert len(flow) == len(fs) - 1 == 11
        np.testing.assert_array_equal(flow.t, fs.t[:-1])
        assert (flow.bound, flow.height, flow.width) == (10.0, SIZE, SIZE + 16)
        clip = flow.clip(flow.t[5], 4, 1)
        assert clip.shape == (4, SIZE, SIZE + 16, 3) and clip.dtype == np.float32
        np.testing.assert_array_equal(clip[..., 2], clip[..., 0] * clip[..., 1])
        mean = flow.read(np.arange(len(flow)))[:, 16:-16, 16:-16, :2].mean(axis=(0, 1, 2))
        np.testing.assert_allclose(mean, STEP, atol=0.15)
    with h5py.File(out) as h5:
        assert h5["x"].dtype == h5py.vlen_dtype(np.uint8) and h5.attrs["method"] == method
        assert json.loads(h5.attrs["provenance_params"]) == dataclasses.asdict(params)


def test_threads_give_the_same_store_as_one_thread(moving_video, tmp_path):
    frames = tmp_path / "frames.h5"
    extract_frames(moving_video, frames, "moving", frames_params(56))
    outs = []
    for threads in (1, 2):
        outs.append(tmp_path / f"flow{threads}.h5")
        compute_flow(frames, outs[-1], flow_params("tvl1", warps=2), threads=threads)
    with h5py.File(outs[0]) as a, h5py.File(outs[1]) as b:
        for name in ("x", "y"):
            assert all(np.array_equal(u, v) for u, v in zip(a[name][:], b[name][:]))


def test_clips_store_gets_no_pair_across_a_gap(moving_video, tmp_path):
    keyframes = tmp_path / "keyframes.csv"
    keyframes.write_text("moving,900\nmoving,901\n")  # windows [899.7, 900.3] and [900.7, 901.3]
    frames = tmp_path / "frames.h5"
    extract_frames(moving_video, frames, "moving", frames_params(56, "clips", 0.3), keyframes=keyframes)
    out = tmp_path / "flow.h5"
    compute_flow(frames, out, flow_params("farneback"))
    with FrameStore(frames) as fs, FlowStore(out) as flow:
        np.testing.assert_allclose(fs.t, OFFSET + np.array([0, 1, 2, 3, 7, 8, 9, 10, 11]) * 0.1, atol=1e-6)
        np.testing.assert_allclose(flow.t, OFFSET + np.array([0, 1, 2, 7, 8, 9, 10]) * 0.1, atol=1e-6)


def test_keyframe_windows_keep_only_the_pairs_the_clips_read(moving_video, tmp_path):
    frames = tmp_path / "frames.h5"
    extract_frames(moving_video, frames, "moving", frames_params(56))
    keyframes = tmp_path / "keyframes.csv"
    keyframes.write_text("moving,900\nother,901\n")
    out = tmp_path / "flow.h5"
    assert compute_flow(frames, out, flow_params("farneback", context_s=0.25), keyframes=keyframes) == 3
    with FlowStore(out) as flow:
        np.testing.assert_allclose(flow.t, OFFSET + np.array([0.0, 0.1, 0.2]), atol=1e-6)
    keyframes.write_text("other,901\n")
    with pytest.raises(InputError, match="keyframes.csv: no keyframe"):
        compute_flow(frames, out, flow_params("farneback", context_s=1.0), keyframes=keyframes)


@pytest.fixture(scope="module")
def awkward_frames(tmp_path_factory) -> dict[str, Path]:
    """Frame stores of a still shot (every frame the same, 2 s at 25 fps), an odd-sized (321x179)
    moving video and a one-frame video."""
    root = tmp_path_factory.mktemp("awkwardflow")
    sources = {"still": ["-f", "lavfi", "-i", "color=c=gray:size=160x120:rate=25", "-t", "2", "-pix_fmt", "yuv420p"],
               "odd": ["-f", "lavfi", "-i", "testsrc=size=321x179:rate=25", "-t", "1", "-pix_fmt", "yuv444p"],
               "one_frame": ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-frames:v", "1",
                             "-pix_fmt", "yuv420p"]}
    stores = {}
    for name, args in sources.items():
        video = root / f"{name}.mp4"
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", *args, "-c:v", "libx264", str(video)], check=True)
        stores[name] = root / f"{name}.h5"
        extract_frames(video, stores[name], name, frames_params(60))
    return stores


def test_flow_of_a_still_and_an_odd_sized_video(awkward_frames, tmp_path):
    for name, pairs in (("still", 49), ("odd", 24)):
        out = tmp_path / f"{name}.h5"
        assert flow_stage.main(["--frames", str(awkward_frames[name]), "--out", str(out), "--threads", "2",
                                "--params", json.dumps(dataclasses.asdict(flow_params("farneback")))]) == 0
        with FlowStore(out) as flow:
            assert len(flow) == pairs
            if name == "still":
                assert np.abs(flow.read(np.arange(pairs))).max() <= 10.0 / 255 * 1.01  # zero, to one step
            else:
                assert (flow.height, flow.width) == (60, 108)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_one_frame_video_has_no_flow_and_says_so(awkward_frames, tmp_path, threads):
    out = tmp_path / "one.h5"
    with pytest.raises(InputError, match=r"one_frame\.h5: video 'one_frame': no pair of consecutive frames"):
        compute_flow(awkward_frames["one_frame"], out, flow_params("farneback"), threads=threads)
    assert not out.exists()
    keyframes = tmp_path / "keyframes.csv"
    keyframes.write_text("still,910\n")  # a keyframe far from every frame: no pair in its window
    with pytest.raises(InputError, match=r"video 'still': no pair of consecutive frames within context_s"):
        compute_flow(awkward_frames["still"], out, flow_params("farneback", context_s=0.5), keyframes=keyframes,
                     threads=threads)
    assert not out.exists()
