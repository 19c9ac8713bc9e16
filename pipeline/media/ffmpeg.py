"""ffmpeg: finding the binary, building and running its command lines, reading the decoder's frame times.

Every ffmpeg command line is built with ffmpeg-python (``import ffmpeg``) and compiled by
:func:`command`, which adds the quiet global options and names the binary (:func:`ffmpeg_exe`).

Frame times come from ffmpeg itself: ``-stats_enc_pre`` with :data:`FRAME_STATS_FORMAT` writes
the pts and time base of every frame that reaches the encoder, which :func:`read_frame_times`
turns into seconds. They are ffmpeg's default "video time": the decoder's pts minus the file's
start time, the time a player shows. The frames and audio stages use the same convention, so
they stay aligned.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

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


#: Global options of every command: no banner, no stdin, no progress, errors only.
QUIET = ("-hide_banner", "-nostdin", "-nostats", "-loglevel", "error")


def command(output: Any) -> list[str]:
    """The argv of an ffmpeg-python output node (``ffmpeg.input(...)...output(...)``): the binary of
    :func:`ffmpeg_exe`, the node's options and :data:`QUIET`."""
    return output.global_args(*QUIET).compile(cmd=ffmpeg_exe())


def run_ffmpeg(output: Any, path: str | Path) -> None:
    """Run the ffmpeg-python output node ``output`` (:func:`command`), its stdout discarded.

    Raises :class:`InputError` naming ``path`` (the input the command is about) with the tail of
    ffmpeg's stderr when ffmpeg fails.
    """
    proc = subprocess.run(command(output), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace")
        raise InputError(path, f"ffmpeg failed (exit {proc.returncode}): {stderr_tail(stderr)}")


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
