"""Articulated figures: the screen geometry of a person at an instant, from the plan.

A figure is seen from the side: head, torso, two arms (upper arm, forearm, hand) and two legs
(thigh, shin, foot). Limb angles are absolute, measured from straight down, positive towards the
way the figure faces. :func:`body_at` turns a plan's segment into drawable :class:`Part` s; the
ground-truth box is the tight box of the parts that belong to the person (not the props).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from pipeline.synth.plan import ABSENT, RUN_STRIDE, WALK_STRIDE, Figure, Segment, VideoPlan

# Body proportions, as fractions of the standing height.
HEAD_R = 0.065
NECK_TO_HEAD = 0.085
TORSO = 0.30
UPPER_ARM = 0.165
FOREARM = 0.155
THIGH = 0.245
SHIN = 0.235
FOOT = 0.06
TORSO_W = 0.11
ARM_W = 0.05
LEG_W = 0.065

Point = tuple[float, float]
RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Part:
    """One drawing primitive in frame pixels (pixel centres at integer coordinates).

    kind "line": ``pts`` = 2 end points, ``size`` = (thickness,); "disc": ``pts`` = centre,
    ``size`` = (radius,); "ellipse": centre, (half-width, half-height, angle in degrees);
    "sector": centre, (radius, start, end angle in degrees, clockwise from +x); "poly": corners.
    """

    kind: str
    pts: tuple[Point, ...]
    size: tuple[float, ...]
    colour: RGB
    on_body: bool  # part of the person, inside the ground-truth box; props are not

    def extent(self) -> tuple[float, float, float, float]:
        """x0, y0, x1, y1 that the part covers."""
        xs = [p[0] for p in self.pts]
        ys = [p[1] for p in self.pts]
        if self.kind == "line":
            pad = self.size[0] / 2
        elif self.kind == "ellipse":
            pad = max(self.size[0], self.size[1])
        elif self.kind == "poly":
            pad = 0.0
        else:
            pad = self.size[0]
        return min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad


@dataclass(frozen=True)
class Body:
    """A figure at one instant: parts in drawing order and its tight box in pixels."""

    parts: tuple[Part, ...]
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 of the body parts, not clipped


@dataclass(frozen=True)
class _Trunk:
    """Hip, neck and legs of a figure: what its own arms and a partner's arms attach to."""

    hip: Point
    neck: Point
    tilt: float  # torso lean forward from vertical, radians
    legs: tuple[tuple[float, float], tuple[float, float]]  # (thigh, shin) angles: near, far leg
    h: float
    facing: int


@dataclass(frozen=True)
class _Style:
    """Per-segment details drawn from the segment's ``variant`` seed."""

    phase: float
    stand_split: float
    stand_knee: float
    stand_tilt: float
    arm_rest: tuple[float, float]
    elbow_rest: float
    walk_amp: float
    walk_knee: float
    walk_tilt: float
    walk_elbow: float
    run_amp: float
    run_knee: float
    run_tilt: float
    run_elbow: float
    sit_tilt: float
    sit_shin: float
    bend_tilt: float
    bend_arm: float
    carry_bag: bool
    carry_colour: RGB
    chair_colour: RGB
    guitar_colour: RGB
    gesture: bool
    bare_forearms: bool


@functools.lru_cache(maxsize=4096)
def _style(variant: int) -> _Style:
    r = np.random.default_rng(variant)
    u = lambda lo, hi: float(r.uniform(lo, hi))  # noqa: E731
    colour = lambda: tuple(int(c) for c in r.integers(30, 256, 3))  # noqa: E731
    return _Style(
        phase=u(0, 2 * math.pi),
        stand_split=u(0.0, 0.55), stand_knee=u(0.0, 0.1), stand_tilt=u(-0.04, 0.08),
        arm_rest=(u(-0.05, 0.25), u(-0.15, 0.15)), elbow_rest=u(0.05, 0.7),
        walk_amp=u(0.3, 0.55), walk_knee=u(0.45, 0.85), walk_tilt=u(0.0, 0.12), walk_elbow=u(0.1, 1.2),
        run_amp=u(0.45, 0.7), run_knee=u(0.9, 1.5), run_tilt=u(0.1, 0.3), run_elbow=u(1.0, 1.8),
        sit_tilt=u(-0.08, 0.1), sit_shin=u(-0.1, 0.25),
        bend_tilt=u(0.95, 1.4), bend_arm=u(0.0, 0.4),
        carry_bag=bool(r.random() < 0.4), carry_colour=colour(),  # type: ignore[arg-type]
        chair_colour=tuple(int(c) for c in r.integers(60, 180, 3)),  # type: ignore[arg-type]
        guitar_colour=(int(r.integers(120, 200)), int(r.integers(60, 110)), int(r.integers(20, 50))),
        gesture=bool(r.random() < 0.5), bare_forearms=bool(r.random() < 0.4),
    )


