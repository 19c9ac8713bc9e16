"""Probing videos without ffprobe: decode the video stream once to ffmpeg's null muxer.

Frame counts and times are the decoder's (edit lists, variable frame rate), not the container's
packet counts or nominal rates: a stream-copy cut with an edit list has more packets than frames.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.errors import InputError
from pipeline.media.ffmpeg import FRAME_STATS_FORMAT, ffmpeg_exe, read_frame_times, run_ffmpeg, stderr_tail


@dataclasses.dataclass(frozen=True)
class VideoProbe:
    """What the dataset stage needs to know about a video.

    fps: mean decoded frame rate, (n_frames - 1) / (t_last - t_first); n_frames: decoded video
    frames (exact); duration_s: end of the last frame in video time, t_last + 1 / fps
    (t_last for a single frame);
    width, height: decoded frame size (after the rotation ffmpeg applies); has_audio: the file
    has an audio stream.
    """

    fps: float
    n_frames: int
    duration_s: float
    width: int
    height: int
    has_audio: bool


_SECTION = re.compile(r"^(Input|Output) #\d+")
_STREAM = re.compile(r"^\s*Stream #\d+:\d+.*?: (Video|Audio): (.*)$")
_SIZE = re.compile(r"[ ,](\d{2,5})x(\d{2,5})[ ,\[]")


def parse_streams(stderr: str) -> dict[str, list[tuple[str, str]]]:
    """Stream lines of ffmpeg's banner: {"Input": [(kind, description)], "Output": [...]}.

    ``kind`` is "Video" or "Audio"; other stream kinds are left out.
    """
    sections: dict[str, list[tuple[str, str]]] = {"Input": [], "Output": []}
    current = None
    for line in stderr.splitlines():
        section = _SECTION.match(line)
        if section:
            current = section.group(1)
            continue
        stream = _STREAM.match(line)
        if stream and current:
            sections[current].append((stream.group(1), stream.group(2)))
    return sections


def has_audio_stream(path: str | Path) -> bool:
    """Whether the file at ``path`` has an audio stream (read from ffmpeg's banner, no decoding)."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.decode(errors="replace")
    streams = parse_streams(stderr)["Input"]
    if not streams:
        raise InputError(path, f"ffmpeg cannot read it: {stderr_tail(stderr)}")
    return any(kind == "Audio" for kind, _ in streams)


def decoded_frame_times(path: str | Path, input_args: Sequence[str] = ()) -> tuple[np.ndarray, str]:
    """Decode the first video stream of ``path`` to the null muxer.

    ``input_args`` are ffmpeg input options (``-ss``, ``-t``, ``-threads``). Returns (times, stderr):
    float64 [n], the video time in seconds of every decoded frame, and ffmpeg's stderr (banner included).
    """
    with tempfile.TemporaryDirectory(prefix="probe") as tmp:
        stats = Path(tmp) / "frames.txt"
        args = ["-nostats", *input_args, "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough",
                "-enc_time_base", "filter", "-stats_enc_pre", str(stats), "-stats_enc_pre_fmt", FRAME_STATS_FORMAT,
                "-f", "null", "-"]
        stderr = run_ffmpeg(args, path)
        times = read_frame_times(stats) if stats.exists() else np.zeros(0)
    return times, stderr


def probe(path: str | Path) -> VideoProbe:
    """Probe the video at ``path`` by decoding its first video stream (exact frame count and times).

    Raises :class:`InputError` naming the file when it has no video stream or no decodable frame.
    Costs one decode of the video (the decode limit; about 100x real time at 320x240).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such video file")
    times, stderr = decoded_frame_times(path)
    streams = parse_streams(stderr)
    if len(times) == 0:
        raise InputError(path, f"no decodable video frame: {stderr_tail(stderr)}")
    video_out = [desc for kind, desc in streams["Output"] if kind == "Video"]
    size = _SIZE.search(video_out[0]) if video_out else None
    if size is None:
        raise InputError(path, f"cannot read the frame size from ffmpeg's output: {stderr_tail(stderr)}")
    fps = mean_fps(times)
    return VideoProbe(
        fps=fps,
        n_frames=int(len(times)),
        duration_s=float(times[-1] + (1.0 / fps if fps > 0 else 0.0)),
        width=int(size.group(1)),
        height=int(size.group(2)),
        has_audio=any(kind == "Audio" for kind, _ in streams["Input"]),
    )


def mean_fps(times: np.ndarray) -> float:
    """Mean frame rate of frames at ``times`` (float64 [n], seconds): (n - 1) / span, to 1e-6; 0 when n < 2."""
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return round(float((len(times) - 1) / (times[-1] - times[0])), 6)
