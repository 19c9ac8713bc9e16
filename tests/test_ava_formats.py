"""AVA formats: label maps, CSV readers and writers (pyarrow's, byte for byte the hand writer's), strict errors,
IoU (torchvision's, bit for bit the hand arithmetic)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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
    F.write_keyframes(tmp_path / "e.csv", [("vid", 902), ("other", 1000)])
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


BOM = "\ufeff"


def test_byte_order_mark_and_crlf_line_ends_are_read_by_every_reader(tmp_path):
    def crlf(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_bytes((BOM + text.replace("\n", "\r\n")).encode())
        return path

    gt = F.read_ground_truth(crlf("gt.csv", "a,0902,0.1,0.2,0.3,0.4,12,7\nb,0903,0.1,0.2,0.3,0.4,13,8\n"))
    assert gt.video_id.tolist() == ["a", "b"] and gt.person_id.tolist() == [7, 8]
    det = F.read_detections(crlf("det.csv", "a,0902,0.1,0.2,0.3,0.4,12,0.5\n"))
    assert det.video_id.tolist() == ["a"] and det.score.tolist() == [0.5]
    boxes = F.read_boxes(crlf("boxes.csv", "a,0902,0.1,0.2,0.3,0.4,,0.5\n"))
    assert boxes.video_id.tolist() == ["a"] and boxes.action_id.tolist() == [-1]
    keys = F.read_keyframes(crlf("keys.csv", "a,0902\nb,0903\n"))
    assert keys.video_id.tolist() == ["a", "b"] and keys.timestamp.tolist() == [902, 903]
    assert F.read_excluded(crlf("ex.csv", "a,0902\n")) == {("a", 902)}
    lm = F.read_label_map(crlf("lm.pbtxt", 'item {\n  name: "stand"\n  id: 12\n}\n'))
    assert lm.ids == (12,) and lm.names == ("stand",)
    # errors still name the right line
    with pytest.raises(InputError, match=r"gt2\.csv:2: timestamp 'x' is not a non-negative integer"):
        F.read_ground_truth(crlf("gt2.csv", "a,0902,0.1,0.2,0.3,0.4,12,7\nb,x,0.1,0.2,0.3,0.4,13,8\n"))
    with pytest.raises(InputError, match=r"keys2\.csv:1: empty video_id"):
        F.read_keyframes(crlf("keys2.csv", ",0902\n"))
    assert F.row_lines(crlf("lines.csv", "a,1\n\nb,2\n")).tolist() == [1, 3]


def test_files_that_are_not_utf8_are_named(tmp_path):
    def utf16(name: str, text: str) -> Path:  # what Windows editors call "Unicode"
        path = tmp_path / name
        path.write_bytes(text.encode("utf-16"))
        return path

    for read, name, text in [(F.read_ground_truth, "gt.csv", "a,0902,0.1,0.2,0.3,0.4,12,7\n"),
                             (F.read_detections, "det.csv", "a,0902,0.1,0.2,0.3,0.4,12,0.5\n"),
                             (F.read_keyframes, "keys.csv", "a,0902\n"),
                             (F.read_label_map, "lm.pbtxt", 'item { name: "stand" id: 12 }\n')]:
        with pytest.raises(InputError, match=rf"{re.escape(name)}: not UTF-8 text"):
            read(utf16(name, text))
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("a,0902,0.1,0.2,0.3,0.4,12,7\ncaf\xe9,0902,0.1,0.2,0.3,0.4,12,7\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1\.csv: not UTF-8 text"):
        F.read_ground_truth(latin1)


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


def test_iou_of_empty_and_touching_boxes():
    a = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]], np.float32)     # a box, an empty one
    b = np.array([[0.5, 0.0, 1.0, 0.5], [0.5, 0.5, 0.5, 0.5]], np.float32)     # touching a, the same empty one
    iou = iou_matrix(a, b)
    assert iou.dtype == np.float32 and iou[0, 0] == 0.0 and iou[0, 1] == 0.0 and iou[1, 0] == 0.0
    assert np.isnan(iou[1, 1])                                                    # union 0
    readonly = np.array(b)
    readonly.flags.writeable = False
    np.testing.assert_array_equal(iou_matrix(a, readonly), iou)


def hand_pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The hand IoU this module had before torchvision's, the official evaluator's operations in its order."""
    def area(boxes):
        return (boxes[..., 3] - boxes[..., 1]) * (boxes[..., 2] - boxes[..., 0])
    heights = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0)
    widths = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0)
    intersection = heights * widths
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersection / (area(a) + area(b) - intersection)


