"""The audio track of a synthetic video, from its plan.

Sources, mixed and panned by where their person is on screen:
- background: coloured noise, sometimes mains hum, and a few knocks and swells that belong to
  nobody (so that sound alone is not a label);
- talk: syllables of a formant-filtered glottal buzz at about 4 per second, in turns;
- sing: sustained sung notes with vibrato and a vowel's formants;
- play instrument: plucked chords (decaying harmonics) on each down-strum of the arm;
- fight/hit: a thump at each punch's full extension.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.signal

from pipeline.synth.body import PUNCH_IMPACT, STRUM_AT
from pipeline.synth.plan import ABSENT, Segment, VideoPlan

# (F1, F2, F3) in Hz of the vowels a, e, i, o, u.
_VOWELS = ((730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240))
_ROOTS = (110.0, 123.47, 130.81, 146.83, 164.81, 174.61, 196.0)


def _resonate(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    """Two-pole resonator at ``freq`` Hz: a formant."""
    r = math.exp(-math.pi * bandwidth / sr)
    a = [1.0, -2 * r * math.cos(2 * math.pi * freq / sr), r * r]
    return scipy.signal.lfilter([1 - r], a, x)


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
    return x / rms if rms > 0 else x


def syllable(rng: np.random.Generator, sr: int, duration: float, f0: float) -> np.ndarray:
    """One spoken syllable: float64 [duration * sr], unit RMS before its envelope."""
    n = max(1, int(duration * sr))
    u = np.arange(n) / n
    phase = np.cumsum(f0 * (1.06 - 0.12 * u)) / sr
    source = 2 * (phase % 1.0) - 1 + 0.2 * rng.standard_normal(n)
    formants = _VOWELS[int(rng.integers(len(_VOWELS)))]
    voiced = sum(w * _resonate(source, f, 90 + 0.05 * f, sr)
                 for w, f in zip((1.0, 0.6, 0.3), formants) if f < 0.45 * sr)
    y = _unit_rms(voiced) * np.sin(np.pi * u) ** 0.6
    if rng.random() < 0.5:  # a consonant: a short burst of high noise at the onset
        k = min(n, int(0.03 * sr))
        y[:k] += 0.8 * np.diff(rng.standard_normal(k + 1)) * np.linspace(1, 0, k)
    return y


def sung_note(sr: int, duration: float, f0: float) -> np.ndarray:
    """A sung vowel with 5.5 Hz vibrato: float64 [duration * sr]."""
    n = max(1, int(duration * sr))
    t = np.arange(n) / sr
    depth = 0.03 * np.minimum(1.0, t / 0.25)
    phase = 2 * np.pi * np.cumsum(f0 * (1 + depth * np.sin(2 * np.pi * 5.5 * t))) / sr
    y = np.zeros(n)
    for k in range(1, 12):
        if k * f0 > 0.45 * sr:
            break
        fk = k * f0
        weight = (1 + 3 * math.exp(-((fk - 750) / 250) ** 2) + 2 * math.exp(-((fk - 1150) / 300) ** 2)) / k
        y += weight * np.sin(k * phase)
    env = np.minimum(1.0, np.minimum(t / 0.04, (duration - t) / 0.06).clip(0))
    return _unit_rms(y) * env


def strum(sr: int, duration: float, root: float, minor: bool) -> np.ndarray:
    """A plucked chord (root, third, fifth, octave) with decaying harmonics: float64 [duration * sr]."""
    n = max(1, int(duration * sr))
    t = np.arange(n) / sr
    y = np.zeros(n)
    for i, ratio in enumerate((1.0, 1.1892 if minor else 1.2599, 1.4983, 2.0)):
        start = int(0.012 * i * sr)
        tt = t[: n - start]
        f = root * ratio
        for k in range(1, 7):
            if k * f > 0.45 * sr:
                break
            y[start:] += 0.8**k * np.sin(2 * np.pi * k * f * tt) * np.exp(-tt * (2.0 + 1.2 * k))
    return y * 0.5


def thump(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A short low hit: float64 [0.12 * sr]."""
    n = int(0.12 * sr)
    t = np.arange(n) / sr
    noise = scipy.signal.lfilter([0.1], [1, -0.9], rng.standard_normal(n))
    return (3 * noise * np.exp(-t / 0.02) + np.sin(2 * np.pi * 90 * t) * np.exp(-t / 0.04)) * 0.8


