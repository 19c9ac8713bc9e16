"""Precomputed person boxes in place of the detector (SlowFast's and LFB's box files).

The files are taken as they are: ``video_id,timestamp,x1,y1,x2,y2,action_id,score`` with a row per
(box, action) where a box has labels, an empty or -1 action for the others (the
``include_negative`` file). Each box is kept once per keyframe with its highest score
(:func:`distinct_boxes`), then the operating threshold applies, as in SlowFast; only the keyframes
asked for are kept (:func:`on_keyframes`, which counts what lies outside them).
"""

from __future__ import annotations

import numpy as np

from pipeline.ava.formats import AvaRows


def distinct_boxes(rows: AvaRows) -> AvaRows:
    """One row per (video_id, timestamp, box) of ``rows`` [N] with the highest score of its rows, action -1.

    Returns AvaRows [B], the rows in the order of each box's first appearance.
    """
    if len(rows) == 0:
        return rows
    _, video_index = np.unique(rows.video_id, return_inverse=True)
    key = np.empty(len(rows), dtype=[("v", np.int64), ("t", np.int64), ("box", rows.box.dtype, (4,))])
    key["v"], key["t"], key["box"] = video_index, rows.timestamp, rows.box
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    best = np.full(len(first), -np.inf, dtype=np.float64)
    np.maximum.at(best, inverse, rows.score.astype(np.float64))
    order = np.argsort(first, kind="stable")
    out = rows.take(first[order])
    out.score = best[order].astype(rows.score.dtype)
    out.action_id = np.full(len(out), -1, dtype=np.int64)
    return out


def on_keyframes(rows: AvaRows, keyframes: AvaRows) -> tuple[AvaRows, dict[str, int]]:
    """The rows on ``keyframes`` and counts of what lies outside: boxes and keyframes both ways."""
    wanted = set(zip(keyframes.video_id.tolist(), keyframes.timestamp.tolist()))
    keys = list(zip(rows.video_id.tolist(), rows.timestamp.tolist()))
    inside = np.fromiter((k in wanted for k in keys), dtype=bool, count=len(keys))
    file_keyframes = set(keys)
    counts = {
        "n_file_boxes_outside_keyframes": int((~inside).sum()),
        "n_file_keyframes_outside_keyframes": len(file_keyframes - wanted),
        "n_keyframes_without_file_boxes": len(wanted - file_keyframes),
    }
    return rows.take(inside), counts