def random_boxes(rng: np.random.Generator, n: int, dtype: type, grid: int | None) -> np.ndarray:
    """[n, 4] boxes: random corners (some inverted), or on a coarse grid (touching, equal and empty boxes)."""
    boxes = rng.random((n, 4))
    if grid is not None:
        boxes = np.round(boxes * grid) / grid
    return boxes.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("grid", [None, 4, 10])
def test_torchvision_iou_is_the_hand_arithmetic_bit_for_bit(dtype, grid):
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 300, dtype, grid), random_boxes(rng, 200, dtype, grid)
    got, expected = iou_matrix(a, b), hand_pairwise_iou(a[:, None, :], b[None, :, :])
    assert got.dtype == expected.dtype == dtype
    np.testing.assert_array_equal(got.view(f"u{got.itemsize}"), expected.view(f"u{got.itemsize}"))  # NaNs too
    rows = pairwise_iou(a[:200], b)
    assert rows.dtype == dtype
    bits = f"u{rows.itemsize}"
    np.testing.assert_array_equal(rows.view(bits), hand_pairwise_iou(a[:200], b).view(bits))
    mixed = iou_matrix(a, b.astype(np.float64))                  # float32 against float64: numpy's promotion
    np.testing.assert_array_equal(mixed, hand_pairwise_iou(a[:, None, :], b.astype(np.float64)[None, :, :]))


# ------------------------------------------------------------------------------------------ writers

def hand_columns_text(columns: list[pa.Array]) -> bytes:
    """The hand writer the formats module had before pyarrow's CSV writer: fields joined with ',' (nulls
    empty), each row ended by a newline, no header, no quoting."""
    lines = pc.binary_join_element_wise(*columns, ",", null_handling="replace", null_replacement="")
    return "".join(f"{line}\n" for line in lines.to_pylist()).encode()


def hand_writer_bytes(kind: str, rows: F.AvaRows) -> bytes:
    """What the hand writer wrote for ``rows``: 4-digit timestamps, shortest float text, 3-decimal ground truth."""
    key = [pa.array(rows.video_id, pa.string()), pc.utf8_lpad(pc.cast(pa.array(rows.timestamp), pa.string()), 4, "0")]

    def shortest(values):
        return pc.cast(pa.array(np.ascontiguousarray(values)), pa.string())

    if kind == "ground_truth":
        boxes = [pa.array([f"{v:.3f}" for v in rows.box[:, i].tolist()], pa.string()) for i in range(4)]
        return hand_columns_text([*key, *boxes, shortest(rows.action_id), shortest(rows.person_id)])
    boxes = [shortest(rows.box[:, i]) for i in range(4)]
    if kind == "detections":
        return hand_columns_text([*key, *boxes, shortest(rows.action_id), shortest(rows.score)])
    action = pa.array(np.where(rows.action_id >= 0, rows.action_id, 0), pa.int64(), mask=rows.action_id < 0)
    return hand_columns_text([*key, *boxes, pc.cast(action, pa.string()), shortest(rows.score)])


def tricky_rows(full_precision: bool) -> F.AvaRows:
    """Values whose text is easy to get wrong: shortest float text (0, 1, 1e-08, 3e-38, 0.1, denormals),
    timestamps of 1 to 5 digits, actions absent (-1) or set, person ids -1."""
    rng = np.random.default_rng(7)
    n = 3000
    real = np.float64 if full_precision else np.float32
    box = rng.random((n, 4)).astype(real)
    box[:6] = [[0, 1, 0.5, 1e-8], [1e-45 if real is np.float32 else 5e-324, 3e-38, 0.1, 0.7],
               [1, 1, 1, 1], [0.25, 0.5, 0.75, 1.0], [0.123456789, 0.999999, 1e-5, 1e-4], [0.3, 0.6, 0.9, 0.2]]
    score = rng.random(n).astype(real)
    score[:5] = [0.0, 1.0, 1e-8, 0.5, 0.1]
    timestamp = rng.integers(0, 20000, n)
    timestamp[:6] = [0, 9, 99, 999, 9999, 10000]
    action = rng.integers(-1, 81, n)
    action[:3] = [-1, 0, 80]
    person = rng.integers(-1, 5, n)
    video = np.array(["-5KQ66BBWC4", "a_b", "0x", "vid.with.dots"])[rng.integers(0, 4, n)]
    return F.AvaRows(video, timestamp, box, action, person, score, full_precision=full_precision)


