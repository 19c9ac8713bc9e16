"""Optical flow between consecutive stored frames into ``results/flow/{method}/{video}.h5``, and its reader.

Methods: TV-L1 (opencv-contrib's ``cv2.optflow.DualTVL1OpticalFlow``) and Farneback
(``cv2.calcOpticalFlowFarneback``), each with every OpenCV parameter in the config (the schema
holds their defaults, OpenCV's own; ``FlowParams.options`` arrives complete).

Store layout (DESIGN.md, the denseflow convention): per frame pair, ``x`` and ``y`` are the flow's
components in pixels quantized to uint8 over [-bound, bound] (``q = round((v + bound) * 255 / (2 *
bound))``, clipped) and JPEG-encoded as grayscale images (variable-length uint8 datasets); ``t``
float64 [P] is the AVA time of the first frame of each pair; attrs bound, height, width, fps,
method, video_id, context_s and provenance. Pairs are made only between frames that are consecutive
at the store's frame rate (interval under 1.5 / fps), never across the gaps of a ``window=clips``
store; with keyframes (and ``context_s``), only the pairs that start within context_s of a
keyframe (those the flow clips read) are computed. A store without any such pair (a one-frame
video) is an :class:`~pipeline.errors.InputError` naming the frame store and the video.
The reader makes the paper's third channel dx * dy when loading.

Pairs are spread over ``threads`` worker processes, each with OpenCV on one thread.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import h5py
import numpy as np

from pipeline.errors import InputError
from pipeline.media.frames import (FrameStore, TimedStore, decode_jpeg, encode_jpeg, in_windows, merge_windows,
                                   video_keyframes)
from pipeline.params import FlowParams, as_dict
from pipeline.progress import progress
from pipeline.store import atomic_path, set_h5_provenance

METHODS = ("farneback", "tvl1")

#: The arguments of ``cv2.calcOpticalFlowFarneback`` after (prev, next, flow), in order.
FARNEBACK_ARGS = ("pyr_scale", "levels", "winsize", "iterations", "poly_n", "poly_sigma", "flags")
#: Config key -> DualTVL1OpticalFlow setter.
TVL1_SETTERS = {"tau": "setTau", "lambda": "setLambda", "theta": "setTheta", "nscales": "setScalesNumber",
                "warps": "setWarpingsNumber", "epsilon": "setEpsilon", "inner_iterations": "setInnerIterations",
                "outer_iterations": "setOuterIterations", "scale_step": "setScaleStep", "gamma": "setGamma",
                "median_filtering": "setMedianFiltering", "use_initial_flow": "setUseInitialFlow"}
#: Most pairs a worker computes per task (frames decoded once per task); fewer when a store has
#: few pairs, so that every worker gets at least four tasks.
CHUNK_PAIRS = 16
#: Frames further apart than this many frame intervals (1 / fps) are not paired.
MAX_PAIR_GAP = 1.5

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def check_options(method: str, options: dict[str, Any]) -> None:
    """Raise ValueError unless ``options`` names every OpenCV parameter of ``method`` and nothing else."""
    if method not in METHODS:
        raise ValueError(f"flow method must be one of {METHODS}, got {method!r}")
    known = set(FARNEBACK_ARGS if method == "farneback" else TVL1_SETTERS)
    unknown, missing = sorted(set(options) - known), sorted(known - set(options))
    if unknown or missing:
        raise ValueError(f"{method} options: unknown parameters {unknown}, missing {missing}; known: {sorted(known)}")


def make_flow(method: str, options: dict[str, Any]) -> FlowFn:
    """A function (prev, next) -> flow float32 [H, W, 2] (dx, dy in pixels) for uint8 [H, W] gray frames.

    ``options``: every OpenCV parameter of ``method`` (:func:`check_options`).
    """
    check_options(method, options)
    if method == "farneback":
        def farneback(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
            return cv2.calcOpticalFlowFarneback(
                prev, nxt, None, float(options["pyr_scale"]), int(options["levels"]), int(options["winsize"]),
                int(options["iterations"]), int(options["poly_n"]), float(options["poly_sigma"]),
                int(options["flags"]))
        return farneback
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    for key, setter in TVL1_SETTERS.items():
        value = options[key]
        getattr(tvl1, setter)(bool(value) if key == "use_initial_flow" else value)

    def dual_tvl1(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return tvl1.calc(prev, nxt, None)
    return dual_tvl1


def quantize(flow: np.ndarray, bound: float) -> np.ndarray:
    """uint8 of the same shape: round((v + bound) * 255 / (2 * bound)), clipped to [0, 255]."""
    scaled = (flow.astype(np.float32) + np.float32(bound)) * np.float32(255.0 / (2.0 * bound))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def dequantize(q: np.ndarray, bound: float) -> np.ndarray:
    """float32 of the same shape: q * 2 * bound / 255 - bound (error <= bound / 255 inside ±bound)."""
    return q.astype(np.float32) * np.float32(2.0 * bound / 255.0) - np.float32(bound)


def pair_starts(t: np.ndarray, fps: float) -> np.ndarray:
    """int64 [P]: indices i such that frames i and i + 1 (times ``t`` float64 [T]) form a pair,
    i.e. are consecutive at ``fps`` (interval below MAX_PAIR_GAP / fps; every neighbour when fps <= 0)."""
    gaps = np.diff(t)
    if fps <= 0:
        return np.arange(len(gaps), dtype=np.int64)
    return np.flatnonzero(gaps < MAX_PAIR_GAP / fps).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Workers

_worker: dict = {}


def _init_worker(frames_path: str, method: str, options: dict[str, Any], bound: float, quality: int) -> None:
    """Per-process state: the open frame store and the flow function; OpenCV on one thread."""
    cv2.setNumThreads(1)
    _worker.update(store=FrameStore(frames_path), flow=make_flow(method, options), bound=bound, quality=quality)


def _flow_chunk(starts: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(x JPEG, y JPEG) for the pairs starting at frame indices ``starts`` (int64 [n], sorted)."""
    store: FrameStore = _worker["store"]
    needed = np.unique(np.concatenate([starts, starts + 1]))
    gray = dict(zip(needed.tolist(), store.read(needed, gray=True)))
    out = []
    for i in starts.tolist():
        q = quantize(_worker["flow"](gray[i], gray[i + 1]), _worker["bound"])
        out.append((encode_jpeg(np.ascontiguousarray(q[..., 0]), _worker["quality"]),
                    encode_jpeg(np.ascontiguousarray(q[..., 1]), _worker["quality"])))
    return out


