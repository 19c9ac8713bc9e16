"""Probe, frames and prepare: exact frame counts and times (CFR, VFR, edit lists), rotation, resize, JPEG,
windows, and the segment cut."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from fractions import Fraction
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.media import frames as frames_mod
from pipeline.media.ffmpeg import ffmpeg_exe
from pipeline.media.frames import FrameStore, extract_frames
from pipeline.media.probe import probe
from pipeline.params import FramesParams
from pipeline.stages import frames as frames_stage
from pipeline.stages import prepare as prepare_stage

OFFSET = 900.0
#: A frame rate above every test video's: the rate rule keeps every decoded frame.
EVERY_FRAME = 1000.0


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def packet_times(path: Path) -> np.ndarray:
    """Sorted presentation times of the video packets, read from the container without decoding."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:v:0",
                          "-c", "copy", "-f", "framecrc", "-"], check=True, capture_output=True, text=True).stdout
    tb = Fraction(next(line for line in out.splitlines() if line.startswith("#tb 0:")).split(":")[1].strip())
    pts = [int(line.split(",")[2]) for line in out.splitlines() if line and not line.startswith("#")]
    return np.sort(np.array([float(p * tb) for p in pts]))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    v = {name: root / f"{name}.mp4" for name in ("cfr", "noaudio", "vfr", "portrait", "wide", "cut", "rotated")}
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-f", "lavfi", "-i", "sine=frequency=440",
           "-t", "4", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(v["cfr"]))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=30", "-t", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(v["noaudio"]))
    # 50 frames at 25 fps, then 30 frames at 10 fps: times in ms are exact in a 1 ms track time base.
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-frames:v", "80",
           "-vf", "settb=1/1000,setpts='if(lt(N,50),N*40,2000+(N-50)*100)'", "-fps_mode", "passthrough",
           "-enc_time_base", "1/1000", "-video_track_timescale", "1000", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(v["vfr"]))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=120x160:rate=25", "-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(v["portrait"]))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=250x100:rate=25", "-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(v["wide"]))
    # A stream-copy cut at a non-key frame: the mp4 gets an edit list, packets outnumber frames.
    long = root / "long.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-t", "6", "-g", "100", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(long))
    ffmpeg("-ss", "1.5", "-i", str(long), "-t", "2", "-c", "copy", str(v["cut"]))
    # 160x120 pictures shown a quarter turn rotated (a phone's portrait video): ffmpeg decodes 120x160 frames.
    ffmpeg("-display_rotation", "90", "-i", str(v["cfr"]), "-c", "copy", str(v["rotated"]))
    return v


VFR_TIMES = np.concatenate([np.arange(50) * 0.04, 2.0 + np.arange(30) * 0.1])
PARAMS = FramesParams(short_side=120, fps=EVERY_FRAME, window="all", jpeg_quality=95, time_offset=OFFSET,
                      context_s=None)


def params(**changes) -> FramesParams:
    return dataclasses.replace(PARAMS, **changes)


def test_probe_counts_decoded_frames(videos):
    cfr = probe(videos["cfr"])
    assert (cfr.n_frames, cfr.fps, cfr.width, cfr.height, cfr.has_audio) == (100, 25.0, 160, 120, True)
    assert cfr.duration_s == pytest.approx(4.0)
    noaudio = probe(videos["noaudio"])
    assert (noaudio.n_frames, noaudio.fps, noaudio.has_audio) == (90, 30.0, False)
    vfr = probe(videos["vfr"])
    assert vfr.n_frames == 80
    assert vfr.fps == pytest.approx(79 / 4.9, abs=1e-6)
    # The edit list of a stream-copy cut hides the packets before the cut (negative pts): the
    # decoder shows only the others, and so does probe.
    packets = packet_times(videos["cut"])
    assert probe(videos["cut"]).n_frames == np.count_nonzero(packets >= 0) < len(packets)


def test_probe_gives_the_size_ffmpeg_decodes_to(videos, tmp_path):
    rotated = probe(videos["rotated"])
    assert (rotated.width, rotated.height, rotated.n_frames, rotated.has_audio) == (120, 160, 100, True)
    portrait = probe(videos["portrait"])
    assert (portrait.width, portrait.height) == (120, 160)
    out = tmp_path / "rotated.h5"
    extract_frames(videos["rotated"], out, "rotated", params(short_side=60))
    with FrameStore(out) as fs:
        assert (fs.height, fs.width) == (80, 60)  # portrait, as the probe says


