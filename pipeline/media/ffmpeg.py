"""ffmpeg: finding the binary, running it, probing videos, and reading the decoder's frame times.

There is no ffprobe: :func:`probe` decodes the video stream to ffmpeg's null muxer and has
ffmpeg write the presentation timestamp of every decoded frame (``-stats_enc_pre``), so that
frame counts and times are those of the decoder (edit lists, variable frame rate), not the
container's packet counts or nominal rates.

Times are ffmpeg's default "video time": the decoder's pts minus the file's start time, the
time a player shows. The frames and audio stages use the same convention, so they stay aligned.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.errors import InputError

#: ``-stats_enc_pre_fmt`` that :func:`read_frame_times` parses: integer pts and its time base.
FRAME_STATS_FORMAT = "{pts} {tb}"


@functools.lru_cache(maxsize=None)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: ``$FFMPEG_BINARY``, then ``ffmpeg`` on PATH, then imageio-ffmpeg's."""
    explicit = os.environ.get("FFMPEG_BINARY")
    if explicit:
        return explicit
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: Sequence[str], path: str | Path) -> str:
    """Run ffmpeg with ``args`` (no binary name) and return its stderr.

    Raises :class:`InputError` naming ``path`` (the input the command is about) with the tail of
    ffmpeg's stderr when ffmpeg fails.
    """
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise InputError(path, f"ffmpeg failed (exit {proc.returncode}): {stderr_tail(stderr)}")
    return stderr


def stderr_tail(stderr: str, lines: int = 8) -> str:
    """The last ``lines`` non-empty lines of ffmpeg's stderr, joined by `` | ``."""
    kept = [line.strip() for line in stderr.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def read_frame_times(stats_path: str | Path) -> np.ndarray:
    """Frame times in seconds from a ``-stats_enc_pre`` file written with :data:`FRAME_STATS_FORMAT`.

    Returns float64 [n], one per encoded frame in output order, ``pts * time_base`` computed
    exactly (fractions) before the conversion to float.
    """
    times = []
    for number, line in enumerate(Path(stats_path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            pts_text, tb_text = line.split()
            times.append(float(int(pts_text) * Fraction(tb_text)))
        except (ValueError, ZeroDivisionError) as err:
            raise InputError(stats_path, f"bad frame stats line {line!r}: {err}", line=number) from None
    return np.asarray(times, dtype=np.float64)


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


def decoded_frame_times(path: str | Path, vf: str | None = None) -> tuple[np.ndarray, str]:
    """Decode the first video stream of ``path`` to the null muxer.

    Returns (times, stderr): float64 [n] video time in seconds of every frame that leaves the
    filter chain ``vf`` (all decoded frames when None), and ffmpeg's stderr (banner included).
    """
    with tempfile.TemporaryDirectory(prefix="probe") as tmp:
        stats = Path(tmp) / "frames.txt"
        args = ["-nostats", "-i", str(path), "-map", "0:v:0"]
        if vf:
            args += ["-vf", vf]
        args += ["-fps_mode", "passthrough", "-enc_time_base", "filter",
                 "-stats_enc_pre", str(stats), "-stats_enc_pre_fmt", FRAME_STATS_FORMAT,
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
