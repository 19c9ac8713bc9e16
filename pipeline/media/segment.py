"""Cutting a movie to a segment (AVA's annotated 900-1801 s) and checking that no frame was lost.

AVA annotates seconds 902-1798 of each movie; SlowFast and MMAction2 cut [900, 1801) with
``ffmpeg -ss 900 -t 901`` and re-encode. :func:`prepare_video` does the same at the source's own
frame rate (frames keep their timestamps: no resampling, no duplicates), as H.264 (and AAC when the
movie has audio), so that the cut's video time 0 is the movie's time ``start`` (to within the
sub-frame offset of the first source frame at or after ``start``, recorded in the check).

Check: the source is decoded a margin around the segment, and the frames whose time lies in
[start, start + duration) are counted there; the cut, decoded, must hold exactly that many, and the
segment must be covered (its frames span the whole duration).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ffmpeg as ffmpeg_python
import numpy as np

from pipeline.errors import InputError
from pipeline.media.ffmpeg import run_ffmpeg
from pipeline.media.probe import decoded_frame_times, has_audio_stream, mean_fps
from pipeline.store import atomic_path

#: Seconds decoded before and after the segment when counting the source's frames.
MARGIN_S = 2.0
#: x264's constant rate factor and preset of the cut.
CRF = 18
PRESET = "veryfast"


@dataclasses.dataclass
class CutCheck:
    """Outcome of one cut: frames expected from the source segment and found in the cut."""

    video_id: str
    source: str
    out: str
    expected_frames: int
    cut_frames: int
    source_fps: float
    problem: str  # empty when the cut is good
    #: Source time of the cut's first frame minus ``start`` (under one frame interval): like
    #: ``ffmpeg -ss``, the cut starts its time axis at its first frame.
    first_frame_offset_s: float | None = None

    @property
    def ok(self) -> bool:
        return not self.problem


def source_segment_times(source: Path, start: float, duration: float, threads: int) -> np.ndarray:
    """float64 [n]: video times (seconds) of the source's frames in [start, start + duration)."""
    seek = max(0.0, start - MARGIN_S)
    times = decoded_frame_times(source, start=seek, duration=duration + 2 * MARGIN_S, threads=threads)
    times = times + seek  # ffmpeg's accurate seek puts the seek point at time 0
    return times[(times >= start - 1e-6) & (times < start + duration - 1e-6)]


def cut_output(source: Path, out: Path, start: float, duration: float, with_audio: bool, threads: int,
               crf: int = CRF, preset: str = PRESET) -> ffmpeg_python.nodes.OutputStream:
    """The ffmpeg-python output node that cuts [start, start + duration) of ``source`` into ``out``:
    its first video stream as H.264 (yuv420p, source timestamps kept), and its first audio stream
    as AAC 128 kb/s when ``with_audio``."""
    movie = ffmpeg_python.input(str(source), threads=threads, ss=f"{start:.6f}", t=f"{duration:.6f}")
    streams = [movie["v:0"]] + ([movie["a:0"]] if with_audio else [])
    audio = {"c:a": "aac", "b:a": "128k"} if with_audio else {}
    return ffmpeg_python.output(*streams, str(out), **audio, **{"c:v": "libx264"}, preset=preset, crf=crf,
                                pix_fmt="yuv420p", fps_mode="passthrough", threads=threads,
                                movflags="+faststart").overwrite_output()


def prepare_video(source: Path, out: Path, start: float, duration: float, threads: int) -> CutCheck:
    """Cut [start, start + duration) of the movie ``source`` into ``out`` (an .mp4; its stem is the
    video id) and check its frame count against the source's. A failed check is in ``problem``."""
    video_id = out.stem
    expected = source_segment_times(source, start, duration, threads)
    fps = mean_fps(expected)
    if len(expected) < 2 or expected[-1] + 1.5 * (expected[-1] - expected[-2]) < start + duration:
        covered = f"{expected[-1]:.3f} s" if len(expected) else "none"
        problem = f"the source does not cover [{start:g}, {start + duration:g}) s (last frame in it: {covered})"
        return CutCheck(video_id, str(source), str(out), len(expected), 0, fps, problem)
    try:
        with atomic_path(out) as tmp:
            run_ffmpeg(cut_output(source, tmp, start, duration, has_audio_stream(source), threads), source)
        cut_times = decoded_frame_times(out, threads=threads)
    except InputError as err:
        return CutCheck(video_id, str(source), str(out), len(expected), 0, fps, f"ffmpeg failed: {err}")
    problem = ""
    if len(cut_times) != len(expected):
        problem = f"{len(cut_times)} frames in the cut, {len(expected)} in the source segment"
    elif np.abs(cut_times - (expected - expected[0])).max() > 1e-3:
        problem = "frame times of the cut differ from the source's by more than 1 ms"
    return CutCheck(video_id, str(source), str(out), len(expected), len(cut_times), fps, problem,
                    first_frame_offset_s=float(expected[0] - start))
