"""The class-prior baseline scores each class by its share of train person boxes."""

from __future__ import annotations

import numpy as np

from pipeline.stages import baseline
from pipeline.ava import formats

LABELS = formats.LabelMap(ids=(11, 12, 79), names=("sit", "stand", "talk"), label_types=(None, None, None))


def gt_rows(rows: list[tuple[str, int, float, int]]) -> formats.AvaRows:
    n = len(rows)
    return formats.AvaRows(
        video_id=np.array([r[0] for r in rows]), timestamp=np.array([r[1] for r in rows], np.int64),
        box=np.array([[r[2], 0.1, r[2] + 0.2, 0.9] for r in rows], np.float32),
        action_id=np.array([r[3] for r in rows], np.int64), person_id=np.zeros(n, np.int64),
        score=np.ones(n, np.float32))


def test_prior_counts_boxes_not_rows():
    # Three person boxes: (v,902,0.1) stand+talk, (v,902,0.5) sit, (v,903,0.1) stand; id 99 is not in the map.
    gt = gt_rows([("v", 902, 0.1, 12), ("v", 902, 0.1, 79), ("v", 902, 0.5, 11), ("v", 903, 0.1, 12),
                  ("v", 903, 0.1, 99)])
    np.testing.assert_allclose(baseline.class_prior(gt, LABELS), [1 / 3, 2 / 3, 1 / 3])


def test_cli_scores_every_box_with_the_prior(tmp_path):
    pbtxt, gt_csv, boxes_csv, out = (tmp_path / n for n in ("l.pbtxt", "gt.csv", "boxes.csv", "pred.csv"))
    formats.write_label_map(pbtxt, LABELS)
    formats.write_ground_truth(gt_csv, gt_rows([("v", 902, 0.1, 12), ("v", 902, 0.5, 11)]))
    det = gt_rows([("w", 910, 0.3, -1)])
    det.score = np.array([0.9], np.float32)
    formats.write_boxes(boxes_csv, det)
    assert baseline.main(["--train-ground-truth", str(gt_csv), "--boxes", str(boxes_csv), "--label-map", str(pbtxt),
                          "--out", str(out)]) == 0
    rows = formats.read_detections(out)
    np.testing.assert_array_equal(rows.action_id, [11, 12, 79])
    np.testing.assert_allclose(rows.score, [0.5, 0.5, 0.0])
    assert set(rows.video_id.tolist()) == {"w"}
