"""Drawing persons on a picture, and the contact sheet of keyframes."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.visualize.annotations import Person
from pipeline.visualize.tracks import track_colour

FONT = cv2.FONT_HERSHEY_SIMPLEX
SHEET_COLUMNS = 4


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def draw_persons(image: np.ndarray, persons: list[Person]) -> np.ndarray:
    """``image`` uint8 [H, W, 3] RGB with each person's box in its track's colour and its text lines on
    a dark label above the box, or else inside its top, or below it: the first place that covers no
    label drawn before (the first place when none is free); drawn in place and returned."""
    height, width = image.shape[:2]
    thickness = max(2, round(height / 240))
    scale = max(0.38, height / 900)
    line_h = int(round(24 * scale)) + 2
    boxes = [(np.asarray(p.box) * [width, height, width, height]).round().astype(int).tolist() for p in persons]
    for person, (x1, y1, x2, y2) in zip(persons, boxes):
        cv2.rectangle(image, (x1, y1), (x2, y2), track_colour(person.track), thickness)
    taken: list[tuple[int, int, int, int]] = []
    for person, (x1, y1, x2, y2) in zip(persons, boxes):
        label_w = max(cv2.getTextSize(line, FONT, scale, 1)[0][0] for line in person.lines) + 4
        label_h = line_h * len(person.lines)
        x = min(max(0, x1), max(0, width - label_w))
        tops = [y1 - label_h - thickness, y1 + thickness, y2 + thickness]
        places = [(x, t, x + label_w, t + label_h) for t in tops if 0 <= t and t + label_h <= height]
        place = next((p for p in places if not any(_overlaps(p, q) for q in taken)),
                     places[0] if places else (x, max(0, y1), x + label_w, max(0, y1) + label_h))
        taken.append(place)
        colour = track_colour(person.track)
        for i, line in enumerate(person.lines):
            y = place[1] + i * line_h
            cv2.rectangle(image, (place[0], y), (place[2], y + line_h), (20, 20, 20), -1)
            cv2.putText(image, line, (place[0] + 2, y + line_h - 5), FONT, scale,
                        colour if i == 0 else (255, 255, 255), 1, cv2.LINE_AA)
    return image


def caption(image: np.ndarray, text: str) -> np.ndarray:
    """``text`` in the bottom-left corner of ``image`` (in place), where labels rarely are."""
    scale = max(0.38, image.shape[0] / 900)
    (tw, th), _ = cv2.getTextSize(text, FONT, scale, 1)
    h = image.shape[0]
    cv2.rectangle(image, (0, h - th - 8), (tw + 6, h), (0, 0, 0), -1)
    cv2.putText(image, text, (3, h - 4), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def contact_sheet(tiles: list[np.ndarray], columns: int = SHEET_COLUMNS) -> np.ndarray:
    """Tiles (uint8 [h, w, 3], one size) in a grid, ``columns`` wide, 2-pixel dark gutters: uint8 [H, W, 3]."""
    if not tiles:
        raise ValueError("no tile for the contact sheet")
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    h, w = tiles[0].shape[:2]
    gap = 2
    sheet = np.full((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, 3), 16, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tile
    return sheet


def sheet_keyframes(n_persons: list[int], tiles: int) -> list[int]:
    """Indices of at most ``tiles`` keyframes for the contact sheet, in time order, given the number of
    persons at each keyframe: spread evenly over the keyframes that have someone, then, when those are
    fewer than ``tiles``, over the others too."""
    with_someone = [i for i, n in enumerate(n_persons) if n > 0]
    if len(with_someone) >= tiles:
        return [with_someone[i] for i in _spread(len(with_someone), tiles)]
    others = [i for i, n in enumerate(n_persons) if n == 0]
    picked = [others[i] for i in _spread(len(others), tiles - len(with_someone))] if others else []
    return sorted(with_someone + picked)


def _spread(n: int, k: int) -> list[int]:
    """At most ``k`` of ``range(n)``, evenly spread, first and last included."""
    if k <= 0 or n == 0:
        return []
    if n <= k:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))