def _chunks(starts: np.ndarray, size: int) -> list[np.ndarray]:
    return [starts[k:k + size] for k in range(0, len(starts), size)]


def compute_flow_jpegs(frames_path: str | Path, starts: np.ndarray, method: str, options: dict[str, Any],
                       bound: float, quality: int, threads: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(x JPEG, y JPEG) for each pair start in ``starts``, in order, over ``threads`` processes."""
    init_args = (str(frames_path), method, options, bound, quality)
    chunks = _chunks(starts, max(1, min(CHUNK_PAIRS, -(-len(starts) // (4 * max(1, threads))))))
    if threads <= 1:
        _init_worker(*init_args)
        try:
            for chunk in chunks:
                yield from _flow_chunk(chunk)
        finally:
            _worker.pop("store").close()
        return
    with multiprocessing.get_context("fork").Pool(threads, initializer=_init_worker, initargs=init_args) as pool:
        for result in pool.imap(_flow_chunk, chunks):
            yield from result


def compute_flow(frames: str | Path, out: str | Path, params: FlowParams, keyframes: str | Path | None = None,
                 threads: int = 1) -> int:
    """Flow (``params.method``) of every pair of consecutive frames of the frame store ``frames`` into
    ``out`` (the module's layout), over ``threads`` processes; returns the number of pairs stored.

    With ``keyframes`` (a ``video_id,timestamp`` CSV; needs ``params.context_s``), only the pairs
    whose first frame lies within ``context_s`` of one of the video's keyframes are computed: those
    that the flow clips read.
    """
    method, bound, quality = params.method, params.bound, params.jpeg_quality
    check_options(method, params.options)
    with FrameStore(frames) as store:
        t, fps, height, width, video_id = store.t, store.fps, store.height, store.width, store.video_id
    starts = pair_starts(t, fps)
    if keyframes is not None:
        if params.context_s is None:
            raise ValueError("flow for keyframes needs context_s")
        windows = merge_windows(video_keyframes(keyframes, video_id), params.context_s)
        starts = starts[in_windows(t[starts], windows)]
    if len(starts) == 0:
        near = " within context_s of a keyframe" if keyframes is not None else ""
        raise InputError(frames, f"video {video_id!r}: no pair of consecutive frames{near} to compute flow on "
                                 f"({len(t)} frames stored; a one-frame video has no flow)")
    vlen = h5py.vlen_dtype(np.uint8)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        x = h5.create_dataset("x", shape=(len(starts),), dtype=vlen, chunks=(max(1, min(len(starts), 256)),))
        y = h5.create_dataset("y", shape=(len(starts),), dtype=vlen, chunks=(max(1, min(len(starts), 256)),))
        jpegs = compute_flow_jpegs(frames, starts, method, params.options, bound, quality, threads)
        for k, (xj, yj) in enumerate(progress(jpegs, desc=f"flow {method} {video_id}", total=len(starts), unit="pair")):
            x[k] = xj
            y[k] = yj
        h5.create_dataset("t", data=t[starts], dtype=np.float64)
        h5.attrs.update({"bound": bound, "height": height, "width": width, "fps": fps, "method": method,
                         "video_id": video_id, "source": str(frames),
                         "context_s": float(params.context_s) if keyframes is not None else float("nan")})
        set_h5_provenance(h5, f"flow/{method}", as_dict(params))
    return len(starts)


# ----------------------------------------------------------------------------------------------
# Accuracy on known motion (used by the tests and the benchmark)


def textured_image(size: int, seed: int = 0) -> np.ndarray:
    """float32 [size, size]: a smooth random texture in [0, 255] (Gaussian-blurred noise, sigma 2 px)."""
    noise = np.random.default_rng(seed).random((size, size)).astype(np.float32)
    image = cv2.GaussianBlur(noise, (0, 0), 2.0)
    return (image - image.min()) / (image.max() - image.min()) * 255.0


def known_motions(size: int) -> dict[str, np.ndarray]:
    """2x3 float32 affine maps of a size x size frame: a translation (2.5, -1.5) px, a 3 degree
    rotation and a 5 % zoom about the centre."""
    centre = ((size - 1) / 2, (size - 1) / 2)
    return {
        "translate": np.float32([[1, 0, 2.5], [0, 1, -1.5]]),
        "rotate": cv2.getRotationMatrix2D(centre, 3.0, 1.0).astype(np.float32),
        "zoom": cv2.getRotationMatrix2D(centre, 0.0, 1.05).astype(np.float32),
    }


def affine_pair(image: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame0, frame1 uint8 [H, W], true flow float32 [H, W, 2]) for ``image`` float32 [H, W], where
    frame1 moves each point x of frame0 to ``matrix @ [x, 1]``."""
    h, w = image.shape
    moved = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    truth = np.stack([matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2] - xs,
                      matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2] - ys], axis=-1)
    return _to_uint8(image), _to_uint8(moved), truth


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def mean_endpoint_error(flow: np.ndarray, truth: np.ndarray, margin: int = 16) -> float:
    """Mean |flow - truth| (pixels) over [H, W, 2] fields, leaving out ``margin`` pixels at each border."""
    return float(np.linalg.norm(flow - truth, axis=-1)[margin:-margin, margin:-margin].mean())