def _dir(angle: float, facing: int) -> Point:
    """Unit vector at ``angle`` from straight down, positive towards ``facing``."""
    return facing * math.sin(angle), math.cos(angle)


def _add(p: Point, v: Point, k: float = 1.0) -> Point:
    return p[0] + k * v[0], p[1] + k * v[1]


def _lerp(a: Point, b: Point, u: float) -> Point:
    return a[0] + (b[0] - a[0]) * u, a[1] + (b[1] - a[1]) * u


def _shade(c: RGB, k: float) -> RGB:
    return int(c[0] * k), int(c[1] * k), int(c[2] * k)


def _reach(shoulder: Point, target: Point, h: float) -> tuple[Point, Point]:
    """Elbow and hand of an arm whose hand goes to ``target`` (as near as it can), elbow down."""
    l1, l2 = UPPER_ARM * h, FOREARM * h
    dx, dy = target[0] - shoulder[0], target[1] - shoulder[1]
    dist = math.hypot(dx, dy)
    if dist < 1e-6:
        dx, dy, dist = 0.0, 1.0, 1.0
    d = min(max(dist, abs(l1 - l2) + 1e-3), l1 + l2 - 1e-3)
    ux, uy = dx / dist, dy / dist
    alpha = math.acos(max(-1.0, min(1.0, (l1 * l1 + d * d - l2 * l2) / (2 * l1 * d))))
    options = []
    for sign in (1, -1):
        ca, sa = math.cos(sign * alpha), math.sin(sign * alpha)
        ex, ey = ux * ca - uy * sa, ux * sa + uy * ca
        options.append((shoulder[0] + l1 * ex, shoulder[1] + l1 * ey))
    elbow = max(options, key=lambda e: e[1])
    hand = (shoulder[0] + ux * d, shoulder[1] + uy * d)
    return elbow, hand


def _arm(shoulder: Point, upper: float, lower: float, facing: int, h: float) -> tuple[Point, Point]:
    elbow = _add(shoulder, _dir(upper, facing), UPPER_ARM * h)
    return elbow, _add(elbow, _dir(lower, facing), FOREARM * h)


def _gait_phase(seg: Segment, t: float, h: float, style: _Style) -> float:
    stride = (WALK_STRIDE if seg.pose == "walk" else RUN_STRIDE) * h
    return 2 * math.pi * abs(seg.x_at(t) - seg.x0) / stride + style.phase


def _trunk(fig: Figure, seg: Segment, t: float, cam: float) -> _Trunk:
    """Legs, hip and neck of ``fig`` doing ``seg`` at ``t``; screen pixels."""
    h, f, st = fig.height, seg.facing, _style(seg.variant)
    wob = math.sin(2 * math.pi * 0.3 * t + st.phase)
    hip_dx, lift = 0.0, 0.0
    if seg.pose in ("walk", "run"):
        phi = _gait_phase(seg, t, h, st)
        amp, knee = (st.walk_amp, st.walk_knee) if seg.pose == "walk" else (st.run_amp, st.run_knee)
        legs = []
        for i in (0, 1):
            p = phi + i * math.pi
            thigh = amp * math.sin(p)
            legs.append((thigh, thigh - knee * max(0.0, math.cos(p))))
        tilt = st.walk_tilt if seg.pose == "walk" else st.run_tilt
        if seg.pose == "run":
            lift = 0.04 * h * math.sin(phi) ** 2
    elif seg.pose == "sit":
        legs = [(math.pi / 2, st.sit_shin), (math.pi / 2 - 0.06, st.sit_shin - 0.15)]
        tilt = st.sit_tilt
    elif seg.pose == "bend":
        legs = [(0.14, 0.12), (0.2, 0.16)]
        tilt = st.bend_tilt + 0.05 * wob
    else:
        split = st.stand_split
        if "hit" in seg.actions or seg.role == "target":
            split = max(split, 0.35)
        legs = [(split / 2, split / 2 - st.stand_knee), (-split / 2, -split / 2 - st.stand_knee)]
        tilt = st.stand_tilt + 0.025 * wob
        hip_dx = 0.01 * h * wob
    if "hit" in seg.actions:
        tilt += 0.12
    elif seg.role == "target":
        punch = _punch(seg.cycle(t))
        tilt = -0.06 - 0.12 * punch
    elif "hug" in seg.actions:
        tilt = 0.16
    x = seg.x_at(t) - cam
    leg_h = max(THIGH * math.cos(a) + SHIN * math.cos(b) for a, b in legs) * h
    hip = (x + hip_dx * f, fig.ground_y - leg_h - 0.5 * LEG_W * h - lift)
    neck = _add(hip, _dir(math.pi - tilt, f), TORSO * h)
    near_leg, far_leg = legs
    return _Trunk(hip=hip, neck=neck, tilt=tilt, legs=(near_leg, far_leg), h=h, facing=f)


