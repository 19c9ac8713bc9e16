"""AVA frame-mAP: cases computed by hand, and random cases against a plain per-keyframe loop.

Boxes in the hand cases use dyadic coordinates, so that every IoU below is exact. Where ties decide, the
expected values follow the official evaluator's rules (its heap at the capacity cut, ground truth ordered by
descending person id), which pipeline/ava/reference.py replays row by row; every case is also checked against it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.ava import formats as F
from pipeline.ava.evaluate import average_precision, evaluate, evaluate_files, precision_recall, ranked_precision_recall

from pipeline.ava import reference
from pipeline.params import EvaluateParams, to_json
from pipeline.stages.evaluate import main

A = "0.0,0.0,0.5,1.0"        # left half
B = "0.25,0.0,0.75,1.0"      # middle, overlaps A
C = "0.5,0.5,1.0,1.0"
FAR = "0.0,0.0,0.125,0.125"
IDS = (1, 3, 7)


@pytest.fixture
def case(tmp_path):
    """Writes a label map (ids 1, 3, 7 of three label types) and CSV texts; evaluates them both ways."""
    label_map = F.LabelMap(IDS, ("stand", "carry", "talk to"),
                           ("PERSON_MOVEMENT", "OBJECT_MANIPULATION", "PERSON_INTERACTION"))
    F.write_label_map(tmp_path / "lm.pbtxt", label_map)

    def run(gt: str, det: str, excluded: str | None = None, **kw):
        (tmp_path / "gt.csv").write_text(gt)
        (tmp_path / "det.csv").write_text(det)
        ex = None
        if excluded is not None:
            ex = tmp_path / "ex.csv"
            ex.write_text(excluded)
        result = evaluate_files(tmp_path / "lm.pbtxt", tmp_path / "gt.csv", tmp_path / "det.csv", ex, **kw)
        ref = reference.evaluate_reference(tmp_path / "lm.pbtxt", tmp_path / "gt.csv", tmp_path / "det.csv", ex, **kw)
        for action_id in IDS:
            assert (result.per_class[action_id] is None) == (ref["per_class"][action_id] is None)
            if ref["per_class"][action_id] is not None:
                assert result.per_class[action_id] == pytest.approx(ref["per_class"][action_id], abs=1e-12)
            assert result.n_det[action_id] == ref["n_det"][action_id]
            assert result.n_gt[action_id] == ref["n_gt"][action_id]
        return result
    return run


def rows(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


def test_one_detection_overlapping_two_boxes(case):
    # d1 = A: IoU 1 with A, 1/3 with B -> takes A. d2: IoU 0.7 with A (taken) and 0.545 with B -> false
    # positive although B is free (the best box decides). d3 = B -> true positive.
    r = case(rows(f"v,0902,{A},1,0", f"v,0902,{B},1,1"),
             rows(f"v,0902,{A},1,0.9", "v,0902,0.0625,0.0,0.625,1.0,1,0.8", f"v,0902,{B},1,0.7"))
    assert r.per_class[1] == pytest.approx(0.5 * 1 + 0.5 * (2 / 3), abs=1e-15)
    precision, recall = r.pr[1]
    np.testing.assert_allclose(precision, [1, 0.5, 2 / 3])
    np.testing.assert_allclose(recall, [0.5, 0.5, 1])


def test_iou_exactly_at_threshold_matches(case):
    # IoU(d, B) = 0.375 / 0.75 = 0.5 exactly
    r = case(rows(f"v,0902,0.5,0.0,1.0,1.0,1,0"), rows("v,0902,0.25,0.0,0.875,1.0,1,0.5"))
    assert r.per_class[1] == 1.0


@pytest.mark.parametrize("first, second, ap", [(0, 1, 0.5), (1, 0, 1.0)])
def test_equal_ious_go_to_the_higher_person_id(case, first, second, ap):
    # d1 has IoU 0.6 with both A and B; the official reader orders ground truth by descending person id,
    # so d1 takes B when B has the higher id, and d2 (best box B) is then a false positive.
    r = case(rows(f"v,0902,{A},1,{first}", f"v,0902,{B},1,{second}"),
             rows("v,0902,0.125,0.0,0.625,1.0,1,0.9", "v,0902,0.3,0.0,0.75,1.0,1,0.8"))
    assert r.per_class[1] == ap


def test_duplicate_detections(case):
    # far box (fp) 0.6, C (tp) 0.5, C again (fp) 0.4: precision 0, 1/2, 1/3 at recall 0, 1, 1
    r = case(rows(f"v,0903,{C},3,0"), rows(f"v,0903,{FAR},3,0.6", f"v,0903,{C},3,0.5", f"v,0903,{C},3,0.4"))
    assert r.per_class[3] == 0.5 and r.n_det[3] == 3


def test_exclusions(case):
    gt = rows("v,0904,0.0,0.0,1.0,1.0,7,0", "v,0905,0.0,0.0,1.0,1.0,7,0")
    det = rows("v,0904,0.0,0.0,1.0,1.0,7,0.9", f"v,0905,{FAR},7,0.5", "v,0905,0.0,0.0,1.0,1.0,7,0.3")
    # excluded: keyframe 904 leaves both sides; ranking fp(0.5), tp(0.3) with one ground truth
    r = case(gt, det, excluded=rows("v,904"))
    assert r.per_class[7] == 0.5 and r.n_gt[7] == 1 and r.n_det[7] == 2
    # not excluded: tp(0.9), fp(0.5), tp(0.3) with two ground truths
    assert case(gt, det).per_class[7] == pytest.approx(0.5 + 0.5 * (2 / 3), abs=1e-15)


def test_keyframes_without_ground_truth(case):
    gt = rows(f"v,0902,{A},1,0", "v,0910,0.0,0.0,1.0,1.0,2,0")     # keyframe 910: only a class outside the map
    det = rows(f"v,0906,{A},1,0.95", f"v,0910,{A},1,0.9", f"v,0902,{A},1,0.5")
    # 2019: every keyframe with detections counts: fp 0.95, fp 0.9, tp 0.5 -> AP 1/3
    assert case(gt, det).per_class[1] == pytest.approx(1 / 3, abs=1e-15)
    # 2020: keyframe 906 is not in the ground-truth file and is ignored; 910 is in it -> fp 0.9, tp 0.5
    r = case(gt, det, variant="2020")
    assert r.per_class[1] == 0.5 and r.n_det[1] == 2


def test_classes_without_detections_or_ground_truth(case):
    r = case(rows(f"v,0902,{A},1,0", f"v,0902,{C},3,0"), rows(f"v,0902,{A},1,0.5", f"v,0902,{C},7,0.5"))
    assert r.per_class == {1: 1.0, 3: 0.0, 7: None}     # 3: ground truth, no detection; 7: no ground truth
    assert r.mAP == 0.5
    assert r.per_type == {"PERSON_MOVEMENT": 1.0, "OBJECT_MANIPULATION": 0.0}
    assert np.isnan(evaluate(F.AvaRows.empty(), F.AvaRows.empty(), F.LabelMap((1,), ("a",), (None,))).mAP)


def test_capacity_cut(case):
    gt = rows(f"v,0902,{A},1,0")
    det = rows(f"v,0902,{FAR},3,0.9", f"v,0902,{FAR},7,0.8", f"v,0902,{A},1,0.7")
    assert case(gt, det, capacity=2).per_class[1] == 0.0       # the third row of the keyframe is cut
    assert case(gt, det, capacity=None).per_class[1] == 1.0
    assert case(gt, det).per_class[1] == 1.0                    # 50 by default


def test_capacity_cut_among_tied_scores(case):
    # The official reader keeps a min-heap of (score, action_id, y1, x1, y2, x2): the 0.9 row replaces the
    # smallest tuple, (0.5, 1, ...), though that row came first; the class-7 row stays.
    gt = rows(f"v,0902,{A},1,0", f"v,0902,{A},7,0")
    r = case(gt, rows(f"v,0902,{A},1,0.5", f"v,0902,{A},7,0.5", f"v,0902,{FAR},3,0.9"), capacity=2)
    assert (r.per_class[1], r.per_class[7]) == (0.0, 1.0)
    # without a higher row, the first two rows stay and a third tied row is not admitted
    r = case(gt, rows(f"v,0902,{A},7,0.5", f"v,0902,{FAR},3,0.9", f"v,0902,{A},1,0.5"), capacity=2)
    assert (r.per_class[1], r.per_class[7]) == (0.0, 1.0)


def test_tied_scores_that_both_match(case):
    r = case(rows(f"v,0902,{A},1,0", f"v,0902,{C},1,1"), rows(f"v,0902,{C},1,0.5", f"v,0902,{A},1,0.5"))
    assert r.per_class[1] == 1.0


def test_ids_outside_the_label_map(case):
    # id 2 rows are dropped from both files before the cut: they take no capacity and count as no ground truth
    r = case(rows(f"v,0902,{A},1,0", f"v,0902,{C},2,0"), rows(f"v,0902,{C},2,0.99", f"v,0902,{A},1,0.5"), capacity=1)
    assert r.per_class == {1: 1.0, 3: None, 7: None} and r.n_gt == {1: 1, 3: 0, 7: 0}


def test_zero_padded_timestamps_are_the_same_keyframe(case):
    assert case(rows(f"v,0902,{A},1,0"), rows(f"v,902,{A},1,0.5")).per_class[1] == 1.0
    r = case(rows(f"v,0902,{A},1,0", f"v,903,{A},1,0"), rows(f"v,0902,{A},1,0.5"), excluded=rows("v,0903"))
    assert r.n_gt[1] == 1 and r.per_class[1] == 1.0


def test_degenerate_detections_are_dropped_after_the_cut(case):
    gt = rows(f"v,0902,{A},1,0")
    det = rows("v,0902,0.5,0.0,0.25,1.0,1,0.9", f"v,0902,{A},1,0.5")    # x1 > x2, highest score
    assert case(gt, det, capacity=1).per_class[1] == 0.0
    r = case(gt, det, capacity=None)
    assert r.per_class[1] == 1.0 and r.n_det[1] == 1


def test_average_precision_by_hand():
    assert average_precision(np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])) == pytest.approx(5 / 6)
    assert average_precision(np.zeros(0), np.zeros(0)) == 0.0


def test_precision_recall_ranks_as_the_official_code():
    scores = np.array([0.5, 0.9, 0.5, 0.1])
    tp = np.array([True, False, False, True])
    precision, recall = precision_recall(scores, tp, 4)
    expected = ranked_precision_recall(tp[np.argsort(scores)[::-1]], 4)
    np.testing.assert_array_equal(precision, expected[0])
    np.testing.assert_array_equal(recall, expected[1])
    np.testing.assert_array_equal(ranked_precision_recall(np.array([True, False, True]), 4)[0], [1.0, 0.5, 2 / 3])
    np.testing.assert_array_equal(ranked_precision_recall(np.array([True, False, True]), 4)[1], [0.25, 0.25, 0.5])


def test_variant_2020_refuses_exclusions():
    lm = F.LabelMap((1,), ("a",), (None,))
    with pytest.raises(ValueError):
        evaluate(F.AvaRows.empty(), F.AvaRows.empty(), lm, {("v", 902)}, variant="2020")


# ------------------------------------------------------------------------------------------ random cases

def random_case(directory: Path, seed: int, *, tied: bool, grid: int = 1000, with_person_ids: bool = True) -> None:
    """A few videos with excluded keyframes, keyframes without ground truth, ids outside the map (2, 100),
    '902' beside '0902', degenerate boxes, over-full keyframes; scores distinct or from {0, .25, .., 1}."""
    rng = np.random.default_rng(seed)
    ids = (1, 3, 4, 7, 9)
    F.write_label_map(directory / "lm.pbtxt", F.LabelMap(ids, tuple(f"c{i}" for i in ids), (None,) * len(ids)))
    gt, det, excluded = [], [], []
    for v in range(3):
        for t in range(902, 910):
            ts = f"{t:04d}" if rng.random() < 0.5 else str(t)
            if rng.random() < 0.1:
                excluded.append(f"vid{v},{t}\n")
            persons = []
            for p in range(rng.integers(0, 4)):
                x1, y1 = rng.integers(0, grid // 2, 2)
                w, h = rng.integers(grid // 10, grid // 2, 2)
                box = np.array([x1, y1, min(x1 + w, grid), min(y1 + h, grid)]) / grid
                persons.append(box)
                for a in rng.choice([*ids, 2, 100], rng.integers(1, 4), replace=False):
                    person = f",{p}" if with_person_ids else ""
                    gt.append(f"vid{v},{ts},{box[0]:.3f},{box[1]:.3f},{box[2]:.3f},{box[3]:.3f},{a}{person}\n")
            for _ in range(rng.integers(0, 6)):
                if persons and rng.random() < 0.7:
                    box = persons[rng.integers(len(persons))] + rng.normal(0, 0.05 if grid > 100 else 0, 4)
                else:
                    box = rng.random(4)
                box = np.clip(box, 0, 1)
                if rng.random() < 0.9:
                    box = np.r_[np.minimum(box[:2], box[2:]), np.maximum(box[:2], box[2:])]
                for a in rng.choice([*ids, 2, 100], rng.integers(1, 7), replace=False):
                    score = float(rng.integers(0, 5) / 4) if tied else float(rng.random())
                    det.append(f"vid{v},{ts},{box[0]:.4f},{box[1]:.4f},{box[2]:.4f},{box[3]:.4f},{a},{score!r}\n")
    (directory / "gt.csv").write_text("".join(gt))
    (directory / "det.csv").write_text("".join(det[i] for i in rng.permutation(len(det))))
    (directory / "ex.csv").write_text("".join(excluded))


def compare_with_reference(directory: Path, tolerance: float) -> None:
    for variant in ("2019", "2020"):
        excluded = directory / "ex.csv" if variant == "2019" else None
        for capacity in (50, 4, None):
            kw = {"capacity": capacity, "variant": variant}
            ref = reference.evaluate_reference(directory / "lm.pbtxt", directory / "gt.csv", directory / "det.csv",
                                               excluded, **kw)
            got = evaluate_files(directory / "lm.pbtxt", directory / "gt.csv", directory / "det.csv", excluded, **kw)
            for action_id, ap in ref["per_class"].items():
                assert (got.per_class[action_id] is None) == (ap is None), (variant, capacity, action_id)
                if ap is not None:
                    assert abs(got.per_class[action_id] - ap) <= tolerance, (variant, capacity, action_id)
                assert got.n_det[action_id] == ref["n_det"][action_id]
                assert got.n_gt[action_id] == ref["n_gt"][action_id]
            if not np.isnan(ref["mAP"]):
                assert abs(got.mAP - ref["mAP"]) <= tolerance


@pytest.mark.parametrize("seed", range(12))
def test_random_cases_with_distinct_scores_equal_the_loop(tmp_path, seed):
    random_case(tmp_path, seed, tied=False)
    compare_with_reference(tmp_path, 1e-9)


@pytest.mark.parametrize("seed", range(8))
def test_random_cases_with_ties_and_coarse_boxes_equal_the_loop(tmp_path, seed):
    # scores in {0, .25, .5, .75, 1} and boxes on a 1/6 grid: ties at the cut, within classes and in IoU.
    # Both sides rank with the same np.argsort on arrays in the same order, so they agree exactly.
    random_case(tmp_path, seed, tied=True, grid=6, with_person_ids=seed % 2 == 0)
    compare_with_reference(tmp_path, 1e-12)


# ------------------------------------------------------------------------------------------ command line

def stage_args(directory: Path, **params) -> list[str]:
    """The evaluate stage's arguments for the files of :func:`random_case` (no --excluded, no --out)."""
    settings = EvaluateParams(**{"iou": 0.5, "capacity": 50, "variant": "2019", **params})
    return ["--label-map", str(directory / "lm.pbtxt"), "--ground-truth", str(directory / "gt.csv"),
            "--detections", str(directory / "det.csv"), "--params", to_json(settings)]