def known_motion_errors(method: str, options: dict[str, Any], size: int = 112) -> dict[str, float]:
    """Mean endpoint error of ``method`` (with its OpenCV ``options``) on each of :func:`known_motions`."""
    flow = make_flow(method, options)
    errors = {}
    for name, matrix in known_motions(size).items():
        frame0, frame1, truth = affine_pair(textured_image(size), matrix)
        errors[name] = mean_endpoint_error(flow(frame0, frame1), truth)
    return errors


# ----------------------------------------------------------------------------------------------
# Reader


class FlowStore(TimedStore):
    """Reader of a flow store; t of a pair is the time of its first frame.

    t: float64 [P]; bound, height, width from the attrs.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._h5 = h5py.File(self.path, "r")
        self._x, self._y = self._h5["x"], self._h5["y"]
        self.t = self._h5["t"][:]
        self.bound = float(self._h5.attrs["bound"])
        self.height = int(self._h5.attrs["height"])
        self.width = int(self._h5.attrs["width"])

    def close(self) -> None:
        self._h5.close()

    def read(self, indices: np.ndarray) -> np.ndarray:
        """float32 [n, H, W, 3]: dx, dy in pixels (dequantized) and dx * dy, for pairs ``indices``."""
        indices = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        out = np.empty((len(indices), self.height, self.width, 3), dtype=np.float32)
        for k, index in enumerate(indices.tolist()):
            out[k, ..., 0] = dequantize(decode_jpeg(self._x[index], gray=True), self.bound)
            out[k, ..., 1] = dequantize(decode_jpeg(self._y[index], gray=True), self.bound)
        out[..., 2] = out[..., 0] * out[..., 1]
        return out

    def clip(self, center_t: float, n_frames: int, stride: int) -> np.ndarray:
        """float32 [n_frames, H, W, 3]: the pairs of :meth:`TimedStore.clip_indices`."""
        return self.read(self.clip_indices(center_t, n_frames, stride))
