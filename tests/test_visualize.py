"""The visualize stage and its library: tracks across keyframes, boxes between keyframes, the contact
sheet's keyframes, and a render of a tiny synthetic video decoded back (frames, size, duration, audio)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.ava import formats
from pipeline.config import load_config, visualize_params
from pipeline.data.manifest import find_video
from pipeline.media.probe import probe
from pipeline.params import to_json
from pipeline.scores import write_logits
from pipeline.stages import visualize as stage
from pipeline.visualize.annotations import Keyframe, Person, keyframes_of_video, persons_at, top_actions
from pipeline.visualize.draw import draw_persons, sheet_keyframes
from pipeline.visualize.render import output_size
from pipeline.visualize.tracks import track_colour, track_ids

ROOT = Path(__file__).resolve().parent.parent
OFFSET = 900


def test_a_person_keeps_its_track_and_a_newcomer_gets_a_new_one():
    t = np.array([1, 1, 2, 2, 3, 3, 3])
    boxes = np.array([[0.1, 0.1, 0.3, 0.9], [0.6, 0.1, 0.8, 0.9],      # two persons
                      [0.62, 0.1, 0.82, 0.9], [0.12, 0.1, 0.32, 0.9],  # both moved a little, listed swapped
                      [0.14, 0.1, 0.34, 0.9], [0.64, 0.1, 0.84, 0.9], [0.4, 0.0, 0.5, 0.2]])  # and a newcomer
    assert track_ids(t, boxes).tolist() == [0, 1, 1, 0, 0, 1, 2]


def test_tracks_have_distinct_colours():
    assert len({track_colour(i) for i in range(12)}) == 12


def test_a_box_moves_linearly_between_keyframes_and_is_held_near_a_lone_keyframe():
    a = Person(np.array([0.0, 0.0, 0.2, 0.4]), 0, ["#0"])
    b = Person(np.array([0.4, 0.2, 0.6, 0.6]), 0, ["#0 later"])
    lone = Person(np.array([0.5, 0.5, 0.6, 0.6]), 1, ["#1"])
    keyframes = [Keyframe(1, 1.0, [a, lone]), Keyframe(2, 2.0, [b])]
    mid = persons_at(keyframes, 1.25)
    assert {p.track for p in mid} == {0, 1}
    np.testing.assert_allclose([p for p in mid if p.track == 0][0].box, [0.1, 0.05, 0.3, 0.45])
    assert [p.track for p in persons_at(keyframes, 1.75)] == [0]              # the lone box is gone past 0.5 s
    assert persons_at(keyframes, 1.75)[0].lines == ["#0 later"]               # text of the nearer keyframe
    assert [p.track for p in persons_at(keyframes, 0.6)] == [0, 1]            # held before the first keyframe
    assert persons_at(keyframes, 0.4) == [] and persons_at(keyframes, 2.6) == []


def test_contact_sheet_prefers_keyframes_with_someone():
    assert sheet_keyframes([0, 0, 0, 0, 2, 0, 0, 0, 0], 3) == [0, 4, 8]
    assert sheet_keyframes([1, 0, 1, 1, 0, 1], 2) == [0, 5]
    assert sheet_keyframes([0, 0, 0], 8) == [0, 1, 2]


def test_top_actions_keep_the_probable_ones_in_order():
    label_map = formats.LabelMap((1, 5, 9), ("stand", "talk to (e.g., self, a person, a group)", "walk"),
                                 (None, None, None))
    assert top_actions(np.array([0.4, 0.9, 0.2]), label_map, 0.3, 3) == ["talk to 0.90", "stand 0.40"]
    assert top_actions(np.array([0.4, 0.9, 0.2]), label_map, 0.3, 1) == ["talk to 0.90"]


def test_draw_puts_the_track_colour_on_the_box_edge():
    image = np.zeros((120, 160, 3), np.uint8)
    draw_persons(image, [Person(np.array([0.25, 0.25, 0.75, 0.75]), 3, ["#3 person 0.99", "walk 0.80"])])
    assert tuple(image[90, 40]) == track_colour(3)         # left edge, under the label
    assert tuple(image[60, 80]) == (0, 0, 0)               # inside the box: the picture as it was


def test_output_size_keeps_the_aspect_and_even_sides():
    assert output_size(160, 120) == (480, 360)
    assert output_size(176, 144) == (440, 360)
    assert output_size(1920, 1080) == (1280, 720)
    assert output_size(640, 480) == (640, 480)
    assert all(s % 2 == 0 for s in output_size(321, 179))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("tiny")
    subprocess.run([sys.executable, "-m", "pipeline.synth", "--out", str(data), "--size", "tiny", "--seed", "3"],
                   check=True, capture_output=True)
    return data


def render_tiny(tiny: Path, out_dir: Path, video_id: str) -> tuple[Path, Path, list]:
    """The visualize stage on one tiny video, its ground-truth persons as boxes with made-up logits."""
    label_map = formats.read_label_map(tiny / "annotations/label_map.pbtxt")
    gt = formats.read_ground_truth(tiny / "annotations/val.csv")
    gt = gt.take(gt.video_id == video_id) if (gt.video_id == video_id).any() else \
        formats.read_ground_truth(tiny / "annotations/train.csv")
    gt = gt.take(gt.video_id == video_id)
    keys = sorted(set(zip(gt.timestamp.tolist(), map(tuple, gt.box.tolist()))))
    boxes = formats.AvaRows(np.full(len(keys), video_id), np.array([k[0] for k in keys], np.int64),
                            np.array([k[1] for k in keys], np.float32), score=np.full(len(keys), 0.9, np.float32))
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (len(keys), len(label_map))).astype(np.float32)
    write_logits(out_dir / "logits.parquet", boxes, logits, label_map, "test", {})
    formats.write_keyframes(out_dir / "keyframes.csv", [(video_id, t) for t in range(902, 909)])
    params = visualize_params(load_config(ROOT / "config.yaml"), infer=False)
    out, sheet = out_dir / f"{video_id}.mp4", out_dir / f"{video_id}.contact_sheet.png"
    stage.main(["--video", str(find_video(tiny / "videos", video_id)), f"--video-id={video_id}",
                "--logits", str(out_dir / "logits.parquet"), "--keyframes", str(out_dir / "keyframes.csv"),
                "--label-map", str(tiny / "annotations/label_map.pbtxt"), "--out", str(out),
                "--contact-sheet", str(sheet), "--params", to_json(params)])
    drawn = keyframes_of_video(boxes, logits, label_map, video_id, np.arange(902, 909), OFFSET,
                               params.score_threshold, params.top_k, params.box_threshold)
    return out, sheet, drawn


def decoded(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        return {"n": len(frames), "size": (video.codec_context.width, video.codec_context.height),
                "codec": video.codec_context.name, "rate": float(video.average_rate),
                "duration": float(container.duration) / av.time_base, "audio": len(container.streams.audio),
                "frames": frames}


@pytest.mark.parametrize("video_id", ["P3wGdetAEM2", "_qLAXvjB2IJ"])   # with audio, and the one without
def test_the_tiny_render_is_a_playable_mp4_of_every_frame(tiny, tmp_path, video_id):
    source = probe(find_video(tiny / "videos", video_id))
    out, sheet, drawn = render_tiny(tiny, tmp_path, video_id)
    got = decoded(out)
    assert got["n"] == source.n_frames
    assert got["size"] == output_size(source.width, source.height)
    assert got["codec"] == "h264"
    assert got["rate"] == pytest.approx(source.fps, rel=1e-3)
    assert got["duration"] == pytest.approx(source.duration_s, abs=0.1)
    assert got["audio"] == (1 if source.has_audio else 0)
    assert source.has_audio == (video_id == "P3wGdetAEM2")
    # the frame at a keyframe carries its first person's box in the track's colour (H.264: nearly)
    keyframe = next(k for k in drawn if k.persons)
    person = keyframe.persons[0]
    width, height = got["size"]
    frame = got["frames"][int(round(keyframe.t * source.fps))]
    x1, y1, x2, y2 = (person.box * [width, height, width, height]).round().astype(int)
    edge = frame[(y1 + y2) // 2, max(x1, 1) - 1:x1 + 2].astype(int)
    assert np.abs(edge - np.array(track_colour(person.track))).sum(axis=1).min() < 90, edge
    # the contact sheet is a PNG of keyframe tiles with the boxes drawn exactly
    image = cv2.cvtColor(cv2.imread(str(sheet)), cv2.COLOR_BGR2RGB)
    assert image.shape[1] == 4 * 320 + 3 * 2
    assert any((image == track_colour(p.track)).all(axis=2).sum() > 50 for k in drawn for p in k.persons)