def _mix(out: np.ndarray, signal: np.ndarray, start: float, sr: int, gains: tuple[float, float]) -> None:
    i0 = int(round(start * sr))
    if i0 >= out.shape[1] or i0 + len(signal) <= 0:
        return
    lo, hi = max(i0, 0), min(i0 + len(signal), out.shape[1])
    piece = signal[lo - i0: hi - i0]
    out[0, lo:hi] += gains[0] * piece
    out[1, lo:hi] += gains[1] * piece


def _background(rng: np.random.Generator, out: np.ndarray, sr: int) -> None:
    n = out.shape[1]
    level = rng.uniform(0.004, 0.025)
    common = scipy.signal.lfilter([1.0], [1, -0.97], rng.standard_normal(n, dtype=np.float32)).astype(np.float32)
    common *= level / max(float(np.std(common)), 1e-9)
    for ch in range(2):
        out[ch] += common + rng.standard_normal(n, dtype=np.float32) * np.float32(0.3 * level)
    if rng.random() < 0.4:
        mains = 50 if rng.random() < 0.5 else 60
        t = np.arange(sr) / sr  # one second holds whole cycles of the hum: tile it
        second = sum(math.exp(-k) * np.sin(2 * np.pi * k * mains * t) for k in (1, 2, 3))
        out += np.resize((rng.uniform(0.003, 0.012) * second).astype(np.float32), n)
    duration = n / sr
    for _ in range(rng.poisson(duration / 8)):
        gain = rng.uniform(0.03, 0.1)
        _mix(out, thump(rng, sr), rng.uniform(0, duration), sr, (gain, gain * rng.uniform(0.3, 1.0)))
    for _ in range(rng.poisson(duration / 20)):
        length = rng.uniform(2.0, 4.0)
        k = int(length * sr)
        swell = scipy.signal.lfilter([0.05], [1, -0.95], rng.standard_normal(k)) * np.hanning(k)
        gain = rng.uniform(0.01, 0.04)
        _mix(out, _unit_rms(swell), rng.uniform(-1, duration), sr, (gain, gain))


def _gains(plan: VideoPlan, seg: Segment, loudness: float) -> tuple[float, float]:
    """Constant-power stereo gains from where the segment's person is on screen."""
    mid = 0.5 * (seg.t0 + seg.t1)
    x = (seg.x_at(mid) - plan.cam_x(mid)) / plan.width
    angle = 0.5 * math.pi * min(1.0, max(0.0, x))
    return loudness * math.cos(angle) * math.sqrt(2), loudness * math.sin(angle) * math.sqrt(2)


def segment_sounds(rng: np.random.Generator, plan: VideoPlan, seg: Segment, loudness: float,
                   out: np.ndarray) -> None:
    """Mix the sounds of one segment's actions into ``out`` (float32 [2, samples])."""
    sr = plan.sample_rate
    gains = _gains(plan, seg, loudness)
    if "talk" in seg.actions:
        for start, end, f0 in seg.voice:
            _mix(out, 0.25 * syllable(rng, sr, end - start, f0), start, sr, gains)
    if "sing" in seg.actions:
        for start, end, f0 in seg.voice:
            _mix(out, 0.22 * sung_note(sr, end - start, f0), start, sr, gains)
    if "instrument" in seg.actions:
        root = _ROOTS[seg.variant % len(_ROOTS)]
        minor = bool(seg.variant // len(_ROOTS) % 2)
        chord = 0.3 * strum(sr, 1.0 / seg.rate + 0.4, root, minor)
        for t in seg.cycle_times(STRUM_AT):
            _mix(out, chord[: int((seg.t1 + 0.3 - t) * sr)], t, sr, gains)
    if "hit" in seg.actions:
        for t in seg.cycle_times(PUNCH_IMPACT):
            _mix(out, 0.3 * thump(rng, sr), t, sr, gains)


def synthesize(plan: VideoPlan) -> np.ndarray:
    """The audio of ``plan``: float32 [duration * sample_rate, channels] in [-1, 1]."""
    sr = plan.sample_rate
    rng = np.random.default_rng([plan.seed, 7])
    out = np.zeros((2, plan.duration * sr), np.float32)
    _background(rng, out, sr)
    for track in plan.tracks:
        loudness = 0.6 * math.sqrt(track.figure.height / plan.height)
        for seg in track.segments:
            if seg.pose != ABSENT and seg.actions & {"talk", "sing", "instrument", "hit"}:
                segment_sounds(rng, plan, seg, loudness, out)
    if plan.channels == 1:
        out = out.mean(axis=0, keepdims=True)
    peak = float(np.abs(out).max())
    if peak > 0.95:
        out *= 0.95 / peak
    return np.ascontiguousarray(out.T)
