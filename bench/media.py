"""Benchmark of the media stages: frames, flow (TV-L1, Farneback) and audio, speed and disk.

Every speed figure is a ratio against a yardstick timed in the same run on the same input:
- frames: source frames per second of the frames stage / those of ``ffmpeg -i VIDEO -f null -``
  (the decode limit); goal >= 0.5. Timed at the demo's settings on the demo-size video, at AVA's
  on the AVA-size (640x360) clip, and at AVA's on that clip re-encoded at 1280x720: the synthetic
  picture is flat and cheap to decode, so the resize and JPEG encoding weigh more against the
  decode than they do on a larger or busier source.
- flow: frame pairs per second of the flow stage on ``--threads`` workers / OpenCV's TV-L1 (or
  Farneback) called on one thread over the same pairs; goal >= 1.8 for TV-L1 on 2 cores.
- audio: seconds of audio processed per second (against real time), and against ffmpeg's decode
  of the audio track alone.
Stage times are measured in-process (what a job spends after Python starts); ``job_start_s`` is the
interpreter start and imports that each job adds once.

Flow accuracy: mean endpoint error of both methods on synthetic pairs with known motion.
Disk: bytes per video-minute for frames and flow at the demo's settings (config.yaml) and at AVA's
(short side 256, 30 fps), against full-size 30 fps JPEG folders as MMAction2 extracts them
(``ffmpeg -i VIDEO -r 30 -q:v 1 img_%05d.jpg``); flow bytes are estimated from the pairs computed.

    .venv/bin/python bench/media.py            # 120 s demo-size and 30 s AVA-size synthetic videos
    .venv/bin/python bench/media.py --ava      # instead: every stage as a job on a 15-minute AVA-size
                                               # movie (prepare, frames, both flows, audio): hours on 2 cores

With ``--ava`` the generator's movie is already AVA's 15-minute cut, so prepare cuts its [0, 900) s
segment (same code path and frame check as the [900, 1801) s segment of a real movie); frames at the
config's settings and both flows run as the pipeline runs them, on the windows around the keyframes;
frames at AVA's settings keep every frame; each stage's wall and CPU time and bytes are reported.

The last line printed is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.ava.formats import write_keyframes  # noqa: E402
from pipeline.config import audio_params, flow_params, frames_params, load_config  # noqa: E402
from pipeline.data.manifest import keyframe_times  # noqa: E402
from pipeline.media.audio import compute_audio  # noqa: E402
from pipeline.media.ffmpeg import ffmpeg_exe  # noqa: E402
from pipeline.media.flow import compute_flow, known_motion_errors, make_flow  # noqa: E402
from pipeline.media.frames import FrameStore, extract_frames  # noqa: E402
from pipeline.media.probe import probe  # noqa: E402
from pipeline.params import FlowParams, FramesParams, PrepareParams, as_dict, to_json  # noqa: E402

OFFSET = 900.0
AVA_FRAMES = FramesParams(short_side=256, fps=30.0, window="all", jpeg_quality=90, time_offset=OFFSET, context_s=None)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def wall(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn, *args, **kwargs) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds, result) of ``fn(*args, **kwargs)``."""
    cpu = cpu_seconds()
    seconds, result = wall(fn, *args, **kwargs)
    return seconds, cpu_seconds() - cpu, result


