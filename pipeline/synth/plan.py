"""Scene plans: which figure is where doing what, and when.

A :class:`VideoPlan` is the single source of truth of one synthetic video: the frames
(:mod:`pipeline.synth.render`), the audio (:mod:`pipeline.synth.audio`) and the ground truth
(:mod:`pipeline.synth.dataset`) are all computed from it, so they agree by construction.

Times are video seconds (0 = first frame). Segment boundaries lie on the half-second grid
(0, k + 0.5) so that the keyframes, at whole seconds, fall inside a segment, never on an edge.
Positions are world x in pixels of a figure's feet; the camera looks at world x
``[cam_x(t), cam_x(t) + width)``.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.synth.classes import CLASSES, POSES

ABSENT = "absent"  # a segment where the figure is off-screen and not drawn

WALK_SPEED = (0.55, 0.85)  # body heights per second
RUN_SPEED = (1.7, 2.4)
APPROACH_SPEED = (0.45, 1.0)  # walking to meet someone: the pace bends to arrive on the grid
MAX_TURNS = 2  # times a walker or runner turns back at the frame edges in one segment
WALK_STRIDE = 0.85  # body heights per gait cycle (two steps)
RUN_STRIDE = 1.35

# Centre distance of the two figures of an interaction, in body heights.
INTERACTION_GAP = {"hug": (0.17, 0.21), "hit": (0.36, 0.42), "talk": (0.8, 1.3)}

# Solo activities: pose, the non-pose actions performed with it, base weight (class frequencies
# are kept varied, as in AVA, by these weights; rare classes are boosted by the split's quota).
SOLO_ACTIVITIES: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("stand", (), 3.0),
    ("walk", (), 3.0),
    ("run", (), 1.0),
    ("sit", (), 1.5),
    ("bend", (), 0.8),
    ("stand", ("carry",), 0.8),
    ("walk", ("carry",), 0.8),
    ("sit", ("carry",), 0.3),
    ("run", ("carry",), 0.2),
    ("stand", ("wave",), 0.5),
    ("walk", ("wave",), 0.3),
    ("sit", ("wave",), 0.2),
    ("stand", ("instrument",), 0.4),
    ("sit", ("instrument",), 0.4),
    ("stand", ("instrument", "sing"), 0.15),
    ("stand", ("sing",), 0.3),
    ("walk", ("sing",), 0.2),
    ("sit", ("sing",), 0.2),
)

# Pair interactions: kind, pose of both figures, base weight.
INTERACTIONS: tuple[tuple[str, str, float], ...] = (
    ("hug", "stand", 0.6),
    ("hit", "stand", 0.6),
    ("talk", "stand", 1.2),
    ("talk", "sit", 0.5),
)

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Figure:
    """Appearance of one person; sizes in pixels of the rendered frame."""

    ground_y: float  # screen y of the feet
    height: float  # standing height
    skin: RGB
    hair: RGB
    shirt: RGB
    trousers: RGB
    voice_f0: float  # Hz, speaking pitch


@dataclass(frozen=True)
class Segment:
    """What one figure does during ``[t0, t1)``; the labels hold for the whole span."""

    t0: float
    t1: float
    pose: str  # one of POSES, or ABSENT
    actions: frozenset[str] = frozenset()  # non-pose class keys in force
    x0: float = 0.0  # world x of the feet at t0
    x1: float = 0.0  # world x of the feet at t1
    facing: int = 1  # +1 faces right, -1 left
    partner: int = -1  # track index of the other person of an interaction
    role: str = ""  # "" | "target" (being hit) | "listen" (in a talk, not talking)
    rate: float = 0.0  # Hz of the periodic arm motion (wave, strum, punch)
    variant: int = 0  # seed of the segment's style details
    voice: tuple[tuple[float, float, float], ...] = ()  # (start, end, f0 Hz): syllables or sung notes

    def x_at(self, t: float) -> float:
        """World x of the feet at time ``t`` (linear between ``x0`` and ``x1``)."""
        span = self.t1 - self.t0
        u = (t - self.t0) / span if span > 0 else 0.0
        return self.x0 + (self.x1 - self.x0) * u

    def labels(self) -> tuple[str, ...]:
        """Class keys of this segment: the pose first, then the other actions sorted."""
        if self.pose == ABSENT:
            return ()
        return (self.pose, *sorted(self.actions))

    def cycle(self, t: float) -> float:
        """Phase in [0, 1) of the periodic arm motion at time ``t``."""
        return (self.rate * (t - self.t0)) % 1.0

    def cycle_times(self, at: float) -> np.ndarray:
        """Times in ``[t0, t1)`` where :meth:`cycle` equals ``at``: float64 [n] (strums, punches)."""
        if self.rate <= 0:
            return np.zeros(0)
        k = np.arange(math.ceil((self.t1 - self.t0) * self.rate) + 1)
        times = self.t0 + (k + at) / self.rate
        return times[times < self.t1]

    def voice_at(self, t: float) -> tuple[float, float, float] | None:
        """The syllable or note sounding at ``t``, or None."""
        i = bisect.bisect_right(self.voice, (t, math.inf, math.inf)) - 1
        if i >= 0 and self.voice[i][0] <= t < self.voice[i][1]:
            return self.voice[i]
        return None


@dataclass(frozen=True)
class Track:
    """One person through the whole video: contiguous segments covering ``[0, duration]``."""

    figure: Figure
    segments: tuple[Segment, ...]
    _starts: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_starts", tuple(s.t0 for s in self.segments))

    def segment_at(self, t: float) -> Segment:
        """The segment in force at time ``t``."""
        return self.segments[max(0, bisect.bisect_right(self._starts, t) - 1)]


@dataclass(frozen=True)
class VideoPlan:
    """Everything needed to render one video, synthesize its audio and annotate it."""

    video_id: str
    split: str
    width: int
    height: int
    fps: int
    duration: int  # seconds
    pan: float  # camera speed, world pixels per second
    cam0: float  # world x of the frame's left edge at t = 0
    has_audio: bool
    sample_rate: int
    channels: int
    seed: int  # seed of the background texture and the audio noise
    tracks: tuple[Track, ...] = ()

    @property
    def n_frames(self) -> int:
        return self.duration * self.fps

    def cam_x(self, t: float) -> float:
        """World x of the frame's left edge at time ``t``."""
        return self.cam0 + self.pan * t


