"""The dataset stage's pure parts: keyframe grids, video lists, label-map filtering."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import dataset
from pipeline.ava import formats
from pipeline.errors import InputError


def info(video_id: str, duration: float) -> dataset.VideoInfo:
    return dataset.VideoInfo(video_id=video_id, split="val", path=f"{video_id}.mp4", fps=25.0, n_frames=int(25 * duration),
                             duration_s=duration, width=320, height=240, has_audio=True, time_offset=900.0)


def test_keyframe_grid_is_avas_902_to_1798_for_a_15_minute_cut():
    times = dataset.keyframe_times(900.0, 900.0, 2)
    assert times[0] == 902 and times[-1] == 1798 and len(times) == 897


def test_keyframes_add_ground_truth_seconds_and_remove_excluded():
    gt = formats.AvaRows(video_id=np.array(["a"]), timestamp=np.array([915], np.int64), box=np.zeros((1, 4), np.float32),
                         action_id=np.array([12], np.int64), person_id=np.zeros(1, np.int64), score=np.ones(1, np.float32))
    rows = dataset.keyframes_for_split([info("a", 10.0), info("b", 6.0)], gt, {("a", 903), ("b", 904)}, margin=2)
    pairs = list(zip(rows.video_id.tolist(), rows.timestamp.tolist()))
    assert pairs == [("a", 902), ("a", 904), ("a", 905), ("a", 906), ("a", 907), ("a", 908), ("a", 915), ("b", 902), ("b", 903)]


def test_keyframes_round_trip(tmp_path):
    rows = dataset.keyframe_rows(["-x_1", "-x_1", "y"], [902, 903, 950])
    dataset.write_keyframes(tmp_path / "k.csv", rows)
    back = dataset.read_keyframes(tmp_path / "k.csv")
    assert back.video_id.tolist() == ["-x_1", "-x_1", "y"] and back.timestamp.tolist() == [902, 903, 950]


def test_keyframes_reader_names_the_bad_line(tmp_path):
    path = tmp_path / "k.csv"
    path.write_text("a,902\na,9o3\n")
    with pytest.raises(InputError, match=r"k\.csv:2: timestamp '9o3' is not an integer"):
        dataset.read_keyframes(path)


def test_video_list_accepts_file_names_and_rejects_duplicates(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("# AVA ids\n-5KQ66BBWC4.mkv\n\nabc_DEF-123\n")
    assert dataset.read_video_list(path) == ["-5KQ66BBWC4", "abc_DEF-123"]
    path.write_text("a\nb\na\n")
    with pytest.raises(InputError, match=r"list\.txt:3: video id 'a' listed twice \(first on line 1\)"):
        dataset.read_video_list(path)


def test_missing_video_file_is_named(tmp_path):
    with pytest.raises(InputError, match="no video file for video id 'nope'"):
        dataset.find_video(tmp_path, "nope")


def test_rows_outside_the_label_map_are_counted_not_hidden(capsys):
    labels = formats.LabelMap(ids=(12,), names=("stand",), label_types=(None,))
    gt = formats.AvaRows(video_id=np.array(["a", "a", "a"]), timestamp=np.array([902, 902, 903], np.int64),
                         box=np.zeros((3, 4), np.float32), action_id=np.array([12, 99, 99], np.int64),
                         person_id=np.zeros(3, np.int64), score=np.ones(3, np.float32))
    kept = dataset.filter_to_label_map(gt, labels, "gt.csv")
    assert kept.action_id.tolist() == [12]
    assert "2 rows have action ids outside the label map and are left out: 99 (2 rows)" in capsys.readouterr().err
