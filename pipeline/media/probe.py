"""Probing videos: stream facts from PyAV, frame counts and times from one decode by ffmpeg.

PyAV (``av``, FFmpeg's libraries behind a Python API) opens the container and reads the facts
that do not depend on decoding every frame: whether there is an audio stream, and the displayed
frame size (the decoded size, width and height swapped when the display matrix turns the picture
a quarter turn, as ffmpeg's autorotation does).

Frame counts and times are the decoder's (edit lists, variable frame rate), not the container's
packet counts or nominal rates: a stream-copy cut with an edit list has more packets than frames.
They come from the ffmpeg binary that the frames stage uses (:func:`decoded_frame_times`), so that
the probe counts exactly the frames that the frames stage sees.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import av
import ffmpeg as ffmpeg_python
import numpy as np

from pipeline.errors import InputError
from pipeline.media.ffmpeg import FRAME_STATS_FORMAT, read_frame_times, run_ffmpeg


@dataclasses.dataclass(frozen=True)
class VideoProbe:
    """What the dataset stage needs to know about a video.

    fps: mean decoded frame rate, (n_frames - 1) / (t_last - t_first); n_frames: decoded video
    frames (exact); duration_s: end of the last frame in video time, t_last + 1 / fps
    (t_last for a single frame);
    width, height: displayed frame size (:func:`stream_facts`); has_audio: the file has an audio stream.
    """

    fps: float
    n_frames: int
    duration_s: float
    width: int
    height: int
    has_audio: bool


@dataclasses.dataclass(frozen=True)
class StreamFacts:
    """What the container says: displayed size of the first video stream (None without one),
    whether an audio stream exists, and where the first video stream ends in video time by the
    container's word (its own duration, else the file's; None when it declares none)."""

    width: int | None
    height: int | None
    has_audio: bool
    declared_end_s: float | None = None


#: A video whose decoded frames end earlier than the container declares, by more than the larger
#: of these (seconds, fraction of the declared length), is truncated or damaged.
TRUNCATION_SLACK_S = 1.0
TRUNCATION_SLACK_FRACTION = 0.02


def stream_facts(path: str | Path) -> StreamFacts:
    """Open ``path`` with PyAV; the size comes from the first decoded frame of the first video stream.

    The size is the decoded one, width and height swapped when the frame's display rotation is a
    quarter turn (90 or 270 degrees; ffmpeg transposes those). Raises :class:`InputError` naming the
    file when PyAV cannot open it.
    """
    try:
        with av.open(str(path)) as container:
            has_audio = len(container.streams.audio) > 0
            if not container.streams.video:
                return StreamFacts(None, None, has_audio)
            declared_end = _declared_end(container, container.streams.video[0])
            frame = next(container.decode(container.streams.video[0]), None)
    except av.FFmpegError as err:
        raise InputError(path, f"cannot read it as a video: {err}") from None
    if frame is None:
        return StreamFacts(None, None, has_audio)
    width, height = frame.width, frame.height
    if abs(abs(frame.rotation) % 180 - 90) < 1:
        width, height = height, width
    return StreamFacts(width, height, has_audio, declared_end)


def _declared_end(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """End of ``stream`` in video time (seconds from the file's start) as the container declares it:
    the stream's start and duration (mp4), else the file's duration (mkv, webm); None without either."""
    file_start = (container.start_time or 0) / av.time_base
    if stream.duration is not None and stream.time_base is not None:
        return float(((stream.start_time or 0) + stream.duration) * stream.time_base) - file_start
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def unreadable_reason(path: str | Path) -> str | None:
    """Why ``path`` cannot be decoded as a video, in plain words (missing, empty, not a video, no
    video stream), or None when its container looks sound; for the message of a failed decode."""
    path = Path(path)
    if not path.is_file():
        return "no such video file"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        facts = stream_facts(path)
    except InputError as err:
        return err.message
    return "no video stream with a decodable frame" if facts.width is None else None


def has_audio_stream(path: str | Path) -> bool:
    """Whether the file at ``path`` has an audio stream (PyAV, no decoding)."""
    try:
        with av.open(str(path)) as container:
            return len(container.streams.audio) > 0
    except av.FFmpegError as err:
        raise InputError(path, f"cannot read it as a video: {err}") from None


def decoded_frame_times(path: str | Path, start: float | None = None, duration: float | None = None,
                        threads: int | None = None) -> np.ndarray:
    """float64 [n]: the video time (seconds) of every frame of the first video stream of ``path``.

    ffmpeg decodes the stream to its null muxer and writes each frame's pts (``-stats_enc_pre``).
    ``start`` and ``duration`` (seconds) are ffmpeg's input ``-ss`` (an accurate seek: the seek
    point becomes time 0) and ``-t``; ``threads`` its decoder threads. Raises :class:`InputError`
    naming ``path`` when ffmpeg fails.
    """
    options = {"threads": threads, "ss": None if start is None else f"{start:.6f}",
               "t": None if duration is None else f"{duration:.6f}"}
    with tempfile.TemporaryDirectory(prefix="probe") as tmp:
        stats = Path(tmp) / "frames.txt"
        stream = ffmpeg_python.input(str(path), **{k: v for k, v in options.items() if v is not None})["v:0"]
        run_ffmpeg(stream.output("-", format="null", fps_mode="passthrough", enc_time_base="filter",
                                 stats_enc_pre=str(stats), stats_enc_pre_fmt=FRAME_STATS_FORMAT), path)
        return read_frame_times(stats) if stats.exists() else np.zeros(0)


def probe(path: str | Path) -> VideoProbe:
    """Probe the video at ``path``: :func:`stream_facts`, and a decode of its first video stream
    (exact frame count and times).

    Raises :class:`InputError` naming the file when it is missing, empty, unreadable, has no video
    stream or no decodable frame, or is truncated: its frames end more than the larger of
    :data:`TRUNCATION_SLACK_S` and :data:`TRUNCATION_SLACK_FRACTION` of its length before the end
    that its container declares (a download or copy cut short). Costs one decode of the video (the
    decode limit; about 100x real time at 320x240).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such video file")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file (0 bytes)")
    facts = stream_facts(path)
    if facts.width is None or facts.height is None:
        raise InputError(path, "no video stream with a decodable frame")
    times = decoded_frame_times(path)
    if len(times) == 0:
        raise InputError(path, "no decodable video frame")
    fps = mean_fps(times)
    duration_s = float(times[-1] + (1.0 / fps if fps > 0 else 0.0))
    declared = facts.declared_end_s
    if declared is not None and duration_s < declared - max(TRUNCATION_SLACK_S, TRUNCATION_SLACK_FRACTION * declared):
        raise InputError(path, f"truncated or damaged: its {len(times)} decodable frames end at {duration_s:.2f} s, "
                               f"its container declares {declared:.2f} s")
    return VideoProbe(
        fps=fps,
        n_frames=int(len(times)),
        duration_s=duration_s,
        width=int(facts.width),
        height=int(facts.height),
        has_audio=facts.has_audio,
    )


