"""Audio: log-mel spectrogram windows on the keyframe timeline into ``results/audio/{video}.h5``, and its reader.

The first audio stream is decoded by ffmpeg to mono float32 at ``sample_rate``; ``aresample``
with ``first_pts=0`` pads or trims the start so that sample 0 is video time 0 (the frames stage's
time axis), and fills timestamp gaps with silence. One window of ``window_s`` seconds is centred
on every integer AVA second from ceil(time_offset) to floor(time_offset + duration_s), so every
keyframe has one; samples outside the signal are zeros.

Store layout (DESIGN.md): ``logmel`` float16 [S, n_mels, frames] = log(mel power + LOG_EPS) of each
window (librosa mel filterbank, power spectrogram, no centring, so frames = 1 + (window_s * sr -
n_fft) // hop); ``t`` float64 [S] window centres; attrs sr, n_fft, hop, n_mels, window_s, has_audio,
log_eps and provenance. A video without an audio track gets silence, log(LOG_EPS) everywhere, and
``has_audio = False``, with a warning on stderr.

The writer's own libraries (ffmpeg-python, librosa, PyAV) are imported where they are used, so that
the reader :class:`AudioStore` loads in the models' environment, which has none of them.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from pipeline.errors import InputError
from pipeline.media.ffmpeg import command, stderr_tail
from pipeline.media.frames import TimedStore
from pipeline.params import AudioParams, as_dict
from pipeline.progress import progress
from pipeline.store import atomic_path, set_h5_provenance

#: Added to the mel power before the log: silence maps to log(LOG_EPS).
LOG_EPS = 1e-6
#: Windows per librosa call (bounds memory at 15-minute scale).
WINDOW_BATCH = 64


def decode_mono(video: str | Path, sample_rate: int) -> np.ndarray:
    """float32 [n]: the first audio stream of ``video`` as mono at ``sample_rate``, sample 0 = video time 0."""
    import ffmpeg as ffmpeg_python

    stream = ffmpeg_python.input(str(video))["a:0"].filter("aresample", sample_rate, first_pts=0, **{"async": 1})
    cmd = command(stream.output("pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=sample_rate))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise InputError(video, f"ffmpeg failed decoding audio (exit {proc.returncode}): "
                                f"{stderr_tail(proc.stderr.decode(errors='replace'))}")
    return np.frombuffer(proc.stdout, dtype=np.float32)


def window_centers(time_offset: float, duration_s: float) -> np.ndarray:
    """float64 [S]: the integer AVA seconds ceil(time_offset) .. floor(time_offset + duration_s)."""
    first, last = math.ceil(time_offset - 1e-9), math.floor(time_offset + duration_s + 1e-9)
    return np.arange(first, last + 1, dtype=np.float64)


def window_samples(params: AudioParams) -> int:
    """Samples in one window, round(window_s * sample_rate); ValueError when fewer than n_fft."""
    n = int(round(params.window_s * params.sample_rate))
    if n < params.n_fft:
        raise ValueError(f"audio: a window of {params.window_s} s holds {n} samples at {params.sample_rate} Hz, "
                         f"fewer than n_fft = {params.n_fft}")
    return n


def frames_per_window(params: AudioParams) -> int:
    """Spectrogram frames in one window: 1 + (window samples - n_fft) // hop."""
    return 1 + (window_samples(params) - params.n_fft) // params.hop


def cut_windows(samples: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """float32 [S, length]: samples[s : s + length] for each start (int64 [S]); zeros outside the signal."""
    pad = max(0, int(-starts.min(initial=0))) if len(starts) else 0
    right = max(0, int(starts.max(initial=0)) + length - len(samples)) if len(starts) else 0
    padded = np.concatenate([np.zeros(pad, np.float32), samples, np.zeros(right, np.float32)])
    index = (starts + pad)[:, None] + np.arange(length)[None, :]
    return padded[index]


def log_mel(windows: np.ndarray, params: AudioParams) -> np.ndarray:
    """float32 [S, n_mels, frames]: log(mel power + LOG_EPS) of each window (float32 [S, n])."""
    import librosa

    mel = librosa.feature.melspectrogram(y=windows, sr=params.sample_rate, n_fft=params.n_fft, hop_length=params.hop,
                                         n_mels=params.n_mels, center=False, power=2.0)
    return np.log(mel + LOG_EPS).astype(np.float32)


def compute_audio(video: str | Path, out: str | Path, video_id: str, duration_s: float, params: AudioParams) -> int:
    """Write the log-mel windows of ``video`` (``duration_s`` seconds long: the probe's) to the audio
    store ``out`` (the module's layout); returns the number of windows."""
    from pipeline.media.probe import has_audio_stream

    sr, n_mels, time_offset = params.sample_rate, params.n_mels, params.time_offset
    centers = window_centers(time_offset, duration_s)
    length = window_samples(params)
    n_frames = frames_per_window(params)
    has_audio = has_audio_stream(video)
    logmel = np.full((len(centers), n_mels, n_frames), math.log(LOG_EPS), dtype=np.float16)
    if has_audio:
        samples = decode_mono(video, sr)
        starts = np.round((centers - time_offset - params.window_s / 2) * sr).astype(np.int64)
        batches = range(0, len(centers), WINDOW_BATCH)
        for k in progress(batches, desc=f"audio {video_id}", total=len(batches), unit="batch"):
            chunk = cut_windows(samples, starts[k:k + WINDOW_BATCH], length)
            logmel[k:k + WINDOW_BATCH] = log_mel(chunk, params)
    else:
        print(f"WARNING: {video}: no audio track; {video_id} gets silence (has_audio=false)", file=sys.stderr)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("logmel", data=logmel, dtype=np.float16)
        h5.create_dataset("t", data=centers, dtype=np.float64)
        h5.attrs.update({"sr": sr, "n_fft": params.n_fft, "hop": params.hop, "n_mels": n_mels,
                         "window_s": params.window_s, "has_audio": bool(has_audio),
                         "log_eps": LOG_EPS, "video_id": video_id, "time_offset": float(time_offset),
                         "source": str(video)})
        set_h5_provenance(h5, "audio", {**as_dict(params), "duration_s": duration_s})
    return len(centers)


class AudioStore(TimedStore):
    """Reader of an audio store; windows are read when asked for (the finetuning stage opens the
    store for every keyframe). t: float64 [S] window centres; has_audio, sr, n_mels from the attrs."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._h5 = h5py.File(self.path, "r")
        self._logmel = self._h5["logmel"]
        self.t = self._h5["t"][:]
        self.has_audio = bool(self._h5.attrs["has_audio"])
        self.sr = int(self._h5.attrs["sr"])
        self.n_mels = int(self._h5.attrs["n_mels"])

    def close(self) -> None:
        self._h5.close()

    def window(self, times: np.ndarray) -> np.ndarray:
        """float32 [n, n_mels, frames]: log-mel of the window nearest each of ``times``."""
        indices, inverse = np.unique(self.nearest(times), return_inverse=True)
        return self._logmel[indices][inverse].astype(np.float32)