def test_probe_names_the_bad_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(InputError, match="bad.mp4"):
        probe(bad)
    sound = tmp_path / "sound.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine", "-t", "1", "-c:a", "aac", str(sound))
    with pytest.raises(InputError, match="sound.m4a: no video stream"):
        probe(sound)
    with pytest.raises(InputError, match="no such video"):
        probe(tmp_path / "missing.mp4")


@pytest.mark.parametrize("name", ["cfr", "vfr"])
def test_all_frames_have_the_source_timestamps(videos, tmp_path, name):
    out = tmp_path / f"{name}.h5"
    n = extract_frames(videos[name], out, name, PARAMS)
    source = packet_times(videos[name])
    with FrameStore(out) as fs:
        assert n == len(fs) == len(source) == probe(videos[name]).n_frames
        np.testing.assert_allclose(fs.t, source + OFFSET, rtol=0, atol=1e-6)
        if name == "vfr":
            np.testing.assert_allclose(fs.t, VFR_TIMES + OFFSET, rtol=0, atol=1e-6)


def test_frame_rate_keeps_the_first_frame_of_each_slot(videos, tmp_path):
    out = tmp_path / "vfr12.h5"
    extract_frames(videos["vfr"], out, "vfr", params(fps=12.5))
    expected = []
    for t in VFR_TIMES:  # first source frame of each 80 ms slot, at its own time
        if not expected or np.floor(t * 12.5 + 1e-4) > np.floor(expected[-1] * 12.5 + 1e-4):
            expected.append(t)
    with FrameStore(out) as fs:
        np.testing.assert_allclose(fs.t, np.array(expected) + OFFSET, rtol=0, atol=1e-6)
        assert fs.fps == pytest.approx((len(fs) - 1) / (fs.t[-1] - fs.t[0]), abs=1e-6)  # 12.5, then 10 fps
        # 25 fps part: every other frame; 10 fps part: every frame (no duplicates)
        assert np.allclose(np.diff(fs.t)[:24], 0.08) and np.allclose(np.diff(fs.t)[-29:], 0.1)


def test_cfr_to_lower_rate_matches_decoded_times(videos, tmp_path):
    out = tmp_path / "cfr12.h5"
    extract_frames(videos["cfr"], out, "cfr", params(fps=12.5))
    with FrameStore(out) as fs:
        np.testing.assert_allclose(fs.t, packet_times(videos["cfr"])[::2] + OFFSET, rtol=0, atol=1e-6)


def test_edit_list_cut_times_match_probe(videos, tmp_path):
    out = tmp_path / "cut.h5"
    extract_frames(videos["cut"], out, "cut", PARAMS)
    with FrameStore(out) as fs:
        packets = packet_times(videos["cut"])
        assert len(fs) == probe(videos["cut"]).n_frames
        np.testing.assert_allclose(fs.t, OFFSET + packets[packets >= 0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name,short_side,size", [
    ("cfr", 60, (60, 80)), ("portrait", 60, (80, 60)), ("wide", 50, (50, 126)), ("cfr", 240, (240, 320)),
])
def test_short_side_resize_keeps_aspect_with_even_sizes(videos, tmp_path, name, short_side, size):
    out = tmp_path / "r.h5"
    extract_frames(videos[name], out, name, params(short_side=short_side))
    with FrameStore(out) as fs:
        assert (fs.height, fs.width) == size
        assert fs.read([0]).shape == (1, *size, 3)


def test_jpeg_round_trip_matches_the_decoded_frames(videos, tmp_path):
    out = tmp_path / "j.h5"
    extract_frames(videos["cfr"], out, "cfr", params(short_side=120))
    raw = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(videos["cfr"]), "-map", "0:v:0",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    reference = np.frombuffer(raw, np.uint8).reshape(-1, 120, 160, 3)
    with FrameStore(out) as fs:
        assert len(fs) == len(reference)
        decoded = fs.read(np.arange(len(fs)))
        # The store holds the decoder's frames up to JPEG loss (and YUV -> RGB rounding): as close to
        # them as a JPEG round trip of them at the same quality (testsrc's saturated colour edges are
        # hard on 4:2:0 JPEG).
        jpeg_of_reference = np.stack([frames_mod.decode_jpeg(frames_mod.encode_jpeg(f, 95)) for f in reference])
        jpeg_loss = np.abs(jpeg_of_reference.astype(np.int16) - reference).mean()
        assert np.abs(decoded.astype(np.int16) - reference).mean() < jpeg_loss + 0.1
        assert fs.read_jpeg([0])[0][:2].tolist() == [0xFF, 0xD8]
        gray = fs.read([3], gray=True)[0].astype(np.int16)  # the JPEG's luma plane
        assert np.abs(gray - cv2.cvtColor(decoded[3], cv2.COLOR_RGB2GRAY)).mean() < 2.0


