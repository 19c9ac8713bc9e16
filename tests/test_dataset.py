"""The dataset stage and its library (pipeline.data.manifest): keyframe grids, video lists, label-map
filtering, the keyframe files, and the manifest of a small dataset."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.ava import formats
from pipeline.data import manifest
from pipeline.data.problems import read_problems
from pipeline.errors import InputError
from pipeline.media.ffmpeg import ffmpeg_exe
from pipeline.media.frames import FrameStore
from pipeline.params import DatasetParams, PrepareParams, SplitFiles
from pipeline.stages import dataset as dataset_stage


def info(video_id: str, duration: float) -> manifest.VideoInfo:
    return manifest.VideoInfo(video_id=video_id, split="val", path=f"{video_id}.mp4", fps=25.0,
                              n_frames=int(25 * duration), duration_s=duration, width=320, height=240, has_audio=True,
                              time_offset=900.0)


def test_keyframe_grid_is_avas_902_to_1798_for_a_15_minute_cut():
    times = manifest.keyframe_times(900.0, 900.0, 2)
    assert times[0] == 902 and times[-1] == 1798 and len(times) == 897


def test_keyframes_add_ground_truth_seconds_and_remove_excluded():
    gt = formats.AvaRows(video_id=np.array(["a"]), timestamp=np.array([915], np.int64),
                         box=np.zeros((1, 4), np.float32), action_id=np.array([12], np.int64),
                         person_id=np.zeros(1, np.int64), score=np.ones(1, np.float32))
    rows = manifest.keyframes_for_split([info("a", 10.0), info("b", 6.0)], gt, {("a", 903), ("b", 904)}, margin=2)
    pairs = list(zip(rows.video_id.tolist(), rows.timestamp.tolist()))
    assert pairs == [("a", 902), ("a", 904), ("a", 905), ("a", 906), ("a", 907), ("a", 908), ("a", 915),
                     ("b", 902), ("b", 903)]


def test_keyframes_round_trip(tmp_path):
    formats.write_keyframes(tmp_path / "k.csv", [("-x_1", 902), ("-x_1", 903), ("y", 950)])
    back = formats.read_keyframes(tmp_path / "k.csv")
    assert back.video_id.tolist() == ["-x_1", "-x_1", "y"] and back.timestamp.tolist() == [902, 903, 950]


def test_keyframes_reader_names_the_bad_line(tmp_path):
    path = tmp_path / "k.csv"
    path.write_text("a,902\na,9o3\n")
    with pytest.raises(InputError, match=r"k\.csv:2: timestamp '9o3' is not a non-negative integer"):
        formats.read_keyframes(path)


def test_video_list_accepts_file_names_and_rejects_duplicates(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("# AVA ids\n-5KQ66BBWC4.mkv\n\nabc_DEF-123\n")
    assert manifest.read_video_list(path) == ["-5KQ66BBWC4", "abc_DEF-123"]
    path.write_text("a\nb\na\n")
    with pytest.raises(InputError, match=r"list\.txt:3: video id 'a' listed twice \(first on line 1\)"):
        manifest.read_video_list(path)


def test_missing_video_file_is_named(tmp_path):
    with pytest.raises(InputError, match="no video file for video id 'nope'"):
        manifest.find_video(tmp_path, "nope")


def test_rows_outside_the_label_map_are_counted_not_hidden(capsys):
    labels = formats.LabelMap(ids=(12,), names=("stand",), label_types=(None,))
    gt = formats.AvaRows(video_id=np.array(["a", "a", "a"]), timestamp=np.array([902, 902, 903], np.int64),
                         box=np.zeros((3, 4), np.float32), action_id=np.array([12, 99, 99], np.int64),
                         person_id=np.zeros(3, np.int64), score=np.ones(3, np.float32))
    kept = dataset_stage.filter_to_label_map(gt, labels, "gt.csv")
    assert kept.action_id.tolist() == [12]
    assert "2 rows have action ids outside the label map and are left out: 99 (2 rows)" in capsys.readouterr().err


@pytest.fixture
def small_dataset(tmp_path) -> DatasetParams:
    """Two videos of 6 s (one without audio) in AVA layout; the train split lists them, the test
    split (no ground truth) takes ids from its list."""
    root = tmp_path / "data"
    (root / "videos").mkdir(parents=True)
    (root / "ann").mkdir()
    for name, audio in (("a", True), ("b", False)):
        sound = ["-f", "lavfi", "-i", "sine", "-c:a", "aac"] if audio else []
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=25", *sound,
                        "-t", "6", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(root / "videos" / f"{name}.mp4")],
                       check=True)
    (root / "ann" / "label_map.pbtxt").write_text('item {\n  name: "stand"\n  id: 12\n}\n')
    (root / "ann" / "train.csv").write_text("a,0902,0.1,0.1,0.5,0.9,12,0\nb,0903,0.1,0.1,0.5,0.9,99,0\n")
    (root / "ann" / "train.videos.txt").write_text("a\nb\n")
    (root / "ann" / "train_excluded.csv").write_text("a,0903\n")
    (root / "ann" / "test.videos.txt").write_text("a.mp4\n")
    splits = {"train": SplitFiles(ground_truth="ann/train.csv", excluded="ann/train_excluded.csv",
                                  videos="ann/train.videos.txt"),
              "test": SplitFiles(ground_truth=None, excluded=None, videos="ann/test.videos.txt")}
    return DatasetParams(root=str(root), videos="videos", label_map="ann/label_map.pbtxt", time_offset=900.0, segment=None,
                         keyframe_margin=2.0, splits=splits)


def test_dataset_stage_writes_the_manifest_and_the_split_files(small_dataset, tmp_path, capsys):
    with pytest.raises(InputError, match=r"test\.videos\.txt: video 'a' is in both splits 'train' and 'test'"):
        manifest.all_video_ids(small_dataset)
    params = dataclasses.replace(small_dataset, splits={"train": small_dataset.splits["train"]})
    assert manifest.all_video_ids(params) == {"a": "train", "b": "train"}
    out = tmp_path / "out"
    assert dataset_stage.main(["--params", json.dumps(dataclasses.asdict(params)), "--out-dir", str(out)]) == 0
    assert "1 rows have action ids outside the label map" in capsys.readouterr().err
    videos = manifest.read_manifest(out / "manifest.parquet")
    assert [(v.video_id, v.split, v.n_frames, v.fps, v.duration_s, v.width, v.height, v.has_audio, v.time_offset)
            for v in videos] == [("a", "train", 150, 25.0, 6.0, 96, 64, True, 900.0),
                                 ("b", "train", 150, 25.0, 6.0, 96, 64, False, 900.0)]
    assert manifest.manifest_row(videos, "b") == videos[1]
    assert (out / "train.keyframes.csv").read_text() == "a,0902\na,0904\nb,0902\nb,0903\nb,0904\n"
    assert (out / "train.excluded.csv").read_text() == "a,0903\n"
    assert (out / "train.gt.csv").read_text().splitlines() == ["a,0902,0.100,0.100,0.500,0.900,12,0"]
    assert formats.read_label_map(out / "label_map.pbtxt").ids == (12,)


# ----------------------------------------------------------------------------------------------
# Bad input: ground-truth repairs, BOM and CRLF, video ids, broken video files


def run_dataset(params: DatasetParams, out) -> list[manifest.VideoInfo]:
    params = dataclasses.replace(params, splits={"train": params.splits["train"]})
    return dataset_stage.build(params, out)


def test_ground_truth_at_excluded_keyframes_and_duplicates_are_dropped_and_counted(small_dataset, tmp_path, capsys):
    gt = tmp_path / "data" / "ann" / "train.csv"
    gt.write_text("a,0902,0.1,0.1,0.5,0.9,12,0\n"
                  "a,0903,0.2,0.1,0.6,0.9,12,1\n"     # at the excluded keyframe a,0903
                  "a,0902,0.1,0.1,0.5,0.9,12,0\n"     # a copy of line 1
                  "b,0904,0.1,0.1,0.5,0.9,12,0\n"
                  "a,0903,0.3,0.1,0.7,0.9,12,2\n"     # excluded again
                  "b,0904,0.100,0.1,0.5,0.90,12,0\n"  # line 4 written otherwise
                  "b,0904,0.1,0.1,0.5,0.9,12,1\n")    # another person: kept
    out = tmp_path / "out"
    run_dataset(small_dataset, out)
    err = capsys.readouterr().err
    assert f"{gt}: 2 ground-truth rows at excluded keyframes are left out (lines 2, 5)" in err
    assert f"{gt}: 2 duplicate ground-truth rows are left out (lines 3, 6)" in err
    assert (out / "train.gt.csv").read_text().splitlines() == [
        "a,0902,0.100,0.100,0.500,0.900,12,0", "b,0904,0.100,0.100,0.500,0.900,12,0",
        "b,0904,0.100,0.100,0.500,0.900,12,1"]
    assert "a,0903" not in (out / "train.keyframes.csv").read_text()


@pytest.mark.parametrize("row", ["a,0902,0.5,0.1,0.5,0.9,12,0", "a,0902,0.6,0.1,0.5,0.9,12,0",
                                 "a,0902,0.1,0.9,0.5,0.2,12,0"])
def test_empty_ground_truth_box_is_an_error_with_file_and_line(small_dataset, tmp_path, row):
    gt = tmp_path / "data" / "ann" / "train.csv"
    gt.write_text(f"a,0902,0.1,0.1,0.5,0.9,12,0\n\n{row}\n")
    with pytest.raises(InputError, match=r"train\.csv:3: empty box: .*needs x1 < x2 and y1 < y2"):
        run_dataset(small_dataset, tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.parquet").exists()


def test_annotations_are_checked_before_any_video_is_probed(small_dataset, tmp_path):
    (tmp_path / "data" / "videos" / "a.mp4").write_bytes(b"")
    (tmp_path / "data" / "ann" / "train.csv").write_text("a,0902,0.5,0.1,0.4,0.9,12,0\n")
    with pytest.raises(InputError, match=r"train\.csv:1: empty box"):
        run_dataset(small_dataset, tmp_path / "out")


def test_byte_order_marks_and_crlf_line_ends_are_read(small_dataset, tmp_path):
    ann = tmp_path / "data" / "ann"
    bom = "\ufeff"
    for name in ("train.csv", "train.videos.txt", "train_excluded.csv", "label_map.pbtxt"):
        text = (ann / name).read_text()
        (ann / name).write_bytes((bom + text.replace("\n", "\r\n")).encode())
    out = tmp_path / "out"
    videos = run_dataset(small_dataset, out)
    assert [v.video_id for v in videos] == ["a", "b"]
    assert (out / "train.keyframes.csv").read_text() == "a,0902\na,0904\nb,0902\nb,0903\nb,0904\n"
    assert (out / "train.excluded.csv").read_text() == "a,0903\n"
    assert (out / "train.gt.csv").read_text().splitlines() == ["a,0902,0.100,0.100,0.500,0.900,12,0"]


BAD_IDS = ["a;touch x", "a;touch_x", "../x", "..", ".", "a/b", "a\\b", "x y", "$(id)", "a`id`", "a|b", "a&b",
           "a>b", "a<b", "a*", "a?", "a!", "it's", 'a"b', "{a}", "(a)", "a,b", "a\tb", "../x.mkv"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_video_ids_that_could_escape_results_or_run_commands_are_refused(tmp_path, bad):
    path = tmp_path / "list.txt"
    path.write_text(f"good_id\n{bad}\n")
    with pytest.raises(InputError, match=r"list\.txt:2: .*(video id|not a video id)"):
        manifest.read_video_list(path)


def test_a_video_list_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes("a\nb\n".encode("utf-16"))
    with pytest.raises(InputError, match=r"list\.txt: not UTF-8 text"):
        manifest.read_video_list(path)


def test_video_ids_from_ground_truth_are_checked_too(small_dataset, tmp_path):
    gt = tmp_path / "data" / "ann" / "train.csv"
    gt.write_text("a,0902,0.1,0.1,0.5,0.9,12,0\n\n../a,0902,0.1,0.1,0.5,0.9,12,0\n")
    split = dataclasses.replace(small_dataset.splits["train"], videos=None)
    with pytest.raises(InputError, match=r"train\.csv:3: video id '\.\./a' holds '/'"):
        manifest.split_video_ids(small_dataset.root, split)


def test_ids_starting_with_a_dash_work_through_the_frames_command_line(small_dataset, tmp_path):
    """AVA ids may start with '-' (-5KQ66BBWC4); the rules pass --video-id=ID. A video '-rf' goes
    through the dataset stage and the frames stage's command line as the rule runs it."""
    root = tmp_path / "data"
    (root / "videos" / "a.mp4").rename(root / "videos" / "-rf.mp4")
    (root / "ann" / "train.videos.txt").write_text("-rf\nb\n")
    (root / "ann" / "train.csv").write_text("-rf,0902,0.1,0.1,0.5,0.9,12,0\n")
    (root / "ann" / "train_excluded.csv").write_text("-rf,0903\n")
    out = tmp_path / "out"
    videos = run_dataset(small_dataset, out)
    assert videos[0].video_id == "-rf" and videos[0].n_frames == 150
    frames_params = {"short_side": 32, "fps": 5.0, "window": "clips", "jpeg_quality": 90, "time_offset": 900.0,
                     "context_s": 0.5}
    store = tmp_path / "frames" / "-rf.h5"
    store.parent.mkdir()
    video = Path(videos[0].path).relative_to(tmp_path)
    subprocess.run([sys.executable, "-m", "pipeline.stages.frames", "--video", str(video), "--video-id=-rf",
                    "--keyframes", str(out / "train.keyframes.csv"), "--out", "frames/-rf.h5",
                    "--params", json.dumps(frames_params), "--threads", "1"], cwd=tmp_path, check=True,
                   capture_output=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    with FrameStore(store) as fs:
        assert fs.video_id == "-rf" and len(fs) > 0
        assert set(np.round(fs.t).astype(int).tolist()) <= {902, 903, 904}


def _bad_video(kind: str, good: Path, path: Path) -> None:
    data = good.read_bytes()
    if kind == "truncated":                 # moov at the end: the index is lost
        path.write_bytes(data[:len(data) // 2])
    elif kind == "truncated_faststart":     # index first: the frames of the second half are lost
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(good), "-c", "copy",
                        "-movflags", "+faststart", str(path.with_suffix(".fs.mp4"))], check=True)
        data = path.with_suffix(".fs.mp4").read_bytes()
        path.with_suffix(".fs.mp4").unlink()
        path.write_bytes(data[:len(data) // 2])
    elif kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("video_id,timestamp\nthis is not a video\n")
    elif kind == "audio_only":
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine", "-t", "2",
                        "-c:a", "aac", "-f", "mp4", str(path)], check=True)


@pytest.mark.parametrize("kind,message", [
    ("truncated", "cannot read it as a video"), ("truncated_faststart", "truncated or damaged"),
    ("zero_bytes", "empty file"), ("text", "cannot read it as a video"), ("audio_only", "no video stream"),
])
def test_a_broken_video_is_left_out_named_and_the_others_go_on(small_dataset, tmp_path, kind, message, capsys):
    videos = tmp_path / "data" / "videos"
    gt = tmp_path / "data" / "ann" / "train.csv"
    gt.write_text("a,0902,0.1,0.1,0.5,0.9,12,0\nb,0903,0.1,0.1,0.5,0.9,12,0\nb,0904,0.1,0.1,0.5,0.9,12,0\n")
    _bad_video(kind, videos / "a.mp4", videos / "b.mp4")
    kept = run_dataset(small_dataset, tmp_path / "out")
    assert [v.video_id for v in kept] == ["a"]
    (problem,) = read_problems(tmp_path / "out" / "problems.csv")
    assert (problem.video_id, problem.split, problem.usable, problem.ground_truth_rows) == ("b", "train", False, 2)
    assert re.search(rf"videos/b\.mp4: {message}", problem.problem)
    assert set(formats.read_ground_truth(tmp_path / "out" / "train.gt.csv").video_id.tolist()) == {"a"}
    assert set(formats.read_keyframes(tmp_path / "out" / "train.keyframes.csv").video_id.tolist()) == {"a"}
    assert "video b (train, 2 ground-truth rows): left out" in capsys.readouterr().err


def test_a_video_missing_on_disk_is_named_and_an_unlisted_one_is_reported(small_dataset, tmp_path, capsys):
    videos = tmp_path / "data" / "videos"
    (videos / "b.mp4").rename(videos / "stray.mp4")
    kept = run_dataset(small_dataset, tmp_path / "out")
    assert [v.video_id for v in kept] == ["a"]
    (problem,) = read_problems(tmp_path / "out" / "problems.csv")
    assert problem.video_id == "b" and "no video file for video id 'b'" in problem.problem
    assert "1 video files are in no split and are not used: stray" in capsys.readouterr().err


def test_a_split_without_a_usable_video_is_an_error(small_dataset, tmp_path):
    for name in ("a", "b"):
        (tmp_path / "data" / "videos" / f"{name}.mp4").write_bytes(b"")
    with pytest.raises(InputError, match=r"split 'train' has no usable video: a: .*empty file"):
        run_dataset(small_dataset, tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.parquet").exists()


def test_ground_truth_outside_a_video_is_left_out_and_named(small_dataset, tmp_path):
    """A 6 s video at offset 900 spans [900, 906): rows at 906 and 950 (a video shorter than its
    annotations) are not scorable; the video itself is kept."""
    gt = tmp_path / "data" / "ann" / "train.csv"
    gt.write_text("a,0902,0.1,0.1,0.5,0.9,12,0\na,0906,0.1,0.1,0.5,0.9,12,0\na,0950,0.1,0.1,0.5,0.9,12,0\n"
                  "b,0905,0.1,0.1,0.5,0.9,12,0\n")
    kept = run_dataset(small_dataset, tmp_path / "out")
    assert [v.video_id for v in kept] == ["a", "b"]
    rows = formats.read_ground_truth(tmp_path / "out" / "train.gt.csv")
    assert list(zip(rows.video_id.tolist(), rows.timestamp.tolist())) == [("a", 902), ("b", 905)]
    (problem,) = read_problems(tmp_path / "out" / "problems.csv")
    assert (problem.video_id, problem.usable, problem.ground_truth_rows) == ("a", True, 2)
    assert "train.csv: 2 ground-truth rows at keyframes outside the video's span [900, 906.00) s" in problem.problem
    assert "t = 906, 950; lines 2, 3" in problem.problem
    keyframes = formats.read_keyframes(tmp_path / "out" / "train.keyframes.csv")
    assert 950 not in keyframes.timestamp.tolist()


def test_prepare_mode_reads_movies_to_their_end_without_decoding(small_dataset, tmp_path):
    """With dataset.prepare the stage probes the full movies: a truncated one is left out, a good
    one gives the segment's row (here the segment [1, 4) of a 6 s movie)."""
    videos = tmp_path / "data" / "videos"
    _bad_video("truncated_faststart", videos / "a.mp4", videos / "b.mp4")
    params = dataclasses.replace(small_dataset, segment=PrepareParams(start=1.0, duration=3.0))
    (info,) = run_dataset(params, tmp_path / "out")
    assert (info.video_id, info.duration_s, info.fps, info.n_frames, info.width) == ("a", 3.0, 25.0, 75, 96)
    (problem,) = read_problems(tmp_path / "out" / "problems.csv")
    assert problem.video_id == "b" and "truncated or damaged: its video packets end at" in problem.problem
    short = dataclasses.replace(small_dataset, segment=PrepareParams(start=7.0, duration=3.0))
    (videos / "b.mp4").unlink()
    with pytest.raises(InputError, match=r"a\.mp4: the movie ends at 6\.00 s, before the segment's start at 7 s"):
        run_dataset(short, tmp_path / "out2")