def _punch(cycle: float) -> float:
    """Arm extension 0..1 of a jab over one cycle: out and back within the first 35 %."""
    return math.sin(math.pi * cycle / 0.35) if cycle < 0.35 else 0.0


PUNCH_IMPACT = 0.175  # cycle phase of full extension (the audio's thump)
STRUM_AT = 0.25  # cycle phase of a down-strum (the audio's chord)


def _guitar(trunk: _Trunk) -> tuple[Point, Point]:
    """Centre of the guitar's body and the end of its neck."""
    h, f = trunk.h, trunk.facing
    centre = _add(_lerp(trunk.hip, trunk.neck, 0.22), (f * 0.1 * h, 0.0))
    end = _add(centre, (f * math.cos(0.45), -math.sin(0.45)), 0.36 * h)
    return centre, end


def _partner_trunk(plan: VideoPlan, seg: Segment, t: float, cam: float) -> _Trunk | None:
    if seg.partner < 0:
        return None
    other = plan.tracks[seg.partner]
    oseg = other.segment_at(t)
    if oseg.pose == ABSENT:
        return None
    return _trunk(other.figure, oseg, t, cam)


def _shoulder(trunk: _Trunk) -> Point:
    return _lerp(trunk.neck, trunk.hip, 0.06)


def _arms(plan: VideoPlan, seg: Segment, trunk: _Trunk, t: float,
          cam: float) -> tuple[tuple[Point, Point], tuple[Point, Point]]:
    """(elbow, hand) of the near and the far arm."""
    h, f, st = trunk.h, trunk.facing, _style(seg.variant)
    sh = _shoulder(trunk)
    wob = math.sin(2 * math.pi * 0.3 * t + st.phase)
    acts = seg.actions
    if seg.pose in ("walk", "run"):
        phi = _gait_phase(seg, t, h, st)
        amp = st.walk_amp * 0.8 if seg.pose == "walk" else st.run_amp * 1.2
        elbow = st.walk_elbow if seg.pose == "walk" else st.run_elbow
        swing = [-amp * math.sin(phi + i * math.pi) for i in (0, 1)]
        near = _arm(sh, swing[0], swing[0] + elbow, f, h)
        far = _arm(sh, swing[1], swing[1] + elbow, f, h)
    elif seg.pose == "sit":
        near = _arm(sh, 0.35, 1.25, f, h)
        far = _arm(sh, 0.25, 1.15, f, h)
    elif seg.pose == "bend":
        a = st.bend_arm + 0.08 * wob
        near = _arm(sh, a, a + 0.15, f, h)
        far = _arm(sh, a - 0.12, a, f, h)
    else:
        a0, a1 = st.arm_rest
        near = _arm(sh, a0 + 0.03 * wob, a0 + st.elbow_rest, f, h)
        far = _arm(sh, a1 - 0.03 * wob, a1 + st.elbow_rest, f, h)

    partner = _partner_trunk(plan, seg, t, cam)
    if "carry" in acts:
        if st.carry_bag:
            near = _arm(sh, 0.06, 0.1, f, h)
        else:
            near = _arm(sh, 0.3, 1.45, f, h)
            far = _arm(sh, 0.22, 1.35, f, h)
    if "wave" in acts:
        near = _arm(sh, 2.5, math.pi + 0.5 * math.sin(2 * math.pi * seg.cycle(t)), f, h)
    if "instrument" in acts:
        centre, end = _guitar(trunk)
        strum = math.cos(2 * math.pi * (seg.cycle(t) - STRUM_AT))
        near = _reach(sh, _add(centre, (f * 0.015 * h, -0.045 * h * strum)), h)
        far = _reach(sh, _lerp(centre, end, 0.85), h)
    if "talk" in acts and st.gesture and seg.pose != "sit":
        near = _arm(sh, 0.35, 1.2 + 0.35 * math.sin(2 * math.pi * 0.7 * t + st.phase), f, h)
    if "sing" in acts and st.gesture and not acts & {"instrument", "carry", "wave"}:
        far = _arm(sh, 1.2, 1.5, f, h)
    guard_near = _add(trunk.neck, (f * 0.1 * h, 0.05 * h))
    guard_far = _add(trunk.neck, (f * 0.08 * h, -0.02 * h))
    if "hit" in acts:
        target = _add(trunk.neck, (f * 0.45 * h, 0.05 * h))
        if partner is not None:
            target = _add(_lerp(partner.neck, partner.hip, 0.2), (-f * 0.5 * TORSO_W * partner.h, 0.0))
        near = _reach(sh, _lerp(guard_near, target, _punch(seg.cycle(t))), h)
        far = _reach(sh, guard_far, h)
    elif seg.role == "target":
        near = _reach(sh, _add(guard_far, (0.0, -0.03 * h)), h)
        far = _reach(sh, guard_far, h)
    elif "hug" in acts and partner is not None:
        back = f * 0.5 * TORSO_W * partner.h + f * 0.02 * partner.h
        near = _reach(sh, _add(_lerp(partner.neck, partner.hip, 0.15), (back, 0.0)), h)
        far = _reach(sh, _add(_lerp(partner.neck, partner.hip, 0.6), (back, 0.0)), h)
    return near, far


