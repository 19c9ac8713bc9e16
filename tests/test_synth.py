"""The synthetic AVA-like dataset: layout, valid AVA annotations, determinism, media facts, motion cues."""

from __future__ import annotations

import json
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.ava.formats import AvaRows, read_excluded, read_ground_truth, read_label_map
from pipeline.media.ffmpeg import ffmpeg_exe
from pipeline.synth.__main__ import main
from pipeline.synth.body import body_at
from pipeline.synth.classes import CLASS_BY_KEY, POSES, label_map
from pipeline.synth.dataset import (MIN_BOX_HEIGHT, SIZES, SPLITS, class_counts, keyframe_timestamps, person_box,
                                    plan_dataset)
from pipeline.synth.plan import ABSENT, RUN_SPEED

POSE_IDS = {CLASS_BY_KEY[k].ava_id for k in POSES}
ANNOTATION_FILES = ["label_map.pbtxt"] + [f"{s}{suffix}" for s in SPLITS
                                          for suffix in (".csv", "_excluded_timestamps.csv", ".videos.txt")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    assert main(["--out", str(out), "--size", "tiny", "--seed", "3"]) == 0
    return out


def _meta(root: Path) -> dict:
    return json.loads((root / "meta.json").read_text())


def _probe(path: Path) -> dict:
    """The file's streams as PyAV reads them: video codec, pixel format, size and rate; audio codec,
    profile and sample rate (None without an audio stream)."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        return {"video": (video.codec_context.name, video.codec_context.format.name),
                "size": (video.codec_context.width, video.codec_context.height), "fps": video.average_rate,
                "audio": None if audio is None else (audio.codec_context.name, audio.codec_context.profile,
                                                     audio.codec_context.sample_rate)}


def test_layout(tiny: Path) -> None:
    meta = _meta(tiny)
    assert meta["seed"] == 3 and meta["size"] == "tiny"
    for name in ANNOTATION_FILES:
        assert (tiny / "annotations" / name).is_file(), name
    assert len(meta["splits"]["train"]) == 3 and len(meta["splits"]["val"]) == 2
    for split in SPLITS:
        listed = (tiny / "annotations" / f"{split}.videos.txt").read_text().split()
        assert listed == meta["splits"][split]
    videos = {v["video_id"]: v for v in meta["videos"]}
    assert sorted(videos) == sorted(meta["splits"]["train"] + meta["splits"]["val"])
    assert sorted(p.stem for p in (tiny / "videos").glob("*.mp4")) == sorted(videos)
    for vid, video in videos.items():
        assert re.fullmatch(r"[A-Za-z0-9_-]{11}", vid)
        assert (video["width"], video["height"], video["duration_s"]) == (160, 120, 10)
        assert video["n_frames"] == video["fps"] * video["duration_s"]
    assert sorted(v["fps"] for v in videos.values()) == [25, 25, 25, 25, 30]


def test_label_map_has_ava_ids_names_and_types(tiny: Path) -> None:
    lm = read_label_map(tiny / "annotations" / "label_map.pbtxt")
    assert lm == label_map()
    assert lm.ids == (1, 10, 11, 12, 14, 17, 41, 64, 69, 70, 77, 79, 80)
    assert lm.name(79) == "talk to (e.g., self, a person, a group)"
    assert lm.label_types[lm.index(12)] == "PERSON_MOVEMENT"
    assert lm.label_types[lm.index(41)] == "OBJECT_MANIPULATION"
    assert lm.label_types[lm.index(77)] == "PERSON_INTERACTION"


def test_ground_truth_rows_are_valid(tiny: Path) -> None:
    meta = _meta(tiny)
    lm = read_label_map(tiny / "annotations" / "label_map.pbtxt")
    for split in SPLITS:
        rows = read_ground_truth(tiny / "annotations" / f"{split}.csv")
        excluded = read_excluded(tiny / "annotations" / f"{split}_excluded_timestamps.csv")
        assert len(rows) > 0
        assert set(rows.video_id.tolist()) <= set(meta["splits"][split])
        assert {v for v, _ in excluded} == set(meta["splits"][split])  # a few per video
        stamps = keyframe_timestamps(10)
        assert np.isin(rows.timestamp, stamps).all()
        assert all(ts in stamps for _, ts in excluded)
        assert not {(v, int(t)) for v, t in zip(rows.video_id, rows.timestamp)} & excluded
        box = rows.box
        assert ((box >= 0) & (box <= 1)).all()
        assert (box[:, 0] < box[:, 2]).all() and (box[:, 1] < box[:, 3]).all()
        assert (box[:, 3] - box[:, 1] >= MIN_BOX_HEIGHT - 0.002).all()
        assert (lm.index_array(rows.action_id) >= 0).all()
        assert (rows.person_id >= 0).all()
        people: dict[tuple, list[int]] = defaultdict(list)
        boxes: dict[tuple, set] = defaultdict(set)
        for i in range(len(rows)):
            key = (rows.video_id[i], int(rows.timestamp[i]), int(rows.person_id[i]))
            people[key].append(int(rows.action_id[i]))
            boxes[key].add(tuple(box[i].tolist()))
        for key, actions in people.items():
            assert sum(a in POSE_IDS for a in actions) == 1, key
            assert len(actions) == len(set(actions)), key
            assert len(boxes[key]) == 1, key  # one box per person and keyframe
        assert meta["class_counts"][split] == class_counts(rows)
    train = class_counts(read_ground_truth(tiny / "annotations" / "train.csv"))
    assert min(train.values()) >= 1, train  # every class at least once, even at the tiny size


def test_same_seed_same_files(tiny: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert main(["--out", str(again), "--size", "tiny", "--seed", "3", "--threads", "1"]) == 0
    for name in ANNOTATION_FILES:
        assert (again / "annotations" / name).read_bytes() == (tiny / "annotations" / name).read_bytes(), name
    for video in (tiny / "videos").glob("*.mp4"):
        assert (again / "videos" / video.name).read_bytes() == video.read_bytes(), video.name
    other = plan_dataset(SIZES["tiny"], 4)
    assert [p.video_id for p in other["train"][0]] != _meta(tiny)["splits"]["train"]


def test_audio_tracks_follow_meta(tiny: Path) -> None:
    videos = _meta(tiny)["videos"]
    assert any(not v["has_audio"] for v in videos) and any(v["has_audio"] for v in videos)
    for video in videos:
        info = _probe(tiny / "videos" / f"{video['video_id']}.mp4")
        assert info["video"] == ("h264", "yuv420p")
        if video["has_audio"]:
            assert info["audio"] == ("aac", "LC", video["sample_rate"])
        else:
            assert info["audio"] is None


def test_frames_match_meta(tiny: Path) -> None:
    for video in _meta(tiny)["videos"]:
        path = tiny / "videos" / f"{video['video_id']}.mp4"
        info = _probe(path)
        assert info["size"] == (video["width"], video["height"])
        assert info["fps"] == video["fps"]
        raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                             capture_output=True, check=True).stdout
        assert len(raw) == video["n_frames"] * video["width"] * video["height"]


def test_demo_has_every_class_in_both_splits_several_times() -> None:
    planned = plan_dataset(SIZES["demo"], 0)
    for split in SPLITS:
        plans, annotations = planned[split]
        counts = class_counts(AvaRows.concat([a.rows for a in annotations]))
        assert min(counts.values()) >= SIZES["demo"].min_rows[split], (split, counts)
        assert any(not p.has_audio for p in plans), split
    fps = {p.fps for split in SPLITS for p in planned[split][0]}
    assert fps == {25, 30}
    ids = [p.video_id for split in SPLITS for p in planned[split][0]]
    assert len(set(ids)) == len(ids) and any(i.startswith("-") for i in ids)


def test_labels_change_only_between_keyframes() -> None:
    """Segments whose labels differ meet on the half-second grid, so a keyframe (a whole second)
    never sits on a change of action; tracks cover the video without gaps."""
    planned = plan_dataset(SIZES["demo"], 2)
    for split in SPLITS:
        for plan in planned[split][0]:
            for track in plan.tracks:
                segments = track.segments
                assert segments[0].t0 == 0 and segments[-1].t1 == plan.duration
                for a, b in zip(segments, segments[1:]):
                    assert a.t1 == b.t0 and b.t1 > b.t0
                    if a.labels() != b.labels() or a.partner != b.partner:
                        assert b.t0 % 1 == 0.5, (plan.video_id, a, b)


def test_stand_walk_run_differ_in_motion_not_only_in_a_frame() -> None:
    """Plain stand, walk and run (no other action) over 1 s: displacement speed and leg swing
    (the range of the box width) separate them; walk and run speeds do not overlap."""
    planned = plan_dataset(SIZES["demo"], 1)
    speed: dict[str, list[float]] = defaultdict(list)
    swing: dict[str, list[float]] = defaultdict(list)
    for split in SPLITS:
        for plan in planned[split][0]:
            for k, track in enumerate(plan.tracks):
                h = track.figure.height
                for seg in track.segments:
                    if seg.pose == ABSENT:
                        continue
                    speed[seg.pose].append(abs(seg.x1 - seg.x0) / (seg.t1 - seg.t0) / h)
                    if seg.actions or seg.t1 - seg.t0 < 1.2 or seg.pose not in ("stand", "walk", "run"):
                        continue
                    times = np.linspace(seg.t0 + 0.1, seg.t0 + 1.1, 26)
                    widths = [body_at(plan, k, t).box for t in times]
                    swing[seg.pose].append(float(np.ptp([b[2] - b[0] for b in widths])) / h)
    assert max(speed["stand"] + speed["sit"] + speed["bend"]) == 0.0
    assert 0.3 <= min(speed["walk"]) and max(speed["walk"]) <= 1.05
    assert RUN_SPEED[0] - 1e-6 <= min(speed["run"]) and max(speed["run"]) <= RUN_SPEED[1] + 1e-6
    assert max(swing["stand"]) < 0.05 < 0.1 < min(swing["walk"] + swing["run"])


def test_boxes_are_tight_around_the_drawn_person() -> None:
    """Each figure drawn alone on the empty scene changes exactly the pixels of its box: the
    bounding box of the changed pixels is the plan's box, give or take the anti-aliased pixel."""
    from pipeline.synth.render import Renderer

    checked = 0
    for plan in plan_dataset(SIZES["tiny"], 3)["train"][0]:
        renderer = Renderer(plan)
        for t in (3.0, 6.0):
            index = int(t * plan.fps)
            renderer.order = []
            empty = renderer.frame(index).astype(int)
            for k in range(len(plan.tracks)):
                body = body_at(plan, k, t)
                if person_box(plan, k, t) is None or not all(p.on_body for p in body.parts):
                    continue  # not annotated, or with a prop (chair, held object, instrument)
                renderer.order = [k]
                ys, xs = np.nonzero(np.abs(renderer.frame(index).astype(int) - empty).sum(axis=2) > 30)
                x0, y0, x1, y1 = body.box
                drawn = (xs.min(), ys.min(), xs.max(), ys.max())
                expected = (max(x0, 0), max(y0, 0), min(x1, plan.width - 1), min(y1, plan.height - 1))
                assert np.allclose(drawn, expected, atol=1.6), (plan.video_id, k, t, drawn, expected)
                checked += 1
    assert checked >= 5


def test_cli_rejects_odd_frame_size(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--size", "tiny", "--width", "161"])
