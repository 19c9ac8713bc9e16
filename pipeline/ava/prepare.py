"""Cut AVA movies to their annotated segment (900-1801 s) and check that no frame was lost.

AVA annotates seconds 902-1798 of each movie; SlowFast and MMAction2 cut [900, 1801) with
``ffmpeg -ss 900 -t 901`` and re-encode. This does the same at the source's own frame rate
(frames keep their timestamps: no resampling, no duplicates), as H.264 (and AAC when the movie
has audio) in ``{out_dir}/{video_id}.mp4``, where video_id is the source file's name without its
suffix, so that the cut's video time 0 is AVA time ``start`` (to within the sub-frame
offset of the first source frame at or after ``start``, recorded in the report).

Check: the source is decoded a margin around the segment, and the frames whose time lies in
[start, start + duration) are counted there; the cut, decoded, must hold exactly that many, and the
segment must be covered (its frames span the whole duration). Every video that fails is named
in the log and the report, and the command exits with status 1.

    python -m pipeline.ava.prepare --video raw/VIDEO.mkv [--video ...] --out-dir data/ava/videos \\
        --report results/prepare/report.json --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from pipeline.errors import InputError
from pipeline.media.ffmpeg import run_ffmpeg
from pipeline.media.probe import decoded_frame_times, has_audio_stream, mean_fps
from pipeline.progress import progress
from pipeline.store import atomic_path, provenance, write_json, write_sidecar

#: Seconds decoded before and after the segment when counting the source's frames.
MARGIN_S = 2.0


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
    times, _ = decoded_frame_times(source, input_args=["-threads", str(threads), "-ss", f"{seek:.6f}",
                                                       "-t", f"{duration + 2 * MARGIN_S:.6f}"])
    times = times + seek  # ffmpeg's accurate seek puts the seek point at time 0
    return times[(times >= start - 1e-6) & (times < start + duration - 1e-6)]


def cut_command(source: Path, out: Path, start: float, duration: float, with_audio: bool, crf: int,
                preset: str, threads: int) -> list[str]:
    """ffmpeg arguments (no binary) that cut [start, start + duration) of ``source`` into ``out``."""
    args = ["-y", "-nostats", "-loglevel", "error", "-threads", str(threads), "-ss", f"{start:.6f}",
            "-t", f"{duration:.6f}", "-i", str(source), "-map", "0:v:0"]
    if with_audio:
        args += ["-map", "0:a:0", "-c:a", "aac", "-b:a", "128k"]
    args += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
             "-fps_mode", "passthrough", "-threads", str(threads), "-movflags", "+faststart", str(out)]
    return args


def prepare_video(source: Path, out_dir: Path, start: float, duration: float, crf: int, preset: str,
                  threads: int) -> CutCheck:
    """Cut one movie into ``out_dir/{stem}.mp4`` and check its frame count against the source."""
    video_id = source.stem
    out = out_dir / f"{video_id}.mp4"
    expected = source_segment_times(source, start, duration, threads)
    fps = mean_fps(expected)
    if len(expected) < 2 or expected[-1] + 1.5 * (expected[-1] - expected[-2]) < start + duration:
        covered = f"{expected[-1]:.3f} s" if len(expected) else "none"
        problem = f"the source does not cover [{start:g}, {start + duration:g}) s (last frame in it: {covered})"
        return CutCheck(video_id, str(source), str(out), len(expected), 0, fps, problem)
    try:
        with atomic_path(out) as tmp:
            run_ffmpeg(cut_command(source, tmp, start, duration, has_audio_stream(source), crf, preset, threads),
                       source)
        cut_times, _ = decoded_frame_times(out, input_args=["-threads", str(threads)])
    except InputError as err:
        return CutCheck(video_id, str(source), str(out), len(expected), 0, fps, f"ffmpeg failed: {err}")
    problem = ""
    if len(cut_times) != len(expected):
        problem = f"{len(cut_times)} frames in the cut, {len(expected)} in the source segment"
    elif np.abs(cut_times - (expected - expected[0])).max() > 1e-3:
        problem = "frame times of the cut differ from the source's by more than 1 ms"
    return CutCheck(video_id, str(source), str(out), len(expected), len(cut_times), fps, problem,
                    first_frame_offset_s=float(expected[0] - start))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.ava.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("--video", action="append", required=True, help="source movie (repeat for several)")
    parser.add_argument("--out-dir", required=True, help="where {video_id}.mp4 go")
    parser.add_argument("--report", required=True, help="JSON report: a row per video with expected and cut frames")
    parser.add_argument("--start", type=float, default=900.0, help="segment start, seconds of the movie")
    parser.add_argument("--duration", type=float, default=901.0, help="segment length in seconds")
    parser.add_argument("--crf", type=int, default=18)
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    sources = [Path(v) for v in args.video]
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise InputError(missing[0], f"no such movie ({len(missing)} missing: {', '.join(missing)})")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"start": args.start, "duration": args.duration, "crf": args.crf, "preset": args.preset}
    checks = []
    for source in progress(sources, desc="prepare", total=len(sources), unit="video"):
        checks.append(prepare_video(source, out_dir, args.start, args.duration, args.crf, args.preset, args.threads))
        if checks[-1].ok:
            write_sidecar(checks[-1].out, "prepare", {**params, "source": str(source)})
    write_json(args.report, {"provenance": provenance("prepare", params),
                             "videos": [{**dataclasses.asdict(c), "ok": c.ok} for c in checks]})
    failed = [c for c in checks if not c.ok]
    for check in checks:
        status = "ok" if check.ok else f"FAILED: {check.problem}"
        print(f"{check.video_id}: {check.cut_frames}/{check.expected_frames} frames: {status}", file=sys.stderr)
    if failed:
        print(f"prepare: {len(failed)} of {len(checks)} videos failed: {', '.join(c.video_id for c in failed)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