@dataclasses.dataclass(frozen=True)
class ContainerEnd:
    """A long movie's facts from its container and packets, without decoding: displayed size, the
    stream's average frame rate, whether it has audio, and where its last video packet ends (s)."""

    width: int
    height: int
    fps: float
    has_audio: bool
    end_s: float


def container_end(path: str | Path) -> ContainerEnd:
    """Read every packet of the first video stream of ``path`` (demuxing only: about disk speed).

    Raises :class:`InputError` naming the file when it is missing, empty, unreadable or without a
    video stream, or truncated: its packets end more than the larger of :data:`TRUNCATION_SLACK_S`
    and :data:`TRUNCATION_SLACK_FRACTION` of its length before the end its container declares.
    """
    reason = unreadable_reason(path)
    if reason is not None:
        raise InputError(path, reason)
    facts = stream_facts(path)
    end = 0.0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            file_start = (container.start_time or 0) / av.time_base
            rate = float(stream.average_rate or stream.guessed_rate or 0)
            for packet in container.demux(stream):
                if packet.pts is not None and packet.time_base is not None:
                    span = packet.duration or 0
                    end = max(end, float((packet.pts + span) * packet.time_base) - file_start)
    except av.FFmpegError as err:
        raise InputError(path, f"cannot read it to its end: {err}") from None
    declared = facts.declared_end_s
    if declared is not None and end < declared - max(TRUNCATION_SLACK_S, TRUNCATION_SLACK_FRACTION * declared):
        raise InputError(path, f"truncated or damaged: its video packets end at {end:.2f} s, its container "
                               f"declares {declared:.2f} s")
    if rate <= 0:
        raise InputError(path, "the video stream declares no frame rate")
    return ContainerEnd(width=int(facts.width), height=int(facts.height), fps=round(rate, 6),
                        has_audio=facts.has_audio, end_s=end)


def mean_fps(times: np.ndarray) -> float:
    """Mean frame rate of frames at ``times`` (float64 [n], seconds): (n - 1) / span, to 1e-6; 0 when n < 2."""
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return round(float((len(times) - 1) / (times[-1] - times[0])), 6)