class Quota:
    """Planned segments per class in a split against a target count; short classes get boosted."""

    def __init__(self, target: float, boost: float = 6.0):
        self.target = target
        self.boost = boost
        self.counts: dict[str, int] = {c.key: 0 for c in CLASSES}

    def weight(self, keys: tuple[str, ...]) -> float:
        """Multiplier for an activity that would add one segment of each class in ``keys``."""
        w = 1.0
        for key in keys:
            w *= 1.0 + self.boost * max(0.0, self.target - self.counts[key]) / self.target
        return w

    def add(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            self.counts[key] += 1


def grid_end(t: float, span: float) -> float:
    """End of a segment that starts at ``t`` and lasts about ``span`` s: on the half-second grid
    (k + 0.5), at least 0.5 s after ``t``."""
    end = math.floor(t + span) + 0.5
    while end < t + 0.5 - 1e-9:
        end += 1.0
    return end


# ---------------------------------------------------------------------------------------------
# Appearance


_SKIN: tuple[RGB, ...] = ((255, 224, 196), (241, 194, 160), (224, 172, 125), (198, 134, 88),
                          (160, 102, 64), (112, 72, 44), (84, 54, 36))
_HAIR: tuple[RGB, ...] = ((20, 16, 14), (60, 40, 25), (110, 75, 40), (200, 170, 110),
                          (140, 60, 30), (150, 150, 150))
_TROUSERS: tuple[RGB, ...] = ((30, 40, 80), (50, 60, 110), (40, 40, 45), (90, 90, 95),
                              (100, 70, 45), (20, 20, 25), (150, 130, 100), (60, 80, 60))


def _hsv_rgb(h: float, s: float, v: float) -> RGB:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, r = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, r, p), (q, v, p), (p, v, r), (p, q, v), (r, p, v), (v, p, q)][i]
    return tuple(int(round(255 * c)) for c in rgb)  # type: ignore[return-value]


def _pick(rng: np.random.Generator, palette: tuple[RGB, ...]) -> RGB:
    return palette[int(rng.integers(len(palette)))]