@pytest.mark.parametrize("kind", ["ground_truth", "detections", "boxes"])
@pytest.mark.parametrize("full_precision", [False, True])
def test_pyarrow_writers_write_the_hand_writers_bytes(tmp_path, kind, full_precision):
    write = getattr(F, f"write_{kind}")
    rows = tricky_rows(full_precision)
    for part in (rows, rows.take(np.arange(1)), F.AvaRows.empty()):
        write(tmp_path / "out.csv", part)
        assert (tmp_path / "out.csv").read_bytes() == hand_writer_bytes(kind, part)
    assert (tmp_path / "out.csv").read_bytes() == b""                             # an empty file for no rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]             # no temporary left behind


def test_keyframes_writer_writes_the_hand_writers_bytes(tmp_path):
    keys = [("-5KQ66BBWC4", 0), ("a", 902), ("b", 9999), ("c", 10000), ("a", 902)]
    F.write_keyframes(tmp_path / "k.csv", iter(keys))
    assert (tmp_path / "k.csv").read_text() == "".join(f"{v},{t:04d}\n" for v, t in keys)
    F.write_keyframes(tmp_path / "k.csv", [])
    assert (tmp_path / "k.csv").read_bytes() == b""


@pytest.mark.parametrize("bad", ["a,b", 'say"hi"', "tab\there", "new\nline", ""])
def test_writers_refuse_video_ids_a_csv_cannot_hold_unquoted(tmp_path, bad):
    with pytest.raises(ValueError, match=re.escape("cannot hold unquoted")):
        F.write_boxes(tmp_path / "b.csv", F.AvaRows([bad], [902], [[0, 0, 1, 1]]))
    with pytest.raises(ValueError, match=re.escape("cannot hold unquoted")):
        F.write_keyframes(tmp_path / "k.csv", [(bad, 902)])
    assert not (tmp_path / "b.csv").exists() and not (tmp_path / "k.csv").exists()


# ------------------------------------------------------------------------------------------ action id -1
# Only SlowFast/LFB person-box files mark a box without action with -1; in ground truth and detections
# an action id must be a label-map id (non-negative): -1 there is an error naming the file and the line.

NEGATIVE_ACTION_ROWS = {
    "ground truth": ("v,0902,0.1,0.2,0.3,0.4,5,1\nv,0903,0.1,0.2,0.3,0.4,-1,2\n", F.read_ground_truth),
    "ground truth, 7 columns": ("v,0902,0.1,0.2,0.3,0.4,5\nv,0902,0.5,0.2,0.9,0.4,7\nv,0903,0.1,0.2,0.3,0.4,-1\n",
                                F.read_ground_truth),
    "detections": (GOOD + GOOD + "v,0903,0.1,0.2,0.3,0.4,-1,0.9\n", F.read_detections),
}


@pytest.mark.parametrize("kind", list(NEGATIVE_ACTION_ROWS))
def test_action_id_minus_one_is_refused_in_ground_truth_and_detections(tmp_path, kind):
    text, read = NEGATIVE_ACTION_ROWS[kind]
    path = write(tmp_path / "rows.csv", text)
    with pytest.raises(InputError) as err:
        read(path)
    assert err.value.line == text.count("\n"), str(err.value)            # the last line holds the -1
    assert str(path) in str(err.value) and "action_id '-1' is not a non-negative integer" in str(err.value)


def test_action_id_minus_one_is_read_in_person_box_files(tmp_path):
    path = write(tmp_path / "boxes.csv", "v,0902,0.1,0.2,0.3,0.4,-1,0.9\nv,0902,0.5,0.2,0.9,0.4,,0.8\n"
                                         "v,0903,0.1,0.2,0.3,0.4,12,0.7\n")
    rows = F.read_boxes(path)
    assert rows.action_id.tolist() == [-1, -1, 12]
    assert rows.score.tolist() == pytest.approx([0.9, 0.8, 0.7])
    with pytest.raises(InputError, match=r"boxes.csv:1: action_id '-2'"):
        F.read_boxes(write(tmp_path / "boxes.csv", "v,0902,0.1,0.2,0.3,0.4,-2,0.9\n"))
