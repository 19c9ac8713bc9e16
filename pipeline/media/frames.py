"""Frames: decode a video with ffmpeg into the per-video JPEG store ``results/frames/{video}.h5``, and read it.

Store layout (DESIGN.md): ``jpeg`` variable-length uint8 [T], one JPEG per frame; ``t`` float64 [T],
AVA-timeline seconds (decoder pts in video time + time_offset); attrs fps, height, width, plus
video_id, time_offset, window, context_s and provenance.

Frame selection happens in ffmpeg's ``select`` filter, on the decoder's timestamps:
- rate: the video time axis is cut into slots of 1/fps seconds starting at 0, and the first
  decoded frame of each slot is kept. Every kept frame keeps its own source pts (no resampling,
  no duplication), so variable frame rate sources stay exact and a source slower than ``fps``
  simply keeps all its frames.
- window ``clips``: only frames whose AVA time lies in [k - context_s, k + context_s] for a
  keyframe k of the video (:func:`video_keyframes`) are kept. The rate rule looks at every
  decoded frame, so a clips store holds exactly the frames of the ``all`` store that fall in the windows.
A file that ffmpeg cannot decode at all is an :class:`~pipeline.errors.InputError` naming it and
saying why (empty, not a video, no video stream); errors that ffmpeg decodes past (a damaged or
truncated file, which the dataset stage's probe refuses) are a warning on stderr naming the video.
The frames are resized in ffmpeg to the configured short side (display aspect kept, even sizes,
area averaging), converted to full-range BT.601 YUV 4:2:0 (from the colour matrix the source is
tagged with), which is JPEG's own colour space (JFIF), sent through a pipe as YUV4MPEG2 (half the
bytes of RGB), and JPEG-encoded from those planes by libjpeg-turbo (simplejpeg) on a thread pool:
no RGB round trip, and the encoder releases the GIL.

ffmpeg-python is imported where the command is built, so that the reader :class:`FrameStore` loads
in the models' environment, which does not have it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Iterator, Self

import cv2
import h5py
import numpy as np
import simplejpeg

from pipeline.ava.formats import read_keyframes
from pipeline.errors import InputError
from pipeline.media.ffmpeg import FRAME_STATS_FORMAT, command, read_frame_times, stderr_tail
from pipeline.params import FramesParams, as_dict
from pipeline.progress import progress
from pipeline.store import atomic_path, set_h5_provenance

#: Slack (seconds) on window edges, for the float rounding of pts * time_base.
TIME_TOLERANCE = 1e-7
#: Slack (in slots) so that a frame exactly on a slot boundary opens that slot despite rounding.
SLOT_TOLERANCE = 1e-4
JPEG_BATCH = 256


# ----------------------------------------------------------------------------------------------
# Parameters and frame selection


def video_keyframes(path: str | Path, video_id: str) -> np.ndarray:
    """Keyframe times of ``video_id`` in a ``video_id,timestamp`` CSV (:func:`pipeline.ava.formats.read_keyframes`).

    Returns float64 [K], sorted unique AVA-timeline seconds. Raises :class:`InputError` naming the
    file when it has no keyframe of ``video_id`` (a keyframe window would keep nothing).
    """
    rows = read_keyframes(path)
    times = np.unique(rows.timestamp[rows.video_id == video_id].astype(np.float64))
    if len(times) == 0:
        raise InputError(path, f"no keyframe of video {video_id!r}: its keyframe windows would keep nothing")
    return times


def merge_windows(centers: np.ndarray, half_width: float) -> list[tuple[float, float]]:
    """Union of the intervals [c - half_width, c + half_width] as sorted disjoint (start, end) pairs."""
    merged: list[tuple[float, float]] = []
    for center in np.sort(centers):
        start, end = float(center - half_width), float(center + half_width)
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def in_windows(times: np.ndarray, windows: list[tuple[float, float]]) -> np.ndarray:
    """bool [n]: whether each time lies in one of ``windows`` (edges included, within TIME_TOLERANCE)."""
    inside = np.zeros(len(times), dtype=bool)
    for start, end in windows:
        inside |= (times >= start - TIME_TOLERANCE) & (times <= end + TIME_TOLERANCE)
    return inside


def select_expression(fps: float, windows: list[tuple[float, float]] | None) -> str:
    """ffmpeg ``select`` expression for the rate rule and the windows (given in video time)."""
    slot = f"floor(%s*{fps!r}+{SLOT_TOLERANCE!r})"
    terms = [f"(isnan(prev_t)+gt({slot % 't'},{slot % 'prev_t'}))"]
    if windows is not None:
        inside = "+".join(f"between(t,{start - TIME_TOLERANCE!r},{end + TIME_TOLERANCE!r})"
                          for start, end in windows)
        terms.append(f"gt({inside or '0'},0)")
    return "*".join(terms)


def scale_filter_args(short_side: int) -> dict[str, str]:
    """``scale`` filter arguments: short side of the *displayed* picture (sar applied) to
    ``short_side``, the other side to the nearest even size keeping the display aspect ratio;
    output in full-range BT.601 YUV, the colour space of JFIF JPEG."""
    landscape = "gte(iw*sar,ih)"
    return {
        "w": f"if({landscape},2*round({short_side}*iw*sar/ih/2),{short_side})",
        "h": f"if({landscape},{short_side},2*round({short_side}*ih/(iw*sar)/2))",
        "flags": "area", "out_color_matrix": "bt601", "out_range": "pc",
    }


def decode_command(video: str | Path, fps: float, short_side: int,
                   windows_video_time: list[tuple[float, float]] | None, stats_path: Path, threads: int) -> list[str]:
    """ffmpeg command that writes the selected (:func:`select_expression`), resized
    (:func:`scale_filter_args`) frames to stdout as YUV4MPEG2 (4:2:0) and their pts (filter time
    base) to ``stats_path``."""
    import ffmpeg as ffmpeg_python

    stream = (ffmpeg_python.input(str(video), threads=threads)["v:0"]
              .filter("select", select_expression(fps, windows_video_time))
              .filter("scale", **scale_filter_args(short_side)).filter("setsar", "1").filter("format", "yuv420p"))
    return command(stream.output("pipe:", format="yuv4mpegpipe", fps_mode="passthrough", enc_time_base="filter",
                                 stats_enc_pre=str(stats_path), stats_enc_pre_fmt=FRAME_STATS_FORMAT))


# ----------------------------------------------------------------------------------------------
# Decoding and encoding


def read_y4m_frames(pipe: IO[bytes]) -> Iterator[np.ndarray]:
    """Frames of a YUV4MPEG2 4:2:0 stream: uint8 [H * 3 // 2, W] I420 planes (Y, then U, then V) each."""
    header = pipe.readline().split()
    if not header:
        return
    if header[0] != b"YUV4MPEG2":
        raise ValueError(f"not a YUV4MPEG2 stream: {b' '.join(header)[:60]!r}")
    fields = {token[:1]: token[1:] for token in header[1:]}
    if not fields.get(b"C", b"420").startswith(b"420"):
        raise ValueError(f"expected 4:2:0 frames, got C{fields[b'C'].decode()}")
    width, height = int(fields[b"W"]), int(fields[b"H"])
    size = width * height * 3 // 2
    while True:
        marker = pipe.readline()
        if not marker:
            return
        if not marker.startswith(b"FRAME"):
            raise ValueError(f"bad YUV4MPEG2 frame header {marker[:20]!r}")
        data = pipe.read(size)
        if len(data) != size:
            raise ValueError(f"truncated frame: {len(data)} of {size} bytes")
        yield np.frombuffer(data, dtype=np.uint8).reshape(height * 3 // 2, width)


def encode_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG of an RGB image uint8 [H, W, 3] (or a gray one [H, W]) as uint8 [nbytes]."""
    if image.ndim == 2:
        return _as_array(simplejpeg.encode_jpeg_yuv_planes(np.ascontiguousarray(image), None, None, int(quality)))
    return _as_array(simplejpeg.encode_jpeg(np.ascontiguousarray(image), int(quality), colorspace="RGB",
                                            colorsubsampling="420"))


def encode_i420_jpeg(i420: np.ndarray, quality: int) -> np.ndarray:
    """JPEG (uint8 [nbytes]) of an I420 frame uint8 [H * 3 // 2, W]: full-range BT.601 Y, U and V
    planes one after the other, as JFIF stores them (no colour conversion)."""
    height, width = i420.shape[0] * 2 // 3, i420.shape[1]
    chroma = i420[height:].reshape(2, height // 2, width // 2)
    return _as_array(simplejpeg.encode_jpeg_yuv_planes(i420[:height], chroma[0], chroma[1], int(quality)))


def _as_array(jpeg: bytes) -> np.ndarray:
    return np.frombuffer(jpeg, dtype=np.uint8)


def decode_jpeg(buf: np.ndarray, gray: bool = False) -> np.ndarray:
    """Inverse of :func:`encode_jpeg`: uint8 [H, W, 3] RGB, or [H, W] when ``gray``."""
    if gray:
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def encoded_in_order(frames: Iterator[np.ndarray], quality: int,
                     threads: int) -> Iterator[tuple[np.ndarray, tuple[int, int]]]:
    """JPEG-encode I420 ``frames`` on ``threads`` threads (OpenCV releases the GIL), keeping their order.

    Yields (jpeg uint8 [nbytes], (height, width)) per frame; at most 4 * threads frames in flight.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        pending: collections.deque = collections.deque()
        for frame in frames:
            shape = (frame.shape[0] * 2 // 3, frame.shape[1])
            pending.append((pool.submit(encode_i420_jpeg, frame, quality), shape))
            if len(pending) >= 4 * max(1, threads):
                future, shape = pending.popleft()
                yield future.result(), shape
        while pending:
            future, shape = pending.popleft()
            yield future.result(), shape


def extract_frames(video: str | Path, out: str | Path, video_id: str, params: FramesParams,
                   keyframes: str | Path | None = None, threads: int = 1) -> int:
    """Decode ``video`` into the frame store ``out`` (the module's layout); returns the number of frames stored.

    ``keyframes`` (a ``video_id,timestamp`` CSV) is given exactly when ``params.window == "clips"``,
    which also needs ``params.context_s``. ffmpeg decodes on ``threads`` threads and as many encode JPEGs.
    """
    if (params.window == "clips") != (keyframes is not None):
        raise ValueError(f"window {params.window!r}: keyframes are needed with window clips, and only then")
    windows = None
    if params.window == "clips":
        if params.context_s is None:
            raise ValueError("window clips needs context_s")
        windows = merge_windows(video_keyframes(keyframes, video_id), params.context_s)
    time_offset = params.time_offset
    windows_video_time = None if windows is None else [(a - time_offset, b - time_offset) for a, b in windows]

    with tempfile.TemporaryDirectory(prefix="frames") as tmp, atomic_path(out) as tmp_out:
        stats = Path(tmp) / "frames.txt"
        errors = Path(tmp) / "stderr.txt"
        cmd = decode_command(video, params.fps, params.short_side, windows_video_time, stats, threads)
        with open(errors, "wb") as err_handle, h5py.File(tmp_out, "w") as h5:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_handle, bufsize=1 << 20)
            broken: ValueError | None = None
            try:
                n, shape = _write_jpegs(h5, proc.stdout, params.jpeg_quality, threads, video_id)
            except ValueError as err:  # a broken stream: ffmpeg's own error, when it has one, says more
                broken = err
            finally:
                proc.stdout.close()
                code = proc.wait()
            if code != 0:
                from pipeline.media.probe import unreadable_reason

                reason = unreadable_reason(video)
                raise InputError(video, f"{reason + '; ' if reason else ''}ffmpeg failed (exit {code}): "
                                        f"{stderr_tail(errors.read_text(errors='replace'))}") from broken
            if broken is not None:
                raise InputError(video, f"bad frame stream from ffmpeg: {broken}") from broken
            decode_errors = stderr_tail(errors.read_text(errors="replace"))
            if decode_errors:  # a damaged or truncated file: ffmpeg goes on past what it cannot decode
                print(f"WARNING: {video}: ffmpeg reported errors while decoding {video_id} (frames may be "
                      f"missing): {decode_errors}", file=sys.stderr)
            times = read_frame_times(stats)
            if len(times) != n:
                raise RuntimeError(f"{video}: ffmpeg reported {len(times)} frame times for {n} frames")
            if n == 0:
                raise InputError(video, "no frame selected: the video is empty or the windows miss it")
            times = times + float(time_offset)
            if windows is not None and not in_windows(times, windows).all():
                raise RuntimeError(f"{video}: ffmpeg kept frames outside the keyframe windows")
            if np.any(np.diff(times) <= 0):
                raise InputError(video, "decoded frame times are not increasing")
            h5.create_dataset("t", data=times, dtype=np.float64)
            h5.attrs.update({
                "fps": stored_rate(times, params.fps), "height": shape[0], "width": shape[1], "video_id": video_id,
                "time_offset": float(time_offset), "window": params.window,
                "context_s": float(params.context_s) if windows is not None else float("nan"),
                "source": str(video),
            })
            set_h5_provenance(h5, "frames", as_dict(params))
    return n


def stored_rate(times: np.ndarray, requested: float) -> float:
    """Frame rate of a store with frame times ``times`` (float64 [n]), to 1e-6.

    The mean rate over its intervals shorter than twice the median one (the gaps between clip
    windows left out), capped at ``requested``: a source slower than the requested rate keeps
    its own. 0 for a single frame.
    """
    intervals = np.diff(times)
    if len(intervals) == 0:
        return 0.0
    inside = intervals[intervals < 2 * np.median(intervals)]
    rate = len(inside) / inside.sum() if len(inside) else 1.0 / np.median(intervals)
    return round(float(min(rate, float(requested))), 6)


def _write_jpegs(h5: h5py.File, pipe: IO[bytes], quality: int, threads: int,
                 video_id: str) -> tuple[int, tuple[int, int]]:
    """Stream YUV4MPEG2 frames from ``pipe`` into the vlen dataset ``jpeg`` of ``h5`` as JPEGs.

    Returns (number of frames, (height, width)); all frames must have one size.
    """
    dataset = h5.create_dataset("jpeg", shape=(0,), maxshape=(None,), dtype=h5py.vlen_dtype(np.uint8),
                                chunks=(JPEG_BATCH,))
    batch: list[np.ndarray] = []
    shape: tuple[int, int] | None = None
    n = 0
    bar = progress(encoded_in_order(read_y4m_frames(pipe), quality, threads), desc=f"frames {video_id}", unit="frame")
    for jpeg, frame_shape in bar:
        if shape is None:
            shape = frame_shape
        elif frame_shape != shape:
            raise ValueError(f"frame size changed from {shape} to {frame_shape} at frame {n}")
        batch.append(jpeg)
        n += 1
        if len(batch) == JPEG_BATCH:
            _append(dataset, batch)
    _append(dataset, batch)
    return n, shape or (0, 0)


def _append(dataset: h5py.Dataset, batch: list[np.ndarray]) -> None:
    """Append the arrays of ``batch`` to a 1-D vlen ``dataset`` and empty ``batch``.

    The column is filled element by element and written as it is (``write_direct``): h5py's
    ``dataset[...] = column`` turns a batch of arrays of one length (a still shot, a black screen,
    a single frame: every JPEG alike) into a 2-D array that it cannot write as a column.
    """
    if not batch:
        return
    start = dataset.shape[0]
    dataset.resize((start + len(batch),))
    column = np.empty(len(batch), dtype=dataset.dtype)
    for k, array in enumerate(batch):
        column[k] = array
    dataset.write_direct(column, dest_sel=np.s_[start:])
    batch.clear()


# ----------------------------------------------------------------------------------------------
# Reader


class TimedStore:
    """Shared part of the per-video stores: the times ``t`` and nearest/clip indexing."""

    t: np.ndarray

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the store's file; stores that keep it open override this."""

    def __len__(self) -> int:
        return len(self.t)

    def nearest(self, times: np.ndarray) -> np.ndarray:
        """int64 [n]: index of the stored item whose time is nearest each of ``times`` (earlier on ties)."""
        times = np.atleast_1d(np.asarray(times, dtype=np.float64))
        if len(self.t) == 1:
            return np.zeros(len(times), dtype=np.int64)
        right = np.clip(np.searchsorted(self.t, times), 1, len(self.t) - 1)
        left = right - 1
        take_right = np.abs(self.t[right] - times) < np.abs(times - self.t[left])
        return np.where(take_right, right, left).astype(np.int64)

    def clip_indices(self, center_t: float, n_frames: int, stride: int) -> np.ndarray:
        """int64 [n_frames]: nearest(center_t) + (arange(n_frames) - n_frames // 2) * stride, clamped."""
        center = int(self.nearest(np.array([center_t]))[0])
        indices = center + (np.arange(n_frames) - n_frames // 2) * stride
        return np.clip(indices, 0, len(self.t) - 1).astype(np.int64)


class FrameStore(TimedStore):
    """Reader of a frame store; ``with FrameStore(path) as fs: fs.clip(902.0, 8, 2)``.

    t: float64 [T] AVA-timeline seconds; fps, height, width, video_id from the attrs.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._h5 = h5py.File(self.path, "r")
        self._jpeg = self._h5["jpeg"]
        self.t = self._h5["t"][:]
        self.fps = float(self._h5.attrs["fps"])
        self.height = int(self._h5.attrs["height"])
        self.width = int(self._h5.attrs["width"])
        self.video_id = str(self._h5.attrs.get("video_id", self.path.stem))

    def close(self) -> None:
        self._h5.close()

    def read_jpeg(self, indices: np.ndarray) -> list[np.ndarray]:
        """The stored JPEG bytes (uint8 [nbytes] each) of frames ``indices``."""
        return [self._jpeg[int(i)] for i in np.atleast_1d(indices)]

    def read(self, indices: np.ndarray, gray: bool = False) -> np.ndarray:
        """uint8 [n, H, W, 3] RGB frames at ``indices`` ([n, H, W] grayscale when ``gray``)."""
        indices = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        shape = (len(indices), self.height, self.width) + (() if gray else (3,))
        out = np.empty(shape, dtype=np.uint8)
        cache: dict[int, np.ndarray] = {}
        for k, index in enumerate(indices.tolist()):
            if index not in cache:
                cache[index] = decode_jpeg(self._jpeg[index], gray=gray)
            out[k] = cache[index]
        return out

    def clip(self, center_t: float, n_frames: int, stride: int) -> np.ndarray:
        """uint8 [n_frames, H, W, 3]: the frames of :meth:`TimedStore.clip_indices`."""
        return self.read(self.clip_indices(center_t, n_frames, stride))
