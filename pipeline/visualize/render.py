"""The annotated video: every frame of the source at its own rate, with the persons of
:func:`pipeline.visualize.annotations.persons_at` drawn on it, encoded to H.264 mp4 (mpeg4 where
the ffmpeg binary has no libx264) with the source's audio copied over as AAC when it has some;
and the contact sheet of its keyframes.

ffmpeg (:mod:`pipeline.media.ffmpeg`'s binary and command lines) decodes the source to RGB frames
on a pipe, as the frames stage does (same frame times: :func:`pipeline.media.probe.decoded_frame_times`),
and encodes the drawn frames from another pipe.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import ffmpeg as ffmpeg_python
import numpy as np

from pipeline.errors import InputError
from pipeline.media.ffmpeg import command, ffmpeg_exe, stderr_tail
from pipeline.media.probe import decoded_frame_times, probe
from pipeline.store import atomic_path
from pipeline.visualize.annotations import Keyframe, persons_at
from pipeline.visualize.draw import caption, contact_sheet, draw_persons, sheet_keyframes

MIN_SHORT_SIDE = 360     # small videos are drawn larger, so that the text stays readable
MAX_LONG_SIDE = 1280     # large ones smaller
CRF = 23


@dataclass(frozen=True)
class RenderInfo:
    """What was written: frames, size, frame rate, whether audio was kept, the video codec."""

    n_frames: int
    width: int
    height: int
    fps: float
    audio: bool
    codec: str


def output_size(width: int, height: int) -> tuple[int, int]:
    """The drawn video's (width, height) for a source of ``width`` x ``height``: the short side raised to
    :data:`MIN_SHORT_SIDE` or the long side cut to :data:`MAX_LONG_SIDE`, aspect kept, both even."""
    scale = max(1.0, MIN_SHORT_SIDE / min(width, height))
    scale = min(scale, MAX_LONG_SIDE / max(width, height)) if max(width, height) * scale > MAX_LONG_SIDE else scale
    return 2 * max(1, round(width * scale / 2)), 2 * max(1, round(height * scale / 2))


@functools.lru_cache(maxsize=None)
def video_codec() -> str:
    """libx264 when the ffmpeg binary has it (imageio-ffmpeg's has), else mpeg4."""
    encoders = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return "libx264" if " libx264 " in encoders else "mpeg4"


def _decoder(source: Path, width: int, height: int) -> subprocess.Popen:
    stream = ffmpeg_python.input(str(source))["v:0"].filter("scale", width, height, flags="area")
    argv = command(stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough"))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _encoder(out: Path, source: Path, width: int, height: int, rate: Fraction, audio: bool) -> subprocess.Popen:
    frames = ffmpeg_python.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}",
                                 framerate=f"{rate.numerator}/{rate.denominator}")
    streams = [frames] + ([ffmpeg_python.input(str(source))["a:0"]] if audio else [])
    codec = video_codec()
    options = dict(vcodec=codec, pix_fmt="yuv420p", movflags="+faststart", format="mp4")
    options.update(crf=CRF, preset="veryfast") if codec == "libx264" else options.update(q=4)
    if audio:
        options.update(acodec="aac", audio_bitrate="128k")
    argv = command(ffmpeg_python.output(*streams, str(out), **options).overwrite_output())
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)


def render(source: str | Path, keyframes: list[Keyframe], out: str | Path, sheet: str | Path, tiles: int,
           tile_width: int, title: str) -> RenderInfo:
    """Draw ``keyframes``' persons on every frame of ``source`` into the mp4 ``out`` and write the
    contact sheet PNG ``sheet`` (at most ``tiles`` keyframes, ``tile_width`` pixels each, captioned
    with ``title`` and the keyframe's timestamp). Both are written atomically."""
    source, out, sheet = Path(source), Path(out), Path(sheet)
    facts = probe(source)
    times = decoded_frame_times(source)
    width, height = output_size(facts.width, facts.height)
    rate = Fraction(facts.fps).limit_denominator(1001) if facts.fps > 0 else Fraction(25)
    wanted = sheet_keyframes([len(k.persons) for k in keyframes], tiles)
    nearest = {i: int(np.argmin(np.abs(times - keyframes[i].t))) for i in wanted}
    shots: dict[int, np.ndarray] = {}
    frame_bytes = width * height * 3
    n = 0
    with atomic_path(out) as tmp:
        decoder = _decoder(source, width, height)
        encoder = _encoder(tmp, source, width, height, rate, facts.has_audio)
        try:
            while True:
                raw = decoder.stdout.read(frame_bytes)
                if len(raw) < frame_bytes:
                    break
                frame = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
                t = float(times[min(n, len(times) - 1)])
                for i, index in nearest.items():
                    if index == n:
                        shots[i] = frame.copy()
                encoder.stdin.write(np.ascontiguousarray(draw_persons(frame.copy(), persons_at(keyframes, t))).data)
                n += 1
            encoder.stdin.close()
            dec_err = decoder.stderr.read().decode(errors="replace")
            enc_err = encoder.stderr.read().decode(errors="replace")
            if decoder.wait() != 0:
                raise InputError(source, f"ffmpeg could not decode it: {stderr_tail(dec_err)}")
            if encoder.wait() != 0:
                raise InputError(out, f"ffmpeg could not encode it: {stderr_tail(enc_err)}")
        finally:
            for proc in (decoder, encoder):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    if n != len(times):
        raise InputError(source, f"decoded {n} frames to draw, the probe counted {len(times)}")
    tile_h = 2 * round(tile_width * height / width / 2)
    made = []
    for i in wanted:
        tile = cv2.resize(shots[i], (tile_width, tile_h), interpolation=cv2.INTER_AREA)
        draw_persons(tile, keyframes[i].persons)
        made.append(caption(tile, f"{title}  t={keyframes[i].timestamp}"))
    with atomic_path(sheet) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(contact_sheet(made), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return RenderInfo(n, width, height, float(rate), facts.has_audio, video_codec())
