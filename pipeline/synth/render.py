"""Frames of a synthetic video (textured background, camera pan, figures) and their encoding.

Frames are piped as raw RGB to ffmpeg (libx264, yuv420p) together with the audio track from a
temporary WAV file (AAC); videos without audio get no audio stream at all.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
import wave
from pathlib import Path

import cv2
import ffmpeg as ffmpeg_python
import numpy as np

from pipeline.media.ffmpeg import command
from pipeline.store import atomic_path
from pipeline.synth.audio import synthesize
from pipeline.synth.body import Part, body_at
from pipeline.synth.plan import VideoPlan

_SHIFT = 4  # cv2 fractional bits: coordinates are drawn with 1/16 pixel precision
_ONE = 1 << _SHIFT


def _muted(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    """A random colour of limited saturation: float32 [3] RGB in 0..255."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*saturation) * 255, rng.uniform(*value) * 255]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def make_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A wall-and-floor scene with gradients, noise and shapes: uint8 [height, width, 3] RGB."""
    horizon = int(rng.uniform(0.35, 0.58) * height)
    img = np.empty((height, width, 3), np.float32)
    wall = [_muted(rng, (0.05, 0.45), (0.45, 0.95)) for _ in range(2)]
    floor = [_muted(rng, (0.05, 0.5), (0.25, 0.75)) for _ in range(2)]
    u = np.linspace(0, 1, horizon)[:, None, None]
    img[:horizon] = wall[0] * (1 - u) + wall[1] * u
    u = np.linspace(0, 1, height - horizon)[:, None, None]
    img[horizon:] = floor[0] * (1 - u) + floor[1] * u

    def smooth_noise(cell: int, channels: int, amplitude: float) -> np.ndarray:
        grid = rng.standard_normal((max(2, height // cell), max(2, width // cell), channels)).astype(np.float32)
        noise = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC) * amplitude
        return noise.reshape(height, width, channels)

    img += smooth_noise(max(8, height // 4), 1, 18.0)  # shading
    img += smooth_noise(max(8, height // 6), 3, 5.0)  # tint
    img += smooth_noise(4, 1, 6.0)  # texture

    n_shapes = int(rng.integers(6, 14) * width / max(height, 1))
    for _ in range(n_shapes):
        colour = tuple(float(c) for c in _muted(rng, (0.1, 0.75), (0.2, 0.95)))
        x = int(rng.uniform(-0.05, 1.0) * width)
        kind = rng.random()
        if kind < 0.55:  # windows, doors, shelves, posters on the wall
            w, h = int(rng.uniform(0.05, 0.25) * height), int(rng.uniform(0.06, 0.35) * height)
            y = int(rng.uniform(0.02, 0.9) * horizon)
            cv2.rectangle(img, (x, y), (x + w, min(y + h, horizon)), colour, -1, cv2.LINE_AA)
            if rng.random() < 0.5:
                frame = tuple(c * 0.5 for c in colour)
                cv2.rectangle(img, (x, y), (x + w, min(y + h, horizon)), frame, max(1, height // 120), cv2.LINE_AA)
        elif kind < 0.75:  # lamps, clocks, plants
            r = int(rng.uniform(0.02, 0.08) * height)
            cv2.circle(img, (x, int(rng.uniform(0.1, 0.9) * horizon)), r, colour, -1, cv2.LINE_AA)
        elif kind < 0.9:  # rugs on the floor
            y = int(rng.uniform(horizon, height))
            axes = (int(rng.uniform(0.08, 0.3) * height), int(rng.uniform(0.02, 0.06) * height))
            cv2.ellipse(img, (x, y), axes, 0, 0, 360, colour, -1, cv2.LINE_AA)
        else:  # floor boards
            y = int(rng.uniform(horizon, height))
            cv2.line(img, (0, y), (width, y + int(rng.uniform(-4, 4))), colour, 1, cv2.LINE_AA)
    img += rng.uniform(-4, 4, img.shape).astype(np.float32)
    img = cv2.GaussianBlur(img, (3, 3), 0)
    return np.clip(img, 0, 255).astype(np.uint8)


def _pt(p: tuple[float, float]) -> tuple[int, int]:
    return int(round(p[0] * _ONE)), int(round(p[1] * _ONE))


def draw_part(img: np.ndarray, part: Part) -> None:
    """Draw one part, anti-aliased with sub-pixel coordinates, onto ``img`` (uint8 [H, W, 3])."""
    if part.kind == "line":
        cv2.line(img, _pt(part.pts[0]), _pt(part.pts[1]), part.colour,
                 max(1, int(round(part.size[0]))), cv2.LINE_AA, _SHIFT)
    elif part.kind == "disc":
        cv2.circle(img, _pt(part.pts[0]), int(round(part.size[0] * _ONE)), part.colour, -1, cv2.LINE_AA, _SHIFT)
    elif part.kind == "ellipse":
        axes = (max(1, int(round(part.size[0] * _ONE))), max(1, int(round(part.size[1] * _ONE))))
        cv2.ellipse(img, _pt(part.pts[0]), axes, part.size[2], 0, 360, part.colour, -1, cv2.LINE_AA, _SHIFT)
    elif part.kind == "sector":
        r = int(round(part.size[0] * _ONE))
        cv2.ellipse(img, _pt(part.pts[0]), (r, r), 0, part.size[1], part.size[2], part.colour, -1,
                    cv2.LINE_AA, _SHIFT)
    elif part.kind == "poly":
        pts = np.array([_pt(p) for p in part.pts], np.int32)
        cv2.fillPoly(img, [pts], part.colour, cv2.LINE_AA, _SHIFT)
    else:
        raise ValueError(f"unknown part kind {part.kind!r}")


class Renderer:
    """Renders the frames of one plan: ``frame(i)`` is uint8 [height, width, 3] RGB."""

    def __init__(self, plan: VideoPlan):
        self.plan = plan
        cams = (plan.cam_x(0.0), plan.cam_x(float(plan.duration)))
        self.bg_x0 = math.floor(min(cams)) - 2
        bg_width = int(math.ceil(max(cams))) + plan.width + 4 - self.bg_x0
        self.background = make_background(np.random.default_rng([plan.seed, 3]), bg_width, plan.height)
        self.order = sorted(range(len(plan.tracks)), key=lambda k: plan.tracks[k].figure.ground_y)

    def frame(self, index: int) -> np.ndarray:
        plan = self.plan
        t = index / plan.fps
        centre = (plan.cam_x(t) - self.bg_x0 + (plan.width - 1) / 2, (plan.height - 1) / 2)
        img = cv2.getRectSubPix(self.background, (plan.width, plan.height), centre)
        for k in self.order:
            body = body_at(plan, k, t)
            if body is not None:
                for part in body.parts:
                    draw_part(img, part)
        return img


def _ffmpeg_command(plan: VideoPlan, out: Path, wav: Path | None, preset: str, threads: int) -> list[str]:
    """ffmpeg reading raw RGB frames on stdin (and the WAV ``wav``) and writing H.264 (and AAC) to ``out``."""
    frames = ffmpeg_python.input("pipe:0", format="rawvideo", pix_fmt="rgb24", s=f"{plan.width}x{plan.height}",
                                 framerate=str(plan.fps))
    streams = [frames] if wav is None else [frames["v"], ffmpeg_python.input(str(wav))["a"]]
    audio = {} if wav is None else {"c:a": "aac", "b:a": "96k"}
    bitexact = {"fflags": "+bitexact", "flags:v": "+bitexact", "flags:a": "+bitexact"}
    return command(ffmpeg_python.output(*streams, str(out), **{"c:v": "libx264"}, preset=preset, crf=20,
                                        pix_fmt="yuv420p", threads=threads, **audio, **bitexact, map_metadata=-1,
                                        movflags="+faststart").overwrite_output())


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM WAV of float ``samples`` [n, channels] in [-1, 1]."""
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(pcm.shape[1])
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())


def write_video(plan: VideoPlan, path: Path, preset: str = "veryfast", threads: int = 1) -> None:
    """Render, synthesize and encode ``plan`` to the mp4 ``path`` (atomically)."""
    if plan.width % 2 or plan.height % 2:
        raise ValueError(f"yuv420p needs even frame sizes, got {plan.width}x{plan.height}")
    renderer = Renderer(plan)
    with tempfile.TemporaryDirectory(prefix="synth_") as tmp, atomic_path(path) as out:
        wav = None
        if plan.has_audio:
            wav = Path(tmp) / "audio.wav"
            write_wav(wav, synthesize(plan), plan.sample_rate)
        proc = subprocess.Popen(_ffmpeg_command(plan, out, wav, preset, threads),
                                stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None
        try:
            for i in range(plan.n_frames):
                proc.stdin.write(renderer.frame(i).data)
        except BrokenPipeError:
            pass
        finally:
            proc.stdin.close()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed encoding {path}: {err.strip()}")
