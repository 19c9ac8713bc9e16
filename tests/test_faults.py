"""Faults: a full disk, a read-only results folder, and a job killed mid-write.

Each leaves nothing that a later run could take for a finished file: the stages write through
temporary files renamed at the end (:func:`pipeline.store.atomic_path`), a failing stage says in one
line which file and why (:func:`pipeline.cli.run_stage`), and Snakemake's incomplete markers and
``--rerun-incomplete`` recover a killed run. The full and read-only disks are small tmpfs mounts,
which need root: elsewhere those tests are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import h5py
import pytest
import yaml

from pipeline.media.ffmpeg import ffmpeg_exe

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
FRAMES_PARAMS = {"short_side": 64, "fps": 25, "window": "all", "jpeg_quality": 90, "time_offset": 900.0,
                 "context_s": None}


@pytest.fixture
def video(tmp_path) -> Path:
    path = tmp_path / "v.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
                    "-t", "4", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A tmpfs at ``where`` with mount ``options``, unmounted afterwards; skips the test (saying why)
    where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a full or read-only disk) needs root; not root here")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    """A 96 KiB file system, too small for the frames of a 4 s video."""
    with tmpfs(tmp_path / "small", "size=96k") as where:
        yield where


@pytest.fixture
def read_only_disk(tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as where:
        yield where


def run_frames(video: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.stages.frames", "--video", str(video), "--video-id=v",
                           "--out", str(out), "--params", json.dumps(FRAMES_PARAMS), "--threads", "1"],
                          capture_output=True, text=True, env=ENV)


def test_a_full_disk_is_one_clear_line_and_leaves_no_file(video, small_disk):
    done = run_frames(video, small_disk / "frames" / "v.h5")
    assert done.returncode == 1, done.stderr
    assert "no space left on the device" in done.stderr and "no output was left half-written" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(small_disk.rglob("*.h5")) == []         # neither the store nor its temporary


def test_a_full_disk_fails_a_json_writer_cleanly(small_disk, tmp_path):
    from pipeline.cli import run_stage
    from pipeline.store import write_json

    def fill_then_write() -> int:
        write_json(small_disk / "result.json", {"x": "y" * 200_000})
        return 0

    assert run_stage(fill_then_write) == 1
    assert list(small_disk.iterdir()) == []


def test_a_read_only_results_folder_is_one_clear_line(video, read_only_disk):
    done = run_frames(video, read_only_disk / "v.h5")
    assert done.returncode == 1, done.stderr
    assert "read-only file system" in done.stderr and "Traceback" not in done.stderr
    assert list(read_only_disk.iterdir()) == []


def test_bad_input_is_one_line_naming_the_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    done = run_frames(empty, tmp_path / "v.h5")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {empty}: empty file")
    assert "Traceback" not in done.stderr and not (tmp_path / "v.h5").exists()


def _snakemake(work: Path, *args: str, **kwargs) -> subprocess.Popen | subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work), "--configfile",
           str(work / "config.yaml"), "--cores", "1", *args]
    if kwargs.get("background"):
        return subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True)


def test_a_job_killed_mid_write_leaves_no_output_and_rerun_incomplete_recovers(tmp_path):
    subprocess.run([sys.executable, "-m", "pipeline.synth", "--out", str(tmp_path / "data"), "--size", "tiny",
                    "--seed", "3"], check=True, capture_output=True)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["dataset"]["root"] = str(tmp_path / "data")
    config["frames"]["window"] = "all"                   # a whole video: the write lasts long enough to be caught
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    video = (tmp_path / "data/annotations/val.videos.txt").read_text().split()[0]
    target = f"results/frames/{video}.h5"
    done = _snakemake(tmp_path, "results/dataset/manifest.parquet")
    assert done.returncode == 0, done.stderr[-3000:]

    job = _snakemake(tmp_path, target, background=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "results/frames").glob(f".{video}.tmp*.h5")):      # the store is being written
        assert job.poll() is None and time.monotonic() < deadline, "the frames job ended before it could be killed"
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert not (tmp_path / target).exists()              # nothing a later run could take for finished

    assert _snakemake(tmp_path, "--unlock").returncode == 0
    plan = _snakemake(tmp_path, target, "-n")
    assert plan.returncode == 0 and "frames" in plan.stdout
    done = _snakemake(tmp_path, target, "--rerun-incomplete")
    assert done.returncode == 0, done.stderr[-3000:]
    with h5py.File(tmp_path / target) as store:
        assert len(store["jpeg"]) == len(store["t"]) > 0
