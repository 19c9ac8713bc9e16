"""Person boxes per keyframe: the distinct persons of ground-truth rows and grouping by keyframe."""

from __future__ import annotations

import numpy as np

from pipeline.ava.formats import AvaRows

KeyframeKey = tuple[str, int]


def distinct_persons(rows: AvaRows) -> AvaRows:
    """One row per distinct (video_id, timestamp, person_id, box), in first-appearance order.

    AVA's ground truth has a row per (person, action); this keeps each person box once. Rows
    without a person id (-1) are told apart by their box alone.
    """
    _, video_index = np.unique(rows.video_id.astype(str), return_inverse=True)
    key = np.empty(len(rows), dtype=[("v", np.int64), ("t", np.int64), ("p", np.int64),
                                     ("box", np.float32, (4,))])
    key["v"], key["t"], key["p"], key["box"] = video_index, rows.timestamp, rows.person_id, rows.box
    _, first = np.unique(key, return_index=True)
    return rows.take(np.sort(first))


def keyframe_groups(rows: AvaRows) -> dict[KeyframeKey, np.ndarray]:
    """Row indices ([n] int64, in row order) of each (video_id, timestamp) keyframe of ``rows``."""
    groups: dict[KeyframeKey, list[int]] = {}
    for i, key in enumerate(zip(rows.video_id.tolist(), rows.timestamp.tolist())):
        groups.setdefault((str(key[0]), int(key[1])), []).append(i)
    return {key: np.asarray(index, dtype=np.int64) for key, index in groups.items()}
