"""AVA formats: label maps, CSV readers and writers, strict errors, IoU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.ava import formats as F
from pipeline.ava.boxes import iou_matrix, pairwise_iou
from pipeline.errors import InputError

# AVA's real 60-class map (v2.1, ActivityNet 2018), kept as a fixture so that the test runs everywhere.
AVA_LABEL_MAP = Path(__file__).parent / "fixtures" / "ava" / "ava_action_list_v2.1_for_activitynet_2018.pbtxt"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------ label map

def test_real_ava_label_map():
    lm = F.read_label_map(AVA_LABEL_MAP)
    assert len(lm) == 60
    assert lm.ids[:4] == (1, 3, 4, 5) and lm.ids[-1] == 80
    assert lm.names[0] == "bend/bow (at the waist)"
    assert set(lm.label_types) == {None}
    assert lm.index(80) == 59 and lm.name(3) == "crouch/kneel"
    with pytest.raises(KeyError):
        lm.index(2)          # not among AVA's 60 evaluated classes


def test_label_map_both_forms_and_single_line(tmp_path):
    item = write(tmp_path / "item.pbtxt", 'item {\n  name: "stand"\n  id: 12\n  label_type: PERSON_MOVEMENT\n}\n'
                                          '# a comment\nitem { name: "ride (e.g., a bike)" id: 3 }\n')
    label = write(tmp_path / "label.pbtxt", 'label {\n  name: "talk to (e.g., self)"\n  label_id: 79\n'
                                            '  label_type: PERSON_INTERACTION\n}\n')
    a = F.read_label_map(item)
    assert a.ids == (12, 3) and a.names == ("stand", "ride (e.g., a bike)")
    assert a.label_types == ("PERSON_MOVEMENT", None)
    b = F.read_label_map(label)
    assert b.ids == (79,) and b.label_types == ("PERSON_INTERACTION",)
    np.testing.assert_array_equal(a.index_array(np.array([3, 12, 5, -1, 10**9])), [1, 0, -1, -1, -1])


def test_label_map_round_trip(tmp_path):
    lm = F.LabelMap((80, 1, 17), ('say "hi"', "bend", "carry"), ("PERSON_INTERACTION", "PERSON_MOVEMENT", None))
    F.write_label_map(tmp_path / "lm.pbtxt", lm)
    assert F.read_label_map(tmp_path / "lm.pbtxt") == lm
    text = (tmp_path / "lm.pbtxt").read_text()
    assert '  name: "bend"\n  label_id: 1\n' in text    # the lines the official reader looks for


@pytest.mark.parametrize("text, line, words", [
    ('item {\n  name: "a"\n  id: 1\n  label_type: POSE\n}\n', 4, "unknown label_type"),
    ('item {\n  name: "a"\n}\n', 1, "without id"),
    ('item { name: "a" id: 1 }\nitem {\n name: "b"\n id: 1\n}\n', 4, "given twice"),
    ('item {\n  name: "a"\n  id: x1\n}\n', 3, "must be an integer"),
    ('item {\n  name: "a"\n  colour: 1\n}\n', 3, "unknown field"),
    ('thing { name: "a" id: 1 }\n', 1, "expected 'item' or 'label'"),
])
def test_label_map_errors_name_the_line(tmp_path, text, line, words):
    path = write(tmp_path / "lm.pbtxt", text)
    with pytest.raises(InputError) as err:
        F.read_label_map(path)
    assert err.value.line == line and words in str(err.value) and str(path) in str(err.value)


# ------------------------------------------------------------------------------------------ rows

def test_ground_truth_seven_and_eight_columns(tmp_path):
    eight = F.read_ground_truth(write(tmp_path / "g8.csv", "vid_a,0902,0.1,0.2,0.5,0.9,12,3\nvid_b,902,0,0,1,1,80,0\n"))
    seven = F.read_ground_truth(write(tmp_path / "g7.csv", "vid_a,0902,0.1,0.2,0.5,0.9,12\n"))
    assert eight.video_id.tolist() == ["vid_a", "vid_b"]
    assert eight.timestamp.tolist() == [902, 902]            # '0902' and '902' are the same keyframe
    assert eight.person_id.tolist() == [3, 0] and seven.person_id.tolist() == [-1]
    assert eight.action_id.tolist() == [12, 80]
    assert eight.box.dtype == np.float32 and eight.score.tolist() == [1.0, 1.0]
    np.testing.assert_allclose(eight.box[0], [0.1, 0.2, 0.5, 0.9], rtol=1e-7)
    assert F.read_ground_truth(tmp_path / "g7.csv", full_precision=True).box[0, 0] == 0.1


def test_degenerate_boxes_are_read(tmp_path):
    rows = F.read_detections(write(tmp_path / "d.csv", "v,0902,0.5,0.2,0.5,0.9,1,0.3\nv,0902,0.6,0.2,0.4,0.9,1,0.2\n"))
    assert len(rows) == 2


def test_detections_round_trip_exactly(tmp_path):
    rng = np.random.default_rng(0)
    n = 5000
    box = np.sort(rng.random((n, 2, 2), dtype=np.float32), axis=1).transpose(0, 2, 1).reshape(n, 4)
    rows = F.AvaRows(np.array(["a-b_c", "0x"])[rng.integers(0, 2, n)], rng.integers(0, 20000, n), box,
                     rng.integers(1, 81, n), None, rng.random(n, dtype=np.float32))
    F.write_detections(tmp_path / "d.csv", rows)
    back = F.read_detections(tmp_path / "d.csv")
    for name in ("video_id", "timestamp", "box", "action_id", "score"):
        np.testing.assert_array_equal(getattr(back, name), getattr(rows, name))
    assert (tmp_path / "d.csv").read_text().splitlines()[0].count(",") == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]          # no temporary left behind


def test_ground_truth_writer_uses_three_decimals(tmp_path):
    rows = F.AvaRows(["vid"], [902], [[0.12345, 0.5, 1.0, 0.0004]], [7], [2])
    F.write_ground_truth(tmp_path / "g.csv", rows)
    assert (tmp_path / "g.csv").read_text() == "vid,0902,0.123,0.500,1.000,0.000,7,2\n"
    back = F.read_ground_truth(tmp_path / "g.csv")
    assert back.person_id.tolist() == [2] and back.action_id.tolist() == [7]


def test_boxes_with_and_without_action(tmp_path):
    rows = F.AvaRows(["a", "b"], [902, 903], [[0, 0, 1, 1], [0.25, 0.5, 0.75, 1]], [-1, 80], None, [0.5, 0.25])
    F.write_boxes(tmp_path / "b.csv", rows)
    assert (tmp_path / "b.csv").read_text() == "a,0902,0,0,1,1,,0.5\nb,0903,0.25,0.5,0.75,1,80,0.25\n"
    back = F.read_boxes(tmp_path / "b.csv")
    assert back.action_id.tolist() == [-1, 80] and back.score.tolist() == [0.5, 0.25]


def test_excluded_round_trip(tmp_path):
    F.write_excluded(tmp_path / "e.csv", [("vid", 902), ("other", 1000)])
    assert (tmp_path / "e.csv").read_text() == "vid,0902\nother,1000\n"
    assert F.read_excluded(write(tmp_path / "e2.csv", "vid,902\n\nother,01000\n")) == {("vid", 902), ("other", 1000)}
    with pytest.raises(InputError) as err:
        F.read_excluded(write(tmp_path / "e3.csv", "vid,902\nvid,902,1\n"))
    assert err.value.line == 2


def test_empty_file_is_empty_rows(tmp_path):
    assert len(F.read_detections(write(tmp_path / "d.csv", ""))) == 0


GOOD = "v,0902,0.1,0.2,0.3,0.4,5,0.9\n"


@pytest.mark.parametrize("bad, line, words", [
    (GOOD + "v,0903,0.1,0.2,1.3,0.4,5,0.9\n", 2, "x2 1.3 is outside [0, 1]"),
    (GOOD + "\nv,0903,0.1,0.2,0.3,0.4,5.5,0.9\n", 3, "action_id '5.5' is not"),
    (GOOD + "v,0903,0.1,0.2,0.3,0.4,5\n", 2, "expected 8 columns"),
    ("v,09x2,0.1,0.2,0.3,0.4,5,0.9\n", 1, "timestamp '09x2'"),
    ("v,902.0,0.1,0.2,0.3,0.4,5,0.9\n", 1, "timestamp '902.0'"),
    ("v,-902,0.1,0.2,0.3,0.4,5,0.9\n", 1, "timestamp '-902'"),
    (GOOD * 3 + "v,0902,0.1,0.2,0.3,0.4,5,nan\n", 4, "score 'nan' is not a finite number"),
    ("v,0902,0.1,0.2,0.3,0.4,5,inf\n", 1, "score 'inf'"),
    ("v,0902,NA,0.2,0.3,0.4,5,1\n", 1, "x1 'NA'"),
    ("v,0902,0.1,0.2,0.3,0.4,,0.9\n", 1, "empty action_id"),
    (",0902,0.1,0.2,0.3,0.4,5,0.9\n", 1, "empty video_id"),
    ("video_id,timestamp,x1,y1,x2,y2,action_id,score\n" + GOOD, 1, "timestamp 'timestamp'"),
    ("v,0902,0.1,0.2,0.3,0.4,5,0.9,1\n", 1, "need 8"),
])
def test_malformed_detections_name_file_and_line(tmp_path, bad, line, words):
    path = write(tmp_path / "det.csv", bad)
    with pytest.raises(InputError) as err:
        F.read_detections(path)
    assert err.value.line == line, str(err.value)
    assert words in str(err.value) and str(path) in str(err.value)


def test_malformed_ground_truth(tmp_path):
    path = write(tmp_path / "gt.csv", "v,0902,0.1,0.2,0.3,0.4,5,1\nv,0902,0.1,0.2,0.3,-0.4,5,2\n")
    with pytest.raises(InputError, match=r"gt.csv:2: y2 -0.4 is outside"):
        F.read_ground_truth(path)
    path = write(tmp_path / "gt2.csv", "v,0902,0.1,0.2,0.3,0.4,5,p1\n")
    with pytest.raises(InputError, match=r"gt2.csv:1: person_id 'p1' is not an integer"):
        F.read_ground_truth(path)


def test_avarows_defaults_take_concat():
    rows = F.AvaRows(["a", "b", "c"], [1, 2, 3], np.zeros((3, 4)))
    assert rows.action_id.tolist() == [-1] * 3 and rows.person_id.tolist() == [-1] * 3
    assert rows.score.dtype == np.float32 and rows.box.dtype == np.float32
    part = rows.take(np.array([True, False, True]))
    assert part.video_id.tolist() == ["a", "c"] and len(part) == 2
    both = F.AvaRows.concat([part, rows.take(np.array([1]))])
    assert both.timestamp.tolist() == [1, 3, 2]
    assert len(F.AvaRows.empty()) == 0 and len(F.AvaRows.concat([])) == 0
    with pytest.raises(ValueError):
        F.AvaRows(["a"], [1, 2], np.zeros((1, 4)))
    precise = F.AvaRows(["a"], [1], [[0.1, 0.2, 0.3, 0.4]], full_precision=True)
    assert precise.box[0, 0] == 0.1 and precise.score.dtype == np.float64
    assert precise.take(np.array([0])).box.dtype == np.float64
    assert F.AvaRows.concat([precise, rows]).box.dtype == np.float64


# ------------------------------------------------------------------------------------------ IoU

def test_iou_by_hand():
    a = np.array([[0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.25, 0.25]])
    b = np.array([[0.25, 0.0, 0.75, 1.0], [0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 1.0]])
    expected = np.array([[0.25 / 0.75, 0.0, 1.0], [0.0, 0.0, 0.0625 / 0.5]])
    np.testing.assert_allclose(iou_matrix(a, b), expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(pairwise_iou(a, b[[0, 2]]), iou_matrix(a, b)[[0, 1], [0, 2]])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)
