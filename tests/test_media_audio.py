"""Audio stage: window timeline, shapes, alignment of sound with video time, and the no-audio path."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
from pathlib import Path

import h5py
import librosa
import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.media import audio as audio_mod
from pipeline.media.audio import AudioStore, compute_audio
from pipeline.media.ffmpeg import ffmpeg_exe
from pipeline.params import AudioParams
from pipeline.stages import audio as audio_stage

PARAMS = AudioParams(sample_rate=16000, n_mels=64, n_fft=400, hop=160, window_s=1.0, time_offset=900.0)


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("audio")
    late_tone, silent = root / "late_tone.mp4", root / "silent.mp4"
    # 5 s of video; the audio is silent for 2 s, then a 1 kHz tone (stereo at 44.1 kHz).
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-f", "lavfi",
           "-i", "sine=frequency=1000:sample_rate=44100,adelay=2000:all=1,aformat=channel_layouts=stereo",
           "-t", "5", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(late_tone))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-t", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(silent))
    return {"late_tone": late_tone, "silent": silent}


def test_windows_follow_the_keyframe_timeline_and_the_sound(videos, tmp_path):
    out = tmp_path / "a.h5"
    assert audio_stage.main(["--video", str(videos["late_tone"]), "--video-id=late_tone", "--out", str(out),
                             "--params", json.dumps(dataclasses.asdict(PARAMS))]) == 0
    with h5py.File(out) as h5:
        assert h5["logmel"].dtype == np.float16 and h5["logmel"].shape == (6, 64, 98)
        assert h5.attrs["sr"] == 16000 and h5.attrs["hop"] == 160 and h5.attrs["n_fft"] == 400
        assert json.loads(h5.attrs["provenance_params"]) == {**dataclasses.asdict(PARAMS), "duration_s": 5.0}
    with AudioStore(out) as store:
        np.testing.assert_array_equal(store.t, np.arange(900, 906))
        assert store.has_audio and store.sr == 16000 and store.n_mels == 64
        energy = store.window(store.t).mean(axis=2).max(axis=1)  # float32 [6]: loudest band of each window
        silence = math.log(audio_mod.LOG_EPS)
        # windows centred at 0 s and 1 s of video time end by 1.5 s: before the tone
        assert energy[0] < silence + 1.0 and energy[1] < silence + 1.0
        # the window centred at 2 s is half tone; those at 3 and 4 s are all tone
        assert energy[3] > silence + 5.0 and energy[4] > silence + 5.0 and energy[1] < energy[2] < energy[3]
        # the tone's energy lies in the mel band of 1 kHz
        band = store.window(np.array([903.2]))[0].mean(axis=1)
        mel_1k = np.argmin(np.abs(librosa.mel_frequencies(66, fmax=8000)[1:-1] - 1000))
        assert abs(int(np.argmax(band)) - int(mel_1k)) <= 1


def test_no_audio_track_gives_silence_and_a_warning(videos, tmp_path, capsys):
    out = tmp_path / "s.h5"
    params = dataclasses.replace(PARAMS, time_offset=900.5)
    assert compute_audio(videos["silent"], out, "silent", 3.0, params) == 3  # seconds 901, 902, 903
    assert "no audio track" in capsys.readouterr().err
    with AudioStore(out) as store:
        assert not store.has_audio
        np.testing.assert_array_equal(store.t, [901, 902, 903])
        windows = store.window(np.array([901.4, 902.6]))
        assert windows.shape == (2, 64, 98) and windows.dtype == np.float32
        np.testing.assert_allclose(windows, math.log(audio_mod.LOG_EPS), rtol=1e-3)


def test_window_length_and_params(videos, tmp_path, capsys):
    with pytest.raises(SystemExit):
        audio_stage.main(["--video", str(videos["silent"]), "--video-id=silent", "--out", str(tmp_path / "a.h5"),
                          "--params", json.dumps({**dataclasses.asdict(PARAMS), "sr": 8000})])
    assert "AudioParams: missing [], unknown ['sr']" in capsys.readouterr().err
    assert audio_mod.frames_per_window(PARAMS) == 98
    assert audio_mod.frames_per_window(dataclasses.replace(PARAMS, window_s=0.96)) == 94
    with pytest.raises(ValueError, match="holds 320 samples at 16000 Hz, fewer than n_fft = 400"):
        audio_mod.frames_per_window(dataclasses.replace(PARAMS, window_s=0.02))
    samples = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(audio_mod.cut_windows(samples, np.array([-2, 8]), 4),
                                  [[0, 0, 0, 1], [8, 9, 0, 0]])


@pytest.fixture(scope="module")
def awkward(tmp_path_factory) -> dict[str, Path]:
    """A one-frame video, a still shot with sound, an odd size (321x179), sound without pictures,
    an empty file and a text file named .mp4."""
    root = tmp_path_factory.mktemp("awkwardaudio")
    v = {name: root / f"{name}.mp4" for name in ("one_frame", "still", "odd", "audio_only", "zero_bytes", "text")}
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-frames:v", "1", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(v["one_frame"]))
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=64x48:rate=25", "-f", "lavfi", "-i", "sine", "-t", "3",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(v["still"]))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=321x179:rate=25", "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv444p",
           str(v["odd"]))
    ffmpeg("-f", "lavfi", "-i", "sine", "-t", "2", "-c:a", "aac", "-f", "mp4", str(v["audio_only"]))
    v["zero_bytes"].write_bytes(b"")
    v["text"].write_text("not a video\n")
    return v


def run_stage(video: Path, out: Path) -> int:
    return audio_stage.main(["--video", str(video), f"--video-id={video.stem}", "--out", str(out),
                             "--params", json.dumps(dataclasses.asdict(PARAMS))])


@pytest.mark.parametrize("name,windows,has_audio", [("one_frame", 1, False), ("still", 4, True), ("odd", 3, False)])
def test_awkward_videos_get_their_windows(awkward, tmp_path, name, windows, has_audio):
    out = tmp_path / f"{name}.h5"
    assert run_stage(awkward[name], out) == 0
    with AudioStore(out) as store:
        assert len(store) == windows and store.has_audio == has_audio
        np.testing.assert_array_equal(store.t, 900 + np.arange(windows))


@pytest.mark.parametrize("name,message", [("audio_only", "no video stream"), ("zero_bytes", "empty file"),
                                          ("text", "cannot read it as a video")])
def test_audio_stage_names_a_broken_video(awkward, tmp_path, name, message):
    out = tmp_path / f"{name}.h5"
    with pytest.raises(InputError, match=rf"{name}\.mp4: {message}"):
        run_stage(awkward[name], out)
    assert not out.exists()
