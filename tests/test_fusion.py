"""Late fusion strategies, on values computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline import fusion
from pipeline.ava import formats
from pipeline.errors import InputError
from pipeline.scores import read_logits, sigmoid, write_logits
from pipeline.stages import fuse

LABELS = formats.LabelMap(ids=(3, 12), names=("a", "b"), label_types=(None, None))


def boxes(n: int, shift: float = 0.0) -> formats.AvaRows:
    return formats.AvaRows(
        video_id=np.array(["v"] * n), timestamp=np.arange(902, 902 + n, dtype=np.int64),
        box=np.tile(np.array([[0.1 + shift, 0.1, 0.5, 0.9]], np.float32), (n, 1)),
        action_id=np.full(n, -1, np.int64), person_id=np.full(n, -1, np.int64), score=np.ones(n, np.float32))


def test_mean_prob_averages_after_the_sigmoid():
    logits = np.array([[[0.0, 2.0]], [[2.0, -2.0]]], np.float32)
    got = fusion.fuse_probabilities(logits, "mean_prob")
    expected = [(0.5 + 1 / (1 + np.exp(-2))) / 2, (1 / (1 + np.exp(-2)) + 1 / (1 + np.exp(2))) / 2]
    np.testing.assert_allclose(got[0], expected, rtol=1e-6)


def test_mean_logit_averages_before_the_sigmoid():
    logits = np.array([[[0.0, 2.0]], [[2.0, -2.0]]], np.float32)
    np.testing.assert_allclose(fusion.fuse_probabilities(logits, "mean_logit")[0], [1 / (1 + np.exp(-1)), 0.5], rtol=1e-6)


def test_topk_box_keeps_the_n_halves_largest_logits_of_each_box():
    # n = 5 models -> k = 2: the two largest logits of each class are averaged.
    logits = np.array([-3.0, 1.0, 4.0, 0.0, 2.0], np.float32).reshape(5, 1, 1)
    np.testing.assert_allclose(fusion.fuse_probabilities(logits, "topk_box_logit"), [[1 / (1 + np.exp(-3.0))]],
                               rtol=1e-6)
    # n = 3 -> k = 1: the largest.
    np.testing.assert_allclose(fusion.fuse_probabilities(logits[:3], "topk_box_logit"), [[1 / (1 + np.exp(-4.0))]],
                               rtol=1e-6)


def test_topk_selects_per_class_the_k_models_best_on_validation():
    # 4 models -> k = 2; class 0: models 2 and 0 best; class 1: 1 and 3 (NaN last, ties to the first listed)
    ap = np.array([[0.5, np.nan], [0.1, 0.4], [0.9, 0.2], [0.3, 0.4]])
    np.testing.assert_array_equal(fusion.select_topk(ap), [[True, False], [False, True], [True, False], [False, True]])
    # 3 models -> k = 1
    np.testing.assert_array_equal(fusion.select_topk(ap[:3]), [[False, False], [False, True], [True, False]])


def test_topk_averages_the_logits_of_the_chosen_models_of_each_class():
    logits = np.array([[[1.0, 5.0], [0.0, -1.0]], [[3.0, -5.0], [2.0, 1.0]], [[9.0, 9.0], [9.0, 9.0]]], np.float32)
    chosen = np.array([[True, True], [True, False], [False, False]])     # model 2 (largest logits) chosen for none
    got = fusion.fuse_probabilities(logits, "topk_logit", chosen)
    np.testing.assert_allclose(got, sigmoid(np.array([[2.0, 5.0], [1.0, -1.0]])), rtol=1e-6)
    with pytest.raises(ValueError, match="chosen per class"):
        fusion.fuse_probabilities(logits, "topk_logit")


def test_fused_logit_inverts_the_sigmoid():
    p = np.array([0.1, 0.5, 0.9], np.float32)
    np.testing.assert_allclose(sigmoid(fusion.probability_logit(p)), p, rtol=1e-5)


def test_fusion_cli_writes_one_row_per_box_and_class(tmp_path):
    pbtxt = tmp_path / "labels.pbtxt"
    formats.write_label_map(pbtxt, LABELS)
    paths = []
    for i, values in enumerate(([[0.0, 1.0], [2.0, -1.0]], [[2.0, 1.0], [0.0, -3.0]])):
        path = tmp_path / f"m{i}.logits.parquet"
        write_logits(path, boxes(2), np.array(values, np.float32), LABELS, "predict", {})
        paths.append(str(path))
    out = tmp_path / "fused.csv"
    assert fuse.main(["--logits", *paths, "--label-map", str(pbtxt), "--out", str(out),
                        "--out-logits", str(tmp_path / "fused.parquet"),
                        "--params", '{"models": ["a", "b"], "strategy": "mean_logit", "select_split": null}']) == 0
    rows = formats.read_detections(out)
    assert len(rows) == 4
    np.testing.assert_array_equal(rows.action_id, [3, 12, 3, 12])
    np.testing.assert_allclose(rows.score, sigmoid(np.array([1.0, 1.0, 1.0, -2.0])), atol=1e-5)
    fused_boxes, fused_logits = read_logits(tmp_path / "fused.parquet", LABELS)
    np.testing.assert_allclose(fused_logits, [[1.0, 1.0], [1.0, -2.0]], atol=1e-4)


def write_evaluation(path, per_class: dict) -> str:
    path.write_text(json.dumps({"mAP": 0.0, "per_class": per_class}))
    return str(path)


def test_fusion_cli_chooses_per_class_from_the_validation_evaluations(tmp_path):
    pbtxt = tmp_path / "labels.pbtxt"
    formats.write_label_map(pbtxt, LABELS)
    paths = []
    for i, values in enumerate(([[0.0, 1.0], [2.0, -1.0]], [[2.0, 3.0], [0.0, -3.0]])):
        path = tmp_path / f"m{i}.logits.parquet"
        write_logits(path, boxes(2), np.array(values, np.float32), LABELS, "predict", {})
        paths.append(str(path))
    # model a is the better on class 3, model b on class 12 (n = 2 -> k = 1)
    evaluations = [write_evaluation(tmp_path / "a.json", {"3": 0.8, "12": 0.1}),
                   write_evaluation(tmp_path / "b.json", {"3": 0.2, "12": 0.6})]
    out = tmp_path / "fused.csv"
    params = '{"models": ["a", "b"], "strategy": "topk_logit", "select_split": "val"}'
    argv = ["--logits", *paths, "--label-map", str(pbtxt), "--out", str(out),
            "--out-logits", str(tmp_path / "fused.parquet"), "--params", params]
    with pytest.raises(SystemExit):
        fuse.main(argv)                                               # no evaluations to choose by
    assert fuse.main([*argv, "--select-evaluations", *evaluations]) == 0
    _, fused = read_logits(tmp_path / "fused.parquet", LABELS)
    np.testing.assert_allclose(fused, [[0.0, 3.0], [2.0, -3.0]], atol=1e-4)   # class 3 from a, class 12 from b
    provenance = json.loads((tmp_path / "fused.csv.provenance.json").read_text())
    assert json.loads(provenance["params"])["selected"] == {"3": ["a"], "12": ["b"]}


def test_an_evaluation_without_a_class_of_the_label_map_is_refused(tmp_path):
    with pytest.raises(InputError, match="no AP for classes"):
        fusion.read_class_ap(write_evaluation(tmp_path / "e.json", {"3": 0.5}), LABELS)


def test_fusion_refuses_models_on_different_boxes(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_logits(a, boxes(2), np.zeros((2, 2), np.float32), LABELS, "predict", {})
    write_logits(b, boxes(2, shift=0.05), np.zeros((2, 2), np.float32), LABELS, "predict", {})
    with pytest.raises(InputError, match="other boxes"):
        fusion.load_aligned([str(a), str(b)], LABELS)