def test_clips_window_keeps_exactly_the_frames_in_the_windows(videos, tmp_path):
    keyframes = tmp_path / "keyframes.csv"
    keyframes.write_text("other,901\nvfr,901\nvfr,0902\nother,904\nvfr,904\n")
    full, clips = tmp_path / "all.h5", tmp_path / "clips.h5"
    extract_frames(videos["vfr"], full, "vfr", params(fps=12.5), threads=2)
    extract_frames(videos["vfr"], clips, "vfr", params(fps=12.5, window="clips", context_s=0.3),
                   keyframes=keyframes, threads=2)
    with FrameStore(full) as fa, FrameStore(clips) as fc:
        inside = np.zeros(len(fa.t), bool)
        for k in (901, 902, 904):
            inside |= (fa.t >= k - 0.3 - 1e-9) & (fa.t <= k + 0.3 + 1e-9)
        np.testing.assert_array_equal(fc.t, fa.t[inside])
        np.testing.assert_array_equal(fc.read(np.arange(len(fc))), fa.read(np.flatnonzero(inside)))
    with h5py.File(clips) as h5:
        assert h5.attrs["window"] == "clips" and h5.attrs["context_s"] == 0.3
        assert "provenance_params" in h5.attrs


def test_clips_window_without_keyframes_names_the_file(videos, tmp_path):
    keyframes = tmp_path / "keyframes.csv"
    keyframes.write_text("other,901\n")
    clips = params(window="clips", context_s=1.0)
    with pytest.raises(InputError, match="keyframes.csv.*no keyframe"):
        extract_frames(videos["cfr"], tmp_path / "x.h5", "cfr", clips, keyframes=keyframes)
    keyframes.write_text("cfr,901\ncfr,abc\n")
    with pytest.raises(InputError, match="keyframes.csv:2"):
        extract_frames(videos["cfr"], tmp_path / "x.h5", "cfr", clips, keyframes=keyframes)
    assert not (tmp_path / "x.h5").exists()


def test_bad_params_are_rejected(videos, tmp_path, capsys):
    args = ["--video", str(videos["cfr"]), "--video-id", "cfr", "--out", str(tmp_path / "x.h5")]
    good = json.loads(json.dumps(dataclasses.asdict(PARAMS)))
    for bad, message in [({**good, "short_sid": 3}, "unknown ['short_sid']"),
                         ({k: v for k, v in good.items() if k != "window"}, "missing ['window']"),
                         ({**good, "short_side": "big"}, "FramesParams.short_side: expected int")]:
        with pytest.raises(SystemExit):
            frames_stage.main([*args, "--params", json.dumps(bad)])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):  # window clips without --keyframes
        frames_stage.main([*args, "--params", json.dumps({**good, "window": "clips", "context_s": 1.0})])
    assert "--keyframes goes with window clips" in capsys.readouterr().err
    with pytest.raises(ValueError, match="keyframes"):
        extract_frames(videos["cfr"], tmp_path / "x.h5", "cfr", PARAMS, keyframes=tmp_path / "k.csv")
    assert not (tmp_path / "x.h5").exists()


def test_store_nearest_and_clip(videos, tmp_path):
    out = tmp_path / "c.h5"
    stage_params = {"short_side": 60, "fps": 5, "window": "all", "jpeg_quality": 90, "time_offset": 900,
                    "context_s": None}
    assert frames_stage.main(["--video", str(videos["cfr"]), "--video-id=cfr", "--out", str(out),
                              "--params", json.dumps(stage_params), "--threads", "2"]) == 0
    with FrameStore(out) as fs:
        np.testing.assert_allclose(fs.t, OFFSET + np.arange(20) * 0.2, atol=1e-6)
        np.testing.assert_array_equal(fs.nearest(np.array([899.0, 900.09, 900.11, 902.0, 999.0])), [0, 0, 1, 10, 19])
        clip = fs.clip(902.0, 4, 3)
        assert clip.shape == (4, 60, 80, 3) and clip.dtype == np.uint8
        np.testing.assert_array_equal(clip, fs.read(np.array([4, 7, 10, 13])))
        np.testing.assert_array_equal(fs.clip_indices(900.0, 4, 2), [0, 0, 0, 2])
        np.testing.assert_array_equal(fs.clip_indices(903.9, 5, 1), [17, 18, 19, 19, 19])