def test_command_line_writes_json(tmp_path, capsys):
    random_case(tmp_path, 0, tied=False)
    code = main(stage_args(tmp_path, capacity=None) + ["--excluded", str(tmp_path / "ex.csv"),
                                                       "--out", str(tmp_path / "out.json")])
    assert code == 0
    printed = capsys.readouterr().out
    out = json.loads((tmp_path / "out.json").read_text())
    expected = evaluate_files(tmp_path / "lm.pbtxt", tmp_path / "gt.csv", tmp_path / "det.csv", tmp_path / "ex.csv",
                              capacity=None)
    assert out["mAP"] == pytest.approx(expected.mAP) and f"{expected.mAP:.6f}" in printed
    assert set(out["per_class"]) == {"1", "3", "4", "7", "9"} and out["per_class_name"]["3"] == "c3"
    assert out["capacity"] is None and out["variant"] == "2019" and out["provenance"]["stage"] == "evaluate"
    for key, curve in out["pr"].items():
        assert len(curve["precision"]) == len(curve["recall"]) <= 200
        assert out["per_class"][key] is not None


def test_command_line_2020_ignores_exclusions_and_says_so(tmp_path, capsys):
    random_case(tmp_path, 1, tied=False)
    args = stage_args(tmp_path, variant="2020")
    assert main(args + ["--excluded", str(tmp_path / "ex.csv"), "--out", str(tmp_path / "a.json")]) == 0
    assert "not used" in capsys.readouterr().err
    assert main(args + ["--out", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["per_class"] == b["per_class"]


def test_ava_shaped_case_equals_the_loop(tmp_path):
    """A slice of the benchmark's AVA-like case: 60 classes, person ids, exclusions, crowded keyframes."""
    bench_file = Path(__file__).resolve().parent.parent / "bench" / "evaluate.py"
    spec = importlib.util.spec_from_file_location("bench_evaluate", bench_file)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    paths = bench.build_case(tmp_path, seed=3, n_videos=2, n_keyframes=150)
    for capacity in (50, 10):
        ref = reference.evaluate_reference(paths["label_map"], paths["gt"], paths["det"], paths["excluded"],
                                           capacity=capacity)
        got = evaluate_files(paths["label_map"], paths["gt"], paths["det"], paths["excluded"], capacity=capacity)
        assert got.n_det == ref["n_det"] and got.n_gt == ref["n_gt"]
        for action_id, ap in ref["per_class"].items():
            assert (ap is None and got.per_class[action_id] is None) or abs(got.per_class[action_id] - ap) <= 1e-9


# ------------------------------------------------------------------------------------------ other IoU thresholds

# Two persons of class 1 at one keyframe: A (left half) and the lower right quarter C. d1 (score 0.9) overlaps A
# with IoU 0.25 / 0.75 = 1/3 (and C with 0.2); d2 (score 0.8) overlaps C with IoU 0.15625 / 0.25 = 0.625.
# At IoU 0.3 both match (AP 1); at 0.5 only d2 (precision [0, 1/2], recall [0, 1/2]: AP 1/4); at 0.7 neither.
@pytest.mark.parametrize("iou, ap, tp", [(0.3, 1.0, [True, True]), (0.5, 0.25, [False, True]),
                                         (0.7, 0.0, [False, False]), (1 / 3, 1.0, [True, True])])
def test_other_iou_thresholds(case, iou, ap, tp):
    r = case(rows(f"v,0902,{A},1,0", f"v,0902,{C},1,1"),
             rows(f"v,0902,{B},1,0.9", "v,0902,0.5,0.5,1.0,0.8125,1,0.8"), iou_threshold=iou)
    assert r.per_class[1] == ap and r.iou_threshold == iou
    precision, recall = r.pr[1]
    hits = np.cumsum(tp)
    np.testing.assert_array_equal(recall, hits / 2)
    np.testing.assert_array_equal(precision, hits / np.arange(1, 3))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("iou", [0.3, 0.7])
def test_random_cases_at_other_iou_thresholds_equal_the_loop(tmp_path, seed, iou):
    random_case(tmp_path, seed, tied=False)
    paths = [tmp_path / n for n in ("lm.pbtxt", "gt.csv", "det.csv", "ex.csv")]
    ref = reference.evaluate_reference(*paths, iou_threshold=iou)
    got = evaluate_files(*paths, iou_threshold=iou)
    at_half = evaluate_files(*paths)
    for action_id, expected in ref["per_class"].items():
        assert (got.per_class[action_id] is None) == (expected is None)
        if expected is not None:
            assert abs(got.per_class[action_id] - expected) <= 1e-9, action_id
    assert abs(got.mAP - ref["mAP"]) <= 1e-9
    # the random boxes are noisy copies of the ground truth: the threshold changes the result
    assert got.mAP > at_half.mAP if iou < 0.5 else got.mAP < at_half.mAP


def test_command_line_passes_its_iou(tmp_path, capsys):
    random_case(tmp_path, 0, tied=False)
    for iou in (0.3, 0.5, 0.7):
        assert main(stage_args(tmp_path, iou=iou) + ["--out", str(tmp_path / f"{iou}.json")]) == 0
        out = json.loads((tmp_path / f"{iou}.json").read_text())
        expected = evaluate_files(tmp_path / "lm.pbtxt", tmp_path / "gt.csv", tmp_path / "det.csv", iou_threshold=iou)
        assert out["iou_threshold"] == iou and out["mAP"] == pytest.approx(expected.mAP, abs=1e-12)
        assert f"mAP@{iou}IOU" in capsys.readouterr().out
    maps = [json.loads((tmp_path / f"{iou}.json").read_text())["mAP"] for iou in (0.3, 0.5, 0.7)]
    assert maps[0] > maps[1] > maps[2]
