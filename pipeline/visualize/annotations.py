"""What is drawn at each keyframe: person boxes with their track and their top actions, and how the
boxes move between keyframes (interpolated along a track, held near a keyframe otherwise)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.ava.formats import AvaRows, LabelMap
from pipeline.scores import sigmoid
from pipeline.visualize.tracks import track_ids

HOLD_S = 0.5   # a box seen at only one of the two keyframes around a frame is drawn this close to it


@dataclass
class Person:
    """One person at one instant: box [4] normalized x1, y1, x2, y2, track id, text lines."""

    box: np.ndarray
    track: int
    lines: list[str]


@dataclass
class Keyframe:
    """The persons found at one keyframe, at ``t`` seconds of video time."""

    timestamp: int
    t: float
    persons: list[Person]


def short_name(name: str) -> str:
    """An action's name without AVA's parenthesized examples: 'talk to (e.g., self, ...)' -> 'talk to'."""
    return name.split(" (")[0].strip()


def top_actions(probabilities: np.ndarray, label_map: LabelMap, threshold: float, top_k: int) -> list[str]:
    """'name 0.87' of the ``top_k`` most probable classes at or above ``threshold``: probabilities [C]
    in label-map order."""
    order = np.argsort(-probabilities, kind="stable")[:top_k]
    return [f"{short_name(label_map.names[i])} {probabilities[i]:.2f}" for i in order if probabilities[i] >= threshold]


def keyframes_of_video(boxes: AvaRows, logits: np.ndarray, label_map: LabelMap, video_id: str,
                       keyframe_times: np.ndarray, time_offset: float, score_threshold: float, top_k: int,
                       box_threshold: float) -> list[Keyframe]:
    """The keyframes of ``video_id`` with their persons: boxes [N] (score = detector score) and
    logits [N, C] of a split (a model's or a fusion's logits table), the video's keyframe
    timestamps [K] (every keyframe, with or without a person), its timeline offset. Boxes under
    ``box_threshold`` are left out; each box carries its track, '#track score' and its top actions."""
    mine = (boxes.video_id == video_id) & (boxes.score >= box_threshold)
    rows = boxes.take(mine)
    probs = sigmoid(logits[mine])
    tracks = track_ids(rows.timestamp, rows.box)
    result = []
    for timestamp in np.unique(np.asarray(keyframe_times, np.int64)).tolist():
        persons = [Person(rows.box[i].astype(np.float64), int(tracks[i]),
                          [f"#{tracks[i]} person {rows.score[i]:.2f}",
                           *top_actions(probs[i], label_map, score_threshold, top_k)])
                   for i in np.flatnonzero(rows.timestamp == timestamp)]
        result.append(Keyframe(timestamp, float(timestamp - time_offset), persons))
    return result


def persons_at(keyframes: list[Keyframe], t: float) -> list[Person]:
    """Who is drawn at video time ``t``: between two keyframes a track seen at both moves linearly
    from one box to the other (its text from the nearer keyframe); a track seen at one of them only,
    or any box before the first and after the last keyframe, is held within :data:`HOLD_S` of it."""
    times = np.array([k.t for k in keyframes])
    after = int(np.searchsorted(times, t, side="right"))
    before = keyframes[after - 1] if after > 0 else None
    nxt = keyframes[after] if after < len(keyframes) else None
    if before is None or nxt is None:
        near = before or nxt
        return list(near.persons) if near is not None and abs(t - near.t) <= HOLD_S else []
    w = (t - before.t) / (nxt.t - before.t)
    by_track = {p.track: p for p in nxt.persons}
    shown = []
    for p in before.persons:
        q = by_track.pop(p.track, None)
        if q is not None:
            shown.append(Person((1 - w) * p.box + w * q.box, p.track, p.lines if w < 0.5 else q.lines))
        elif t - before.t <= HOLD_S:
            shown.append(p)
    shown += [q for q in by_track.values() if nxt.t - t <= HOLD_S]
    return shown