# ----------------------------------------------------------------------------------------------
# The prepare stage (pipeline.media.segment): cutting the annotated segment out of a movie, checking the frame count


def test_prepare_cuts_the_segment_and_names_videos_that_fail(videos, tmp_path):
    movie = tmp_path / "movie.mp4"  # NTSC rate: the first frame at or after 2 s is at 2.002 s
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=30000/1001", "-f", "lavfi", "-i", "sine", "-t", "6",
           "-g", "250", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(movie))
    out_dir = tmp_path / "cut"
    rows, codes = {}, {}
    for source in (movie, videos["vfr"], videos["noaudio"]):
        report = out_dir / f"{source.stem}.json"
        codes[source.stem] = prepare_stage.main(["--video", str(source), "--out", str(out_dir / f"{source.stem}.mp4"),
                                                 "--report", str(report), "--params", '{"start": 2, "duration": 2.5}'])
        (rows[source.stem],) = json.loads(report.read_text())["videos"]
    assert codes == {"movie": 0, "vfr": 0, "noaudio": 1}  # noaudio.mp4 lasts 3 s: it cannot cover [2, 4.5)
    assert rows["movie"]["ok"] and rows["vfr"]["ok"] and not rows["noaudio"]["ok"]
    assert "does not cover" in rows["noaudio"]["problem"]
    cut = probe(out_dir / "movie.mp4")
    assert cut.n_frames == rows["movie"]["expected_frames"] == 75 and cut.has_audio
    assert rows["movie"]["first_frame_offset_s"] == pytest.approx(0.002, abs=1e-6)
    # VFR: the segment is the 10 fps part, its times kept as they are
    with FrameStore(_frames_of(out_dir / "vfr.mp4", tmp_path)) as fs:
        np.testing.assert_allclose(fs.t - OFFSET, VFR_TIMES[(VFR_TIMES >= 2) & (VFR_TIMES < 4.5)] - 2, atol=1e-6)
    assert (out_dir / "movie.mp4.provenance.json").exists() and not (out_dir / "noaudio.mp4").exists()


def _frames_of(video: Path, tmp_path: Path) -> Path:
    out = tmp_path / f"{video.stem}.frames.h5"
    extract_frames(video, out, video.stem, PARAMS)
    return out


def test_stored_rate_leaves_out_window_gaps_and_caps_at_the_request():
    grid = np.arange(10) * 0.08
    assert frames_mod.stored_rate(np.concatenate([grid, 5 + grid]), 12.5) == 12.5
    assert frames_mod.stored_rate(np.arange(10) * 0.2, 12.5) == 5.0  # a 5 fps source keeps its rate
    assert frames_mod.stored_rate(np.arange(10) / 30, EVERY_FRAME) == 30.0
    assert frames_mod.stored_rate(np.array([1.0]), 12.5) == 0.0


# ----------------------------------------------------------------------------------------------
# Awkward and broken videos


@pytest.fixture(scope="module")
def awkward(tmp_path_factory) -> dict[str, Path]:
    """A still shot (every frame the same), a video black for its first 1.2 s, a one-frame video and
    an odd size (321x179, 4:4:4)."""
    root = tmp_path_factory.mktemp("awkward")
    v = {name: root / f"{name}.mp4" for name in ("still", "black_start", "one_frame", "odd")}
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=160x120:rate=25", "-t", "4", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(v["still"]))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-t", "3",
           "-vf", "drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='lt(t,1.2)'", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(v["black_start"]))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-frames:v", "1", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(v["one_frame"]))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=321x179:rate=25", "-t", "2", "-c:v", "libx264",
           "-pix_fmt", "yuv444p", str(v["odd"]))
    return v


def test_a_still_video_is_stored(awkward, tmp_path):
    """Every JPEG of a batch has one length: h5py must still get a column of arrays."""
    out = tmp_path / "still.h5"
    assert frames_stage.main(["--video", str(awkward["still"]), "--video-id=still", "--out", str(out),
                              "--params", json.dumps(dataclasses.asdict(PARAMS))]) == 0
    with FrameStore(out) as fs:
        assert len(fs) == 100 and (fs.height, fs.width) == (120, 160)
        jpegs = fs.read_jpeg(np.arange(len(fs)))
        assert len({j.tobytes() for j in jpegs}) == 1
        frames = fs.read(np.array([0, 99]))
        assert np.abs(frames.astype(np.int16) - 128).max() <= 3