def make_figure(rng: np.random.Generator, frame_h: int, ground_y: float | None = None) -> Figure:
    """A person of random look; far figures (small ``ground_y``) are smaller, as in perspective."""
    if ground_y is None:
        ground_y = rng.uniform(0.62, 0.97) * frame_h
    depth = (ground_y / frame_h - 0.62) / 0.35  # 0 far .. 1 near
    height = frame_h * (0.28 + 0.34 * depth) * rng.uniform(0.9, 1.1)
    return Figure(
        ground_y=float(ground_y),
        height=float(height),
        skin=_pick(rng, _SKIN),
        hair=_pick(rng, _HAIR),
        shirt=_hsv_rgb(rng.uniform(), rng.uniform(0.35, 0.9), rng.uniform(0.35, 0.95)),
        trousers=_pick(rng, _TROUSERS),
        voice_f0=float(rng.choice([rng.uniform(95, 140), rng.uniform(170, 240)])),
    )


# ---------------------------------------------------------------------------------------------
# Voice schedules (shared by the mouth drawing and the audio)


def speech_schedule(rng: np.random.Generator, t0: float, t1: float,
                    f0s: list[float]) -> list[tuple[tuple[float, float, float], ...]]:
    """Syllables of a conversation in ``[t0, t1)`` between ``len(f0s)`` talkers taking turns.

    Syllables last 0.12-0.24 s at about 4 per second, in turns of 0.8-2.5 s; returns one tuple of
    (start, end, f0) per talker.
    """
    out: list[list[tuple[float, float, float]]] = [[] for _ in f0s]
    who = int(rng.integers(len(f0s)))
    t = t0 + rng.uniform(0.1, 0.5)
    while t < t1 - 0.3:
        turn_end = min(t + rng.uniform(0.8, 2.5), t1 - 0.1)
        while t < turn_end - 0.08:
            end = min(t + rng.uniform(0.12, 0.24), turn_end)
            out[who].append((round(t, 4), round(end, 4), round(f0s[who] * rng.uniform(0.85, 1.2), 2)))
            t = end + rng.uniform(0.02, 0.1)
        t += rng.uniform(0.25, 0.7)
        who = (who + 1) % len(f0s)
    return [tuple(v) for v in out]


_SCALE = (0, 2, 4, 5, 7, 9, 11, 12, 14)


def melody(rng: np.random.Generator, t0: float, t1: float, f0: float) -> tuple[tuple[float, float, float], ...]:
    """Sung notes in ``[t0, t1)``: phrases of 1.5-3.5 s of 0.3-0.9 s notes on a major scale."""
    notes: list[tuple[float, float, float]] = []
    degree = int(rng.integers(2, 6))
    t = t0 + rng.uniform(0.1, 0.4)
    while t < t1 - 0.35:
        phrase_end = min(t + rng.uniform(1.5, 3.5), t1 - 0.05)
        while t < phrase_end - 0.2:
            end = min(t + rng.uniform(0.3, 0.9), phrase_end)
            degree = int(np.clip(degree + rng.integers(-2, 3), 0, len(_SCALE) - 1))
            notes.append((round(t, 4), round(end, 4), round(f0 * 2 ** (_SCALE[degree] / 12), 2)))
            t = end
        t += rng.uniform(0.2, 0.6)
    return tuple(notes)


# ---------------------------------------------------------------------------------------------
# Planner


@dataclass
class _Walker:
    """Planning state of one figure."""

    index: int
    figure: Figure
    x: float
    facing: int
    t: float = 0.0
    segments: list[Segment] = field(default_factory=list)
    was_absent: bool = False

    @property
    def h(self) -> float:
        return self.figure.height

    def x_at(self, t: float) -> float | None:
        """World x at ``t`` of the planned part of the track; None where absent or not planned."""
        i = bisect.bisect_right([s.t0 for s in self.segments], t) - 1
        if i < 0 or t > self.segments[i].t1 or self.segments[i].pose == ABSENT:
            return None
        return self.segments[i].x_at(t)