def run(cmd: list[str]) -> float:
    """Wall seconds of a command (its output discarded; failure raises)."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def best_of(n: int, cmd: list[str]) -> float:
    return min(run(cmd) for _ in range(n))


def synth_video(out_dir: Path, size: str, duration: int | None) -> Path:
    """One video of the synthetic generator (``pipeline.synth``) at preset ``size``."""
    cmd = [sys.executable, "-m", "pipeline.synth", "--out", str(out_dir), "--size", size, "--seed", "0",
           "--videos-per-split", "train=1,val=0" if size == "demo" else "train=0,val=1", "--threads", "1"]
    if duration:
        cmd += ["--duration", str(duration)]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return sorted((out_dir / "videos").glob("*.mp4"))[0]


def subset_store(frames: Path, out: Path, start: int, n: int) -> Path:
    """A frame store with frames [start, start + n) of ``frames`` (same attrs)."""
    with h5py.File(frames) as src, h5py.File(out, "w") as dst:
        dst.create_dataset("jpeg", data=src["jpeg"][start:start + n], dtype=h5py.vlen_dtype(np.uint8))
        dst.create_dataset("t", data=src["t"][start:start + n])
        dst.attrs.update(dict(src.attrs))
    return out


def flow_bytes_per_pair(flow: Path) -> float:
    """Mean JPEG bytes (x + y) per pair of a flow store."""
    with h5py.File(flow) as h5:
        sizes = [len(a) for a in h5["x"][:]] + [len(a) for a in h5["y"][:]]
        return float(np.sum(sizes) / h5["x"].shape[0])


def bench_flow(frames: Path, work: Path, params: FlowParams, n_pairs: int, threads: int) -> dict:
    """Pairs per second of the flow stage against one-thread OpenCV on the same pairs, and bytes per pair."""
    method = params.method
    with FrameStore(frames) as fs:
        start = max(0, len(fs) // 2 - n_pairs // 2)
        n_pairs = min(n_pairs, len(fs) - 1 - start)
        gray = fs.read(np.arange(start, start + n_pairs + 1), gray=True)
    sub = subset_store(frames, work / f"sub_{method}.h5", start, n_pairs + 1)
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    flow = make_flow(method, params.options)
    yard_s, yard_cpu, _ = timed(lambda: [flow(gray[i], gray[i + 1]) for i in range(n_pairs)])
    cv2.setNumThreads(previous)
    out = work / f"flow_{method}.h5"
    stage_s, stage_cpu, stored = timed(compute_flow, sub, out, params, threads=threads)
    assert stored == n_pairs, (stored, n_pairs)
    return {"pairs": n_pairs, "one_thread_s": round(yard_s, 3), "stage_s": round(stage_s, 3),
            "ratio": round(yard_s / stage_s, 3), "pairs_per_s": round(n_pairs / stage_s, 3),
            # CPU seconds of the yardstick over those of the stage (all its processes): the share of
            # the stage's work that is flow; ``threads`` times it is the ratio on otherwise idle cores
            "one_thread_cpu_s": round(yard_cpu, 3), "stage_cpu_s": round(stage_cpu, 3),
            "cpu_efficiency": round(yard_cpu / stage_cpu, 3), "bytes_per_pair": flow_bytes_per_pair(out)}


def jpeg_folder_bytes(video: Path, work: Path, seconds: float) -> dict:
    """Bytes per minute of MMAction2-style full-size 30 fps JPEG folders, from the first ``seconds``."""
    folder = work / "jpeg_folder"
    folder.mkdir()
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(video), "-t", f"{seconds}", "-r", "30",
                    "-q:v", "1", str(folder / "img_%05d.jpg")], check=True)
    files = list(folder.iterdir())
    apparent = sum(f.stat().st_size for f in files)
    allocated = sum(f.stat().st_blocks * 512 for f in files)
    shutil.rmtree(folder)
    return {"frames": len(files), "bytes_per_min": apparent * 60 / seconds,
            "allocated_bytes_per_min": allocated * 60 / seconds}


def upscaled(video: Path, out: Path, height: int) -> Path:
    """``video`` re-encoded (libx264, CRF 20) at ``height`` lines, aspect kept: a costlier decode."""
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(video), "-vf", f"scale=-2:{height}",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-c:a", "copy", str(out)], check=True)
    return out


def frames_figures(video: Path, work: Path, name: str, params: FramesParams, threads: int) -> dict:
    """Frames stage on ``video`` with ``params`` against ``ffmpeg -i VIDEO -f null -``, and its disk."""
    info = probe(video)
    decode_s = best_of(3, [ffmpeg_exe(), "-loglevel", "error", "-i", str(video), "-f", "null", "-"])
    path = work / f"frames_{name}.h5"
    decode_cpu = cpu_seconds()
    run([ffmpeg_exe(), "-loglevel", "error", "-i", str(video), "-f", "null", "-"])
    decode_cpu = cpu_seconds() - decode_cpu
    stage_s, stage_cpu, n = timed(extract_frames, video, path, "bench", params, threads=threads)
    folder = jpeg_folder_bytes(video, work, min(20.0, info.duration_s))
    per_min = path.stat().st_size / (info.duration_s / 60)
    return {"video": f"{info.width}x{info.height} {info.fps:g} fps {info.duration_s:.0f} s", "params": as_dict(params),
            "decode_null_s": round(decode_s, 3), "stage_s": round(stage_s, 3), "stored_frames": n,
            "decode_null_cpu_s": round(decode_cpu, 3), "stage_cpu_s": round(stage_cpu, 3),
            "source_fps_processed": round(info.n_frames / stage_s, 1), "decode_fps": round(info.n_frames / decode_s, 1),
            "ratio": round(decode_s / stage_s, 3), "bytes_per_min": per_min,
            "jpeg_folder_bytes_per_min": folder["bytes_per_min"],
            "jpeg_folder_allocated_bytes_per_min": folder["allocated_bytes_per_min"],
            "disk_ratio_vs_jpeg_folder": round(per_min / folder["bytes_per_min"], 4)}


def speed_and_disk(demo_video: Path, ava_video: Path, work: Path, config: dict, threads: int, flow_pairs: int) -> dict:
    """The default benchmark: demo settings on a demo-size video, AVA settings on an AVA-size clip."""
    out: dict = {}
    out["job_start_s"] = round(best_of(3, [sys.executable, "-c", "import pipeline.stages.frames, "
                                                                 "pipeline.stages.flow"]), 3)
    # librosa imports its feature module (numba and friends) on first use: a job's one-time cost
    out["audio_job_start_s"] = round(best_of(1, [sys.executable, "-c", "import pipeline.stages.audio, librosa; "
                                                                       "librosa.feature.melspectrogram"]), 3)
    import librosa
    librosa.feature.melspectrogram  # noqa: B018  (loads it now: the audio stage below is timed warm, like the others)

    # Every frame of the video, as the decode yardstick decodes every frame.
    settings = {"demo": (demo_video, dataclasses.replace(frames_params(config), window="all", context_s=None)),
                "ava": (ava_video, AVA_FRAMES)}
    out["frames"] = {}
    for name, (video, params) in {**settings, "ava_720p": (upscaled(ava_video, work / "ava_720p.mp4", 720),
                                                           AVA_FRAMES)}.items():
        out["frames"][name] = frames_figures(video, work, name, params, threads)
        log(f"frames {name}: {json.dumps(out['frames'][name])}")

    flow: dict = {}
    for method in ("tvl1", "farneback"):
        flow[method] = {}
        for name, (_, params) in settings.items():
            # speed on the demo store; the AVA store (larger frames) gives its bytes per pair from fewer pairs
            pairs = flow_pairs if name == "demo" else max(4, flow_pairs // 3)
            pairs *= 10 if method == "farneback" else 1
            figures = bench_flow(work / f"frames_{name}.h5", work, flow_params(config, method), pairs, threads)
            figures["bytes_per_min"] = figures["bytes_per_pair"] * params.fps * 60
            figures["disk_ratio_vs_jpeg_folder"] = round(
                figures["bytes_per_min"] / out["frames"][name]["jpeg_folder_bytes_per_min"], 4)
            flow[method][name] = figures
            log(f"flow {method} {name}: {json.dumps(figures)}")
        errors = known_motion_errors(method, flow_params(config, method).options)
        flow[method]["epe"] = {k: round(v, 4) for k, v in errors.items()}
    out["flow"] = flow

    info = probe(demo_video)
    audio_decode_s = best_of(3, [ffmpeg_exe(), "-loglevel", "error", "-i", str(demo_video), "-map", "0:a:0",
                                 "-ac", "1", "-ar", str(config["audio"]["sample_rate"]), "-f", "null", "-"])
    audio_s, windows = wall(compute_audio, demo_video, work / "audio.h5", "bench", info.duration_s,
                            audio_params(config))
    out["audio"] = {"stage_s": round(audio_s, 3), "windows": windows,
                    "seconds_per_s": round(info.duration_s / audio_s, 1),
                    "ratio_vs_decode": round(audio_decode_s / audio_s, 3),
                    "bytes_per_min": (work / "audio.h5").stat().st_size / (info.duration_s / 60)}
    return out


def job(cmd: list[str], log_path: Path, out: Path) -> dict:
    """Run a stage as its Snakemake job would (``python -m ...``, log to a file): wall and CPU seconds
    (the job and its children) and the bytes of ``out``."""
    cpu = cpu_seconds()
    start = time.perf_counter()
    with open(log_path, "w") as handle:
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    figures = {"s": round(time.perf_counter() - start, 1), "cpu_s": round(cpu_seconds() - cpu, 1),
               "bytes": out.stat().st_size}
    log(f"{out.name}: {figures}")
    return figures


def ava_movie(work: Path, config: dict, threads: int, seconds: int | None) -> dict:
    """Prepare, frames (the config's settings and AVA's), both flows and audio, each as its job, on a
    15-minute AVA-size synthetic movie; wall time, CPU time and bytes of each.

    The config's frames and both flows run as the pipeline runs them: on the windows around the
    movie's keyframes (``dataset.keyframe_margin``), both flows with the context of the config's flow
    backbone. AVA's frames keep every frame (``window: all``), comparable with a JPEG folder.
    """
    log("generating the AVA-size movie ...")
    gen_s, raw = wall(synth_video, work / "ava_synth", "ava", seconds)
    py = sys.executable
    stages: dict = {"generate": {"s": round(gen_s, 1), "bytes": raw.stat().st_size}}
    seconds = probe(raw).duration_s
    cut_dir = work / "cut"
    video = cut_dir / raw.name
    prepare = PrepareParams(start=0.0, duration=float(np.floor(seconds)))
    stages["prepare"] = job([py, "-m", "pipeline.stages.prepare", "--video", str(raw), "--out", str(video),
                             "--report", str(work / "prepare.json"), "--params", to_json(prepare),
                             "--threads", str(threads)], work / "prepare.log", video)
    info = probe(video)
    keyframes = work / "keyframes.csv"
    times = keyframe_times(info.duration_s, OFFSET, config["dataset"]["keyframe_margin"])
    write_keyframes(keyframes, [("ava", t) for t in times.tolist()])
    flow_modality = next(b["modality"] for b in config["backbones"].values() if b["modality"].startswith("flow/"))
    flow_context_s = flow_params(config, flow_modality.split("/", 1)[1]).context_s
    decode_s = best_of(1, [ffmpeg_exe(), "-loglevel", "error", "-i", str(video), "-f", "null", "-"])
    stages["decode_null_yardstick"] = {"s": round(decode_s, 1), "bytes": video.stat().st_size}
    config_frames = dataclasses.replace(frames_params(config), time_offset=OFFSET)
    for name, params in (("frames_config", config_frames), ("frames_ava", AVA_FRAMES)):
        clip_args = ["--keyframes", str(keyframes)] if params.window == "clips" else []
        stages[name] = job([py, "-m", "pipeline.stages.frames", "--video", str(video), "--video-id", "ava",
                            "--out", str(work / f"{name}.h5"), "--params", to_json(params),
                            "--threads", str(threads), *clip_args], work / f"{name}.log", work / f"{name}.h5")
    audio = dataclasses.replace(audio_params(config), time_offset=OFFSET)
    stages["audio"] = job([py, "-m", "pipeline.stages.audio", "--video", str(video), "--video-id", "ava",
                           "--out", str(work / "audio.h5"), "--params", to_json(audio)], work / "audio.log",
                          work / "audio.h5")
    pairs = {}
    for method in ("farneback", "tvl1"):
        out = work / f"flow_{method}.h5"
        params = dataclasses.replace(flow_params(config, method), context_s=flow_context_s)
        clip_args = ["--keyframes", str(keyframes)] if params.context_s is not None else []
        stages[f"flow_{method}"] = job([py, "-m", "pipeline.stages.flow", "--frames", str(work / "frames_config.h5"),
                                        "--out", str(out), "--params", to_json(params), "--threads", str(threads),
                                        *clip_args], work / f"flow_{method}.log", out)
        with h5py.File(out) as h5:
            pairs[method] = int(h5["t"].shape[0])
    with h5py.File(work / "frames_config.h5") as h5:
        config_frames = int(h5["t"].shape[0])
    minutes = info.duration_s / 60
    return {"video": {"width": info.width, "height": info.height, "fps": info.fps, "n_frames": info.n_frames,
                      "duration_s": info.duration_s},
            "prepare_report": json.loads((work / "prepare.json").read_text())["videos"][0],
            "keyframes": len(times), "frames_config_stored": config_frames, "flow_on": "frames_config",
            "flow_context_of": flow_modality, "flow_pairs": pairs, "stages": stages,
            "frames_vs_decode": {k: round(decode_s / stages[k]["s"], 3) for k in ("frames_config", "frames_ava")},
            "bytes_per_min": {k: v["bytes"] / minutes for k, v in stages.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", help="benchmark this video (for both settings) instead of synthetic ones")
    parser.add_argument("--seconds", type=int, default=120, help="length of the synthetic demo-size video")
    parser.add_argument("--ava-seconds", type=int, default=30, help="length of the AVA-size clip for AVA's settings")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--flow-pairs", type=int, default=24, help="TV-L1 pairs timed (Farneback: 10x)")
    parser.add_argument("--ava", action="store_true",
                        help="instead, run a 15-minute AVA-size movie through every stage as jobs (an hour or more)")
    parser.add_argument("--movie-seconds", type=int, help="with --ava: movie length (default: the preset's 900 s)")
    parser.add_argument("--keep", help="keep the work files in this directory")
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    args = parser.parse_args(argv)
    config = load_config(args.config)
    result: dict = {"threads": args.threads, "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="bench_media") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.ava:
            result["ava_movie"] = ava_movie(work, config, args.threads, args.movie_seconds)
        else:
            demo_video = Path(args.video) if args.video else synth_video(work / "demo_synth", "demo", args.seconds)
            ava_video = Path(args.video) if args.video else synth_video(work / "ava_clip", "ava", args.ava_seconds)
            result.update(speed_and_disk(demo_video, ava_video, work, config, args.threads, args.flow_pairs))
            result["goals"] = {
                **{f"frames_vs_decode >= 0.5 ({name})": f["ratio"] >= 0.5 for name, f in result["frames"].items()},
                "tvl1_vs_one_thread >= 1.8": result["flow"]["tvl1"]["demo"]["ratio"] >= 1.8}
    result["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