def test_a_video_black_at_its_start_is_stored(awkward, tmp_path, monkeypatch):
    monkeypatch.setattr(frames_mod, "JPEG_BATCH", 8)  # whole batches of identical black frames
    out = tmp_path / "black.h5"
    assert extract_frames(awkward["black_start"], out, "black_start", PARAMS) == 75
    with FrameStore(out) as fs:
        np.testing.assert_allclose(fs.t, OFFSET + np.arange(75) * 0.04, atol=1e-6)
        start, rest = fs.read(np.array([0, 29])), fs.read(np.array([30, 74]))
        assert start.max() <= 20 and rest.max() > 200


def test_a_one_frame_video_is_stored(awkward, tmp_path):
    out = tmp_path / "one.h5"
    assert extract_frames(awkward["one_frame"], out, "one_frame", PARAMS) == 1
    with FrameStore(out) as fs:
        assert len(fs) == 1 and fs.fps == 0.0 and fs.t.tolist() == [OFFSET]
        assert fs.clip(OFFSET + 5, 4, 2).shape == (4, 120, 160, 3)
    assert probe(awkward["one_frame"]).n_frames == 1


def test_an_odd_sized_video_is_stored_at_even_sizes(awkward, tmp_path):
    info = probe(awkward["odd"])
    assert (info.width, info.height, info.n_frames) == (321, 179, 50)
    out = tmp_path / "odd.h5"
    extract_frames(awkward["odd"], out, "odd", params(short_side=120))
    with FrameStore(out) as fs:
        assert (fs.height, fs.width) == (120, 216)  # 120 * 321 / 179 = 215.2, to the nearest even size
        assert fs.read(np.array([0])).shape == (1, 120, 216, 3)


@pytest.fixture(scope="module")
def broken(videos, tmp_path_factory) -> dict[str, Path]:
    """Broken files, each named as a video: cut in half (the index at the end: lost; the index first:
    the second half of the frames lost), empty, text, and sound without pictures."""
    root = tmp_path_factory.mktemp("broken")
    data = videos["cfr"].read_bytes()
    (root / "truncated.mp4").write_bytes(data[:len(data) // 2])
    ffmpeg("-i", str(videos["cfr"]), "-c", "copy", "-movflags", "+faststart", str(root / "faststart.mp4"))
    data = (root / "faststart.mp4").read_bytes()
    (root / "truncated_faststart.mp4").write_bytes(data[:len(data) // 2])
    (root / "zero_bytes.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n")
    ffmpeg("-f", "lavfi", "-i", "sine", "-t", "1", "-c:a", "aac", "-f", "mp4", str(root / "audio_only.mp4"))
    return {p.stem: p for p in root.iterdir() if p.stem != "faststart"}


@pytest.mark.parametrize("name,message", [
    ("truncated", "cannot read it as a video"),
    ("truncated_faststart", r"truncated or damaged: its \d+ decodable frames end at"),
    ("zero_bytes", "empty file"), ("text", "cannot read it as a video"), ("audio_only", "no video stream"),
])
def test_probe_names_a_broken_video_and_says_what_is_wrong(broken, name, message):
    with pytest.raises(InputError, match=rf"{name}\.mp4: {message}"):
        probe(broken[name])


def test_frames_stage_warns_of_decode_errors(broken, videos, tmp_path, capsys):
    """ffmpeg decodes past the missing half of a truncated file with its index first (the dataset
    stage's probe refuses it); the frames stage says so, naming the video."""
    out = tmp_path / "t.h5"
    n = extract_frames(broken["truncated_faststart"], out, "truncated_faststart", PARAMS)
    assert 0 < n < probe(videos["cfr"]).n_frames
    err = capsys.readouterr().err
    assert "WARNING: " in err and "truncated_faststart.mp4: ffmpeg reported errors while decoding" in err
    extract_frames(videos["cfr"], out, "cfr", PARAMS)
    assert "WARNING" not in capsys.readouterr().err


@pytest.mark.parametrize("name,message", [
    ("truncated", "cannot read it as a video"), ("zero_bytes", r"empty file \(0 bytes\)"),
    ("text", "cannot read it as a video"), ("audio_only", "no video stream"),
])
def test_frames_stage_names_a_broken_video_and_says_what_is_wrong(broken, tmp_path, name, message):
    out = tmp_path / f"{name}.h5"
    with pytest.raises(InputError, match=rf"{name}\.mp4: {message}.*; ffmpeg failed"):
        frames_stage.main(["--video", str(broken[name]), "--video-id", name, "--out", str(out),
                           "--params", json.dumps(dataclasses.asdict(PARAMS))])
    assert not out.exists()