class Planner:
    """Plans the tracks of one video with a seeded RNG, counting classes in a split-wide quota."""

    def __init__(self, rng: np.random.Generator, plan: VideoPlan, quota: Quota):
        self.rng = rng
        self.plan = plan
        self.quota = quota
        self.placed: list[_Walker] = []  # figures planned already, which later ones keep clear of

    # -- geometry ------------------------------------------------------------------------------

    def view(self, t0: float, t1: float, inset: float = 0.0) -> tuple[float, float]:
        """World x range seen during the whole of ``[t0, t1]``, shrunk by ``inset`` on each side."""
        a, b = self.plan.cam_x(t0), self.plan.cam_x(t1)
        return max(a, b) + inset, min(a, b) + self.plan.width - inset

    def in_view(self, w: _Walker) -> bool:
        lo, hi = self.view(w.t, w.t)
        return lo <= w.x <= hi

    def crowding(self, x: float, h: float, t0: float, t1: float) -> float:
        """Pixels by which a figure of height ``h`` at world ``x`` during ``[t0, t1]`` would come
        closer to an already planned figure than about a body width (0 when clear of all)."""
        worst = 0.0
        for other in self.placed:
            clearance = 0.3 * (h + other.h)
            for t in np.linspace(t0, t1, 5):
                ox = other.x_at(float(t))
                if ox is not None:
                    worst = max(worst, clearance - abs(ox - x))
        return worst

    def free_x(self, w: _Walker, t0: float, t1: float) -> float:
        """The least crowded of a few random places inside the frame during ``[t0, t1]``."""
        lo, hi = self.view(t0, t1, inset=0.3 * w.h)
        if hi <= lo:
            return 0.5 * (lo + hi)
        candidates = self.rng.uniform(lo, hi, 16)
        return float(min(candidates, key=lambda x: self.crowding(float(x), w.h, t0, t1)))

    # -- segments ------------------------------------------------------------------------------

    def _variant(self) -> int:
        return int(self.rng.integers(2**31))

    def _rate(self, actions: frozenset[str]) -> float:
        if "instrument" in actions:
            return float(self.rng.uniform(1.6, 2.6))
        if "wave" in actions:
            return float(self.rng.uniform(1.5, 2.5))
        if "hit" in actions:
            return float(self.rng.uniform(1.4, 2.2))
        return 0.0

    def _add(self, w: _Walker, seg: Segment, count: bool = True) -> None:
        w.segments.append(seg)
        w.t = seg.t1
        w.x = seg.x1
        w.facing = seg.facing
        if count and seg.t1 - seg.t0 >= 1.0:
            self.quota.add(seg.labels())

    def _segment(self, w: _Walker, t1: float, pose: str, actions: frozenset[str] = frozenset(),
                 x1: float | None = None, facing: int | None = None, **kw) -> Segment:
        voice = ()
        if "sing" in actions:
            voice = melody(self.rng, w.t, t1, w.figure.voice_f0 * self.rng.uniform(1.2, 1.5))
        return Segment(t0=w.t, t1=t1, pose=pose, actions=actions, x0=w.x,
                       x1=w.x if x1 is None else x1, facing=w.facing if facing is None else facing,
                       rate=self._rate(actions), variant=self._variant(), voice=voice, **kw)

    def _speed(self, w: _Walker, pose: str) -> float:
        lo, hi = WALK_SPEED if pose == "walk" else RUN_SPEED
        return float(self.rng.uniform(lo, hi)) * w.h

    def _head_for(self, w: _Walker, pose: str, actions: frozenset[str], target: float, t_end: float) -> None:
        """Walk or run towards ``target`` at a steady pace until the first grid time at or past it."""
        speed = self._speed(w, pose)
        direction = 1 if target > w.x else -1
        end = grid_end(w.t, 0.0)
        end += max(0, math.ceil(abs(target - w.x) / speed - (end - w.t)))
        end = min(end, t_end)
        self._add(w, self._segment(w, end, pose, actions, x1=w.x + direction * speed * (end - w.t),
                                   facing=direction))

    def _go_to(self, w: _Walker, spot: float, t_end: float) -> None:
        """Walk to exactly ``spot``, arriving at a grid time, at a pace within APPROACH_SPEED."""
        dist = abs(spot - w.x)
        if dist < 1e-6:
            return
        w.was_absent = False
        speed = self._speed(w, "walk")
        first = grid_end(w.t, 0.0) - w.t
        spans = first + np.arange(math.ceil(dist / (APPROACH_SPEED[0] * w.h)) + 2)
        speeds = dist / spans
        outside = np.maximum(APPROACH_SPEED[0] * w.h - speeds, 0) + np.maximum(speeds - APPROACH_SPEED[1] * w.h, 0)
        best = np.lexsort((np.abs(np.log(speeds / speed)), outside))[0]
        if outside[best] > 0 and first < 1.0 and t_end > w.t + first:
            # From t = 0 the spans are 0.5, 1.5, ...: wait half a second, then whole seconds fit.
            self._static(w, "stand", frozenset(), t_end, first, facing=1 if spot > w.x else -1)
            self._go_to(w, spot, t_end)
            return
        arrival = w.t + float(spans[best])
        end = min(arrival, t_end)
        x1 = w.x + (spot - w.x) * (end - w.t) / (arrival - w.t)
        self._add(w, self._segment(w, end, "walk", frozenset(), x1=x1, facing=1 if spot > w.x else -1))

    def _wander(self, w: _Walker, pose: str, actions: frozenset[str], t_end: float, span: float) -> None:
        """Walk or run for ``span`` s, turning back at the frame edges (the labels stay the same)."""
        speed = self._speed(w, pose)
        end = min(grid_end(w.t, span), t_end)
        lo, hi = self.view(w.t, end, inset=0.3 * w.h)
        direction = w.facing if self.rng.random() < 0.7 else -w.facing
        room = (hi - w.x) if direction > 0 else (w.x - lo)
        if room < speed:
            direction = -direction
        first = True
        template = self._segment(w, end, pose, actions)
        turns = 0
        while w.t < end - 1e-9:
            bound = hi if direction > 0 else lo
            if turns == MAX_TURNS:  # in a frame too narrow for the pace, go on out of it
                bound = math.inf * direction
            to_bound = max(0.0, (bound - w.x) * direction) / speed
            t1 = min(end, w.t + to_bound) if to_bound > 0.2 else min(end, w.t + 0.2)
            x1 = w.x + direction * speed * (t1 - w.t)
            voice = tuple(v for v in template.voice if w.t <= v[0] < t1)
            seg = replace(template, t0=w.t, t1=t1, x0=w.x, x1=x1, facing=direction, voice=voice)
            self._add(w, seg, count=first)
            first = False
            direction = -direction
            turns += 1

    def _static(self, w: _Walker, pose: str, actions: frozenset[str], t_end: float, span: float,
                facing: int | None = None) -> None:
        end = min(grid_end(w.t, span), t_end)
        self._add(w, self._segment(w, end, pose, actions, facing=facing))

    # -- choices -------------------------------------------------------------------------------

    def _choose(self, options: list[tuple[object, tuple[str, ...], float]]) -> object:
        weights = np.array([base * self.quota.weight(keys) for _, keys, base in options])
        return options[int(self.rng.choice(len(options), p=weights / weights.sum()))][0]

    def _solo_activity(self, poses: tuple[str, ...] = POSES) -> tuple[str, frozenset[str]]:
        options = [((pose, extras), (pose, *extras), base)
                   for pose, extras, base in SOLO_ACTIVITIES if pose in poses]
        pose, extras = self._choose(options)  # type: ignore[misc]
        return pose, frozenset(extras)

    def _span(self) -> float:
        return float(self.rng.integers(3, 9))

    # -- solo behaviour ------------------------------------------------------------------------

    def _enter(self, w: _Walker, t_end: float) -> None:
        """Walk or run into the frame from the side the figure is on."""
        target = self.free_x(w, w.t + 1, w.t + 8)
        pose, actions = self._solo_activity(("walk", "run") if self.rng.random() < 0.3 else ("walk",))
        self._head_for(w, pose, actions, target, t_end)

    def _off_screen_x(self, w: _Walker, side: int) -> float:
        lo, hi = self.view(w.t, w.t)
        return lo - 0.6 * w.h if side < 0 else hi + 0.6 * w.h

    def solo(self, w: _Walker, t_end: float) -> None:
        """Fill ``[w.t, t_end)`` with solo activities: enter, act, wander, sometimes leave."""
        while w.t < t_end - 1e-9:
            if not self.in_view(w):
                if not w.was_absent and self.rng.random() < 0.4:
                    self._add(w, self._segment(w, min(grid_end(w.t, self.rng.integers(1, 5)), t_end),
                                               ABSENT), count=False)
                    w.was_absent = True
                    side = -1 if self.rng.random() < 0.5 else 1
                    w.x = self._off_screen_x(w, side)
                    w.facing = -side
                else:
                    w.was_absent = False
                    self._enter(w, t_end)
                continue
            pose, actions = self._solo_activity()
            if pose in ("walk", "run"):
                if self.rng.random() < 0.12:
                    side = -1 if self.rng.random() < 0.5 else 1
                    self._head_for(w, pose, actions, self._off_screen_x(w, side), t_end)
                else:
                    self._wander(w, pose, actions, t_end, self._span())
            else:
                span = self._span()
                crowded = self.crowding(w.x, w.h, w.t, w.t + span)
                if crowded > 0:  # step aside first, at least half a height, away from the others
                    spot = self.free_x(w, w.t + 1, w.t + span + 2)
                    clearer = self.crowding(spot, w.h, w.t + 1, w.t + span + 2) < crowded
                    if clearer and abs(spot - w.x) >= 0.5 * w.h:
                        self._go_to(w, spot, t_end)
                        if w.t >= t_end - 1e-9:
                            break
                facing = w.facing if self.rng.random() < 0.7 else -w.facing
                self._static(w, pose, actions, t_end, span, facing=facing)

    # -- pairs ---------------------------------------------------------------------------------

    def _meeting(self, a: _Walker, b: _Walker, gap: float, t: float) -> tuple[float, float]:
        """Spots for ``a`` and ``b`` ``gap`` apart, inside the frame, where each figure either stays
        put or walks at least half its height (no shuffling on the spot); where no spots fit both,
        a short move costs more than standing partly outside the frame."""
        lo, hi = self.view(t, t + 6, inset=0.3 * max(a.h, b.h))
        if hi - lo < gap:
            mid = 0.5 * (lo + hi)
            return mid - gap / 2, mid + gap / 2

        def shortfall(spot: float, w: _Walker) -> float:
            """How far a spot is from acceptable: outside the frame, or a move under half a height."""
            d = abs(spot - w.x)
            short = 0.0 if d < 1e-6 else max(0.0, 0.5 * w.h - d)
            return 3.0 * short + max(0.0, lo - spot) + max(0.0, spot - hi)

        candidates: list[tuple[float, float]] = []
        for stay, other in ((a, b), (b, a)):
            for side in (-1, 1):
                spots = {stay.index: stay.x, other.index: stay.x + side * gap}
                candidates.append((spots[a.index], spots[b.index]))
        for _ in range(40):
            mid = self.rng.uniform(lo + gap / 2, hi - gap / 2)
            side = 1 if self.rng.random() < 0.5 else -1
            candidates.append((mid - side * gap / 2, mid + side * gap / 2))
        badness = [shortfall(sa, a) + shortfall(sb, b) + self.crowding(sa, a.h, t, t + 8)
                   + self.crowding(sb, b.h, t, t + 8) for sa, sb in candidates]
        least = min(badness)
        fitting = [c for c, bad in zip(candidates, badness) if bad <= least + 1e-9]
        return fitting[int(self.rng.integers(len(fitting)))]

    def _solo_both(self, a: _Walker, b: _Walker, t_end: float) -> None:
        """Solo activities of both figures of a pair until ``t_end``; ``b`` keeps clear of ``a``."""
        self.solo(a, t_end)
        self.placed.append(a)
        self.solo(b, t_end)
        self.placed.pop()

    def pair(self, a: _Walker, b: _Walker) -> None:
        """Alternate solo phases and interactions (hug, hit, talk) of two figures."""
        duration = float(self.plan.duration)
        first = True
        while min(a.t, b.t) < duration - 1e-9:
            phase = float(self.rng.choice([0, 0, 2, 3, 5, 8] if first else [2, 3, 4, 6, 8]))
            first = False
            t_sync = min(grid_end(max(a.t, b.t), phase), duration) if phase else max(a.t, b.t)
            self._solo_both(a, b, t_sync)
            if duration - t_sync < 4:
                self._solo_both(a, b, duration)
                break
            options = [((kind, pose), (pose, pose, kind, kind), base) for kind, pose, base in INTERACTIONS]
            kind, pose = self._choose(options)  # type: ignore[misc]
            gap = self.rng.uniform(*INTERACTION_GAP[kind]) * 0.5 * (a.h + b.h)
            spot_a, spot_b = self._meeting(a, b, gap, t_sync)
            for w, spot in ((a, spot_a), (b, spot_b)):
                self._go_to(w, spot, duration)
            start = max(a.t, b.t)
            if duration - start < 3:
                self._solo_both(a, b, duration)
                break
            face_a = 1 if spot_b > spot_a else -1
            for w, facing in ((a, face_a), (b, -face_a)):
                if w.t < start:
                    self._static(w, "stand", frozenset(), start, start - w.t, facing=facing)
            end = min(grid_end(start, self.rng.integers(3, 8 if kind == "talk" else 6)), duration)
            self._interaction(kind, pose, a, b, face_a, end)

    def _interaction(self, kind: str, pose: str, a: _Walker, b: _Walker, face_a: int, end: float) -> None:
        rng = self.rng
        facings = {a.index: face_a, b.index: -face_a}
        pair = (a, b) if rng.random() < 0.5 else (b, a)
        actions: dict[int, frozenset[str]] = {}
        roles = {a.index: "", b.index: ""}
        voices: dict[int, tuple] = {a.index: (), b.index: ()}
        if kind == "hug":
            actions = {a.index: frozenset({"hug"}), b.index: frozenset({"hug"})}
        elif kind == "hit":
            both = rng.random() < 0.35
            actions = {pair[0].index: frozenset({"hit"}),
                       pair[1].index: frozenset({"hit"}) if both else frozenset()}
            if not both:
                roles[pair[1].index] = "target"
        else:
            talkers = list(pair) if rng.random() < 0.6 else [pair[0]]
            schedules = speech_schedule(rng, a.t, end, [w.figure.voice_f0 for w in talkers])
            for w in (a, b):
                actions[w.index] = frozenset({"talk"}) if w in talkers else frozenset({"listen"})
                roles[w.index] = "" if w in talkers else "listen"
            for w, sched in zip(talkers, schedules):
                voices[w.index] = sched
            holder = pair[int(rng.integers(2))]
            if rng.random() < 0.2:
                actions[holder.index] = actions[holder.index] | {"carry"}
        segs = {w.index: self._segment(w, end, pose, actions[w.index], facing=facings[w.index],
                                       partner=other.index, role=roles[w.index])
                for w, other in ((a, b), (b, a))}
        for w, other in ((a, b), (b, a)):
            seg = replace(segs[w.index], voice=voices[w.index])
            if seg.role == "target":  # flinches in time with the punches
                seg = replace(seg, rate=segs[other.index].rate)
            self._add(w, seg)

    # -- video ---------------------------------------------------------------------------------

    def tracks(self) -> tuple[Track, ...]:
        """Plan 1-4 figures: pairs that interact and solos."""
        rng, plan = self.rng, self.plan
        n = int(rng.choice([1, 2, 3, 4], p=[0.15, 0.35, 0.32, 0.18]))
        groups: list[list[int]] = []
        if n >= 2 and rng.random() < 0.85:
            groups.append([0, 1])
            if n == 4 and rng.random() < 0.5:
                groups.append([2, 3])
        paired = {i for g in groups for i in g}
        groups += [[i] for i in range(n) if i not in paired]
        walkers: list[_Walker] = [None] * n  # type: ignore[list-item]
        for group in groups:
            ground = rng.uniform(0.64, 0.95) * plan.height
            for i in group:
                g = ground + rng.uniform(-0.015, 0.015) * plan.height if len(group) > 1 else None
                fig = make_figure(rng, plan.height, g)
                lo, hi = self.view(0, 0, inset=0.3 * fig.height)
                if rng.random() < 0.75:
                    x, facing = rng.uniform(min(lo, hi), max(lo, hi)), int(rng.choice([-1, 1]))
                else:
                    side = int(rng.choice([-1, 1]))
                    x = lo - 0.9 * fig.height if side < 0 else hi + 0.9 * fig.height
                    facing = -side
                walkers[i] = _Walker(index=i, figure=fig, x=float(x), facing=facing)
        for group in groups:
            if len(group) == 2:
                self.pair(walkers[group[0]], walkers[group[1]])
            else:
                self.solo(walkers[group[0]], float(plan.duration))
            self.placed += [walkers[i] for i in group]
        return tuple(Track(figure=w.figure, segments=tuple(w.segments)) for w in walkers)


def plan_tracks(rng: np.random.Generator, plan: VideoPlan, quota: Quota) -> VideoPlan:
    """``plan`` with its tracks planned."""
    return replace(plan, tracks=Planner(rng, plan, quota).tracks())