def _mouth(seg: Segment, t: float) -> float:
    """How open the mouth is, 0..1: with each syllable when talking, on each note when singing."""
    item = seg.voice_at(t) if seg.voice else None
    if item is None:
        return 0.0
    start, end, _ = item
    u = (t - start) / (end - start)
    if "sing" in seg.actions:
        return 0.75 + 0.25 * math.sin(2 * math.pi * 5.5 * (t - start))
    return math.sin(math.pi * u)


def body_at(plan: VideoPlan, index: int, t: float) -> Body | None:
    """The figure of track ``index`` at video time ``t`` in frame pixels, or None when absent."""
    track = plan.tracks[index]
    seg = track.segment_at(t)
    if seg.pose == ABSENT:
        return None
    fig = track.figure
    cam = plan.cam_x(t)
    trunk = _trunk(fig, seg, t, cam)
    h, f, st = fig.height, seg.facing, _style(seg.variant)
    near_arm, far_arm = _arms(plan, seg, trunk, t, cam)

    torso_w = max(2.0, TORSO_W * h)
    arm_w = max(1.0, ARM_W * h)
    leg_w = max(1.0, LEG_W * h)
    head_r = max(2.0, HEAD_R * h)
    dark = (25, 22, 20)
    parts: list[Part] = []

    if seg.pose == "sit":
        seat_y = trunk.hip[1] + 0.6 * leg_w
        back_x = trunk.hip[0] - f * 0.12 * h
        front_x = trunk.hip[0] + f * 0.2 * h
        cw = max(1.0, 0.035 * h)
        c = st.chair_colour
        for a, b in (((back_x, seat_y), (front_x, seat_y)),
                     ((back_x, seat_y), (back_x - f * 0.03 * h, seat_y - 0.32 * h)),
                     ((back_x, seat_y), (back_x, fig.ground_y)),
                     ((front_x, seat_y), (front_x, fig.ground_y))):
            parts.append(Part("line", (a, b), (cw,), c, False))

    def arm_parts(arm: tuple[Point, Point], shade: float) -> list[Part]:
        elbow, hand = arm
        sleeve = _shade(fig.shirt, shade)
        fore = _shade(fig.skin, shade) if st.bare_forearms else sleeve
        return [Part("line", (sh, elbow), (arm_w,), sleeve, True),
                Part("line", (elbow, hand), (arm_w,), fore, True),
                Part("disc", (hand,), (0.6 * arm_w + 0.5,), _shade(fig.skin, shade), True)]

    def leg_parts(leg: tuple[float, float], shade: float) -> list[Part]:
        knee = _add(trunk.hip, _dir(leg[0], f), THIGH * h)
        ankle = _add(knee, _dir(leg[1], f), SHIN * h)
        toe = _add(ankle, _dir(math.pi / 2, f), FOOT * h)
        colour = _shade(fig.trousers, shade)
        return [Part("line", (trunk.hip, knee), (leg_w,), colour, True),
                Part("line", (knee, ankle), (leg_w,), colour, True),
                Part("line", (ankle, toe), (leg_w * 0.8,), _shade(dark, shade), True)]

    sh = _shoulder(trunk)
    parts += arm_parts(far_arm, 0.72)
    parts += leg_parts(trunk.legs[1], 0.72)
    parts.append(Part("line", (trunk.hip, trunk.neck), (torso_w,), fig.shirt, True))
    parts.append(Part("disc", (trunk.hip,), (0.5 * torso_w,), fig.trousers, True))
    parts += leg_parts(trunk.legs[0], 1.0)

    head_lean = 0.55 * trunk.tilt
    if "sing" in seg.actions:
        head_lean -= 0.2
    if "talk" in seg.actions:              # a listener keeps still: nothing in its box says it listens
        head_lean += 0.07 * math.sin(2 * math.pi * 1.3 * t + st.phase)
    head = _add(trunk.neck, _dir(math.pi - head_lean, f), NECK_TO_HEAD * h)
    parts.append(Part("line", (trunk.neck, head), (max(1.0, 0.05 * h),), fig.skin, True))
    parts.append(Part("disc", (head,), (head_r,), fig.skin, True))
    start, end = (150.0, 300.0) if f > 0 else (240.0, 390.0)
    parts.append(Part("sector", (head,), (head_r, start, end), fig.hair, True))
    eye = _add(head, (f * 0.5 * head_r, -0.1 * head_r))
    parts.append(Part("disc", (eye,), (max(0.6, 0.13 * head_r),), dark, True))
    mouth = _mouth(seg, t)
    if mouth > 0.05:
        centre = _add(head, (f * 0.55 * head_r, 0.45 * head_r))
        parts.append(Part("ellipse", (centre,), (0.25 * head_r + 0.3, (0.08 + 0.3 * mouth) * head_r + 0.3, 0.0),
                          (90, 20, 25), True))

    if "instrument" in seg.actions:
        centre, end_pt = _guitar(trunk)
        parts.append(Part("line", (centre, end_pt), (max(1.0, 0.03 * h),), (50, 35, 25), False))
        parts.append(Part("ellipse", (centre,), (0.11 * h, 0.075 * h, -f * 25.0), st.guitar_colour, False))
        parts.append(Part("disc", (centre,), (0.025 * h,), (30, 20, 15), False))

    parts += arm_parts(near_arm, 1.0)

    if "carry" in seg.actions:
        hand = near_arm[1]
        if st.carry_bag:
            w2, top, bottom = 0.06 * h, hand[1] + 0.03 * h, hand[1] + 0.17 * h
            corners = ((hand[0] - w2, top), (hand[0] + w2, top), (hand[0] + w2, bottom), (hand[0] - w2, bottom))
            parts.append(Part("line", (hand, (hand[0], top)), (max(1.0, 0.015 * h),), dark, False))
        else:
            cx, cy = hand[0] + f * 0.04 * h, hand[1] - 0.03 * h
            w2, h2 = 0.08 * h, 0.065 * h
            corners = ((cx - w2, cy - h2), (cx + w2, cy - h2), (cx + w2, cy + h2), (cx - w2, cy + h2))
        parts.append(Part("poly", corners, (), st.carry_colour, False))

    extents = np.array([p.extent() for p in parts if p.on_body])
    box = (float(extents[:, 0].min()), float(extents[:, 1].min()),
           float(extents[:, 2].max()), float(extents[:, 3].max()))
    return Body(parts=tuple(parts), box=box)
