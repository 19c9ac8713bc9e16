"""Speed of finetuning and feature extraction, each against the bare model on the same inputs.

Run: ``.venv/bin/python bench/train.py [--threads N] [--workers W] [--quick]``.

It writes synthetic frame stores (smooth backgrounds with two figures per keyframe, JPEG, as the
frames stage writes them) and, for each backbone size below, measures on the CPU (and on CUDA
beside it when torch sees a GPU):

(a) finetune: clips per second of the finetune stage's training loop (``pipeline.stages.finetune.finetune``:
    DataLoader, JPEG decoding, sampling, flips, ROIs, forward, backward, optimizer; not the
    per-epoch checkpoint, which ``main`` adds) with 0 and with ``--workers`` loader workers, from
    its log's per-epoch seconds (epoch 1, the warm-up, left out; the fastest epoch counts), against
    the bare model's forward+backward on one decoded batch of the same size, repeated as many times
    as an epoch has steps (``ratio`` = stage / bare, of the faster worker count);
(b) features: keyframes per second of the whole features stage on one video
    (``pipeline.stages.features.main``: reading its CSVs, building the model, decoding, sampling,
    ROIs, forward, writing the file) against the bare ``model.features`` on the same clips in the
    stage's batches, decoded beforehand. The stage runs on a video of one batch and on a long one;
    the difference is its per-keyframe cost (``ratio`` = bare / stage per keyframe; the goal, a
    stage overhead of at most 25 %, is ``ratio`` >= 0.8 and ``goal_met`` says whether it is met),
    the rest its fixed cost per video (``fixed_s_per_video``; ``whole_stage_ratio`` is the ratio of
    the whole run on the long video, ``ava_video_ratio_extrapolated`` that of a 900-keyframe AVA
    video). Each run is timed twice in alternation and the faster counts;
(c) two finetune processes (``torch.distributed.run --standalone --nproc_per_node=2``, gloo on the
    CPU, each with half the threads) against one process with all of them (``python -m
    pipeline.stages.finetune``), the same global batch, the loader workers that made (a) faster;
    from the logs as in (a) (both write their per-epoch checkpoint). On CUDA this needs two GPUs
    (NCCL) and is left out with a note otherwise.

CUDA runs use ``compute.precision`` ``--precision`` (bf16 by default, the config's default).
Every figure is a ratio against a yardstick timed in the same run. The last line of output is one
JSON object with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import dataclasses
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import backbone_params as config_backbone_params  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.ava.formats import AvaRows, LabelMap, write_boxes, write_ground_truth, write_label_map  # noqa: E402
from pipeline.data.clips import ClipSpec, load_clip, pad_clips, rois_in_pixels  # noqa: E402
from pipeline.devices import autocast, select_device  # noqa: E402
from pipeline.media.frames import encode_jpeg  # noqa: E402
from pipeline.media.stores import open_store  # noqa: E402
from pipeline.models.registry import build_action_model  # noqa: E402
from pipeline.params import BackboneParams, ComputeParams, to_json  # noqa: E402
from pipeline.stages import features as features_stage  # noqa: E402
from pipeline.stages import finetune as finetune_stage  # noqa: E402

FPS = 10.0
HEIGHT, WIDTH = 128, 170          # stored frames (AVA's frames stage keeps a short side of 256; halved here)
LABEL_MAP = LabelMap(ids=(3, 7, 12), names=("stand", "carry", "talk"),
                     label_types=("PERSON_MOVEMENT", "OBJECT_MANIPULATION", "PERSON_INTERACTION"))
PERSONS = [(np.array([0.05, 0.2, 0.35, 0.9], np.float32), (3,)),
           (np.array([0.55, 0.1, 0.9, 0.95], np.float32), (7, 12))]


@dataclasses.dataclass(frozen=True)
class Size:
    """One backbone at one input size, and how much of it to time."""

    arch: str
    clip_frames: int
    clip_stride: int
    input_size: int
    batch_size: int
    train_keyframes: int      # per epoch (both training videos together)
    feature_keyframes: int    # of the one video whose features are extracted
    epochs: int = 3
    cuda_only: bool = False


SIZES = {
    "r3d_tiny_8x64": Size("r3d_tiny", 8, 2, 64, 8, 64, 128),
    "r3d_18_4x64": Size("r3d_18", 4, 2, 64, 4, 16, 48),
    "r3d_18_8x112": Size("r3d_18", 8, 2, 112, 8, 128, 128, cuda_only=True),
}
QUICK = {"r3d_tiny_8x64": Size("r3d_tiny", 4, 2, 32, 4, 8, 64, epochs=2),
         "r3d_18_4x64": Size("r3d_18", 4, 2, 32, 4, 8, 32, epochs=2)}
GLOO_SIZE = "r3d_tiny_8x64"
DEMO_CONFIG = load_config(ROOT / "config.yaml")


def synthetic_frames(n: int, seed: int) -> np.ndarray:
    """uint8 [n, H, W, 3]: a slowly panning blurred background and two figures (JPEG sizes of real frames)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (HEIGHT // 8, 2 * WIDTH // 8, 3), dtype=np.uint8)
    background = cv2.GaussianBlur(cv2.resize(small, (2 * WIDTH, HEIGHT)), (0, 0), 2)
    frames = np.empty((n, HEIGHT, WIDTH, 3), np.uint8)
    for i in range(n):
        shift = (i * 2) % WIDTH
        image = np.ascontiguousarray(background[:, shift:shift + WIDTH])
        for k, (box, _) in enumerate(PERSONS):
            x1, y1, x2, y2 = (box * [WIDTH, HEIGHT, WIDTH, HEIGHT]).astype(int)
            colour = (240, 200, 60) if k == 0 else (30, 60, 200)
            cv2.circle(image, ((x1 + x2) // 2, y1 + (x2 - x1) // 3), (x2 - x1) // 3, colour, -1)
            cv2.rectangle(image, (x1 + (x2 - x1) // 4, y1 + (x2 - x1) // 2), (x2 - (x2 - x1) // 4, y2), colour, -1)
        frames[i] = image + rng.integers(0, 8, image.shape, dtype=np.uint8)
    return frames


def write_store(path: Path, seconds: int, seed: int) -> None:
    """A frame store of ``seconds`` s at :data:`FPS` from 900 s (``pipeline.media.frames``' layout)."""
    frames = synthetic_frames(int(seconds * FPS), seed)
    with h5py.File(path, "w") as h5:
        jpeg = h5.create_dataset("jpeg", shape=(len(frames),), dtype=h5py.vlen_dtype(np.uint8))
        for i, frame in enumerate(frames):
            jpeg[i] = encode_jpeg(frame, 90)
        h5.create_dataset("t", data=900.0 + np.arange(len(frames)) / FPS)
        h5.attrs.update({"fps": FPS, "height": HEIGHT, "width": WIDTH})


def keyframes_of(n: int) -> list[int]:
    return list(range(901, 901 + n))


def write_split(root: Path, split: str, videos: dict[str, int]) -> None:
    """Ground truth (two persons per keyframe), detections (each person's box shifted a little, which
    overlaps it) and the keyframe list of ``videos`` ({video: keyframes})."""
    gt, det = [], []
    for vid, n in videos.items():
        for t in keyframes_of(n):
            for p, (box, actions) in enumerate(PERSONS):
                gt += [(vid, t, box, a, p) for a in actions]
                det.append((vid, t, box + np.float32(0.02), 0.9))
    write_ground_truth(root / f"{split}.gt.csv", AvaRows(
        video_id=[r[0] for r in gt], timestamp=[r[1] for r in gt], box=np.stack([r[2] for r in gt]),
        action_id=[r[3] for r in gt], person_id=[r[4] for r in gt]))
    write_boxes(root / f"{split}.boxes.csv", AvaRows(
        video_id=[r[0] for r in det], timestamp=[r[1] for r in det], box=np.stack([r[2] for r in det]),
        score=[r[3] for r in det]))
    rows = [f"{v},{t}\n" for v, n in videos.items() for t in keyframes_of(n)]
    (root / f"{split}.keyframes.csv").write_text("".join(rows))


def make_data(root: Path, sizes: dict[str, Size]) -> dict[str, dict[str, int]]:
    """Stores and CSVs for every size: two training videos, one for features (the longest any size needs)."""
    train_n = max(s.train_keyframes for s in sizes.values()) // 2
    feature_n = max(s.feature_keyframes for s in sizes.values())
    write_label_map(root / "label_map.pbtxt", LABEL_MAP)
    videos = {"train": {"trainA": train_n, "trainB": train_n}, "val": {"valA": feature_n}}
    for seed, (vid, n) in enumerate([*videos["train"].items(), *videos["val"].items()]):
        write_store(root / f"{vid}.h5", n + 2, seed)
    return videos


def size_data(root: Path, name: str, size: Size) -> Path:
    """CSVs with as many keyframes as ``size`` times (the stores are shared)."""
    where = root / name
    where.mkdir(exist_ok=True)
    write_split(where, "train", {"trainA": size.train_keyframes // 2, "trainB": size.train_keyframes // 2})
    write_split(where, "val", {"valA": size.feature_keyframes})
    return where


def backbone_params(size: Size, compute: ComputeParams) -> BackboneParams:
    """The demo config's ``rgb_r3d`` backbone at ``size`` (built by ``pipeline.config``: the schema's
    defaults fill in whatever this does not set)."""
    config = copy.deepcopy(DEMO_CONFIG)
    config["backbones"]["rgb_r3d"].update(
        arch=size.arch, clip_frames=size.clip_frames, clip_stride=size.clip_stride, input_size=size.input_size,
        roi_size=7, finetune={**config["backbones"]["rgb_r3d"]["finetune"], "epochs": size.epochs,
                              "batch_size": size.batch_size})
    config["compute"].update(dataclasses.asdict(compute))
    return config_backbone_params(config, "rgb_r3d")


def finetune_argv(root: Path, data: Path, out: Path, params: BackboneParams, threads: int) -> list[str]:
    return ["--label-map", str(root / "label_map.pbtxt"), "--ground-truth", str(data / "train.gt.csv"),
            "--boxes", str(data / "train.boxes.csv"), "--stores", str(root / "trainA.h5"), str(root / "trainB.h5"),
            "--out", str(out), "--log-csv", str(out.with_suffix(".log.csv")), "--params", to_json(params),
            "--threads", str(threads)]


def clips_per_s_from_log(log_csv: Path, clips_per_epoch: int) -> float:
    """Clips per second of the fastest epoch after the first (the log's seconds are cumulative)."""
    with open(log_csv) as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    durations = np.diff(seconds)
    if len(durations) == 0:
        raise ValueError(f"{log_csv}: fewer than two epochs")
    return clips_per_epoch / float(durations.min())


@contextlib.contextmanager
def quiet():
    """The stages' progress bars and messages go to a buffer (shown if the stage fails)."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            yield
    except BaseException:
        sys.stderr.write(buffer.getvalue()[-3000:])
        raise


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decoded_batch(root: Path, keyframes: list[tuple[str, int]], spec: ClipSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips [B, C, T, H, W] and ROIs of ``keyframes`` ((video, timestamp)), two persons each."""
    clips = []
    for vid, t in keyframes:
        with open_store(root / f"{vid}.h5", spec.modality) as store:
            clips.append(load_clip(store, float(t), spec))
    shapes = [tuple(c.shape[2:]) for c in clips]
    rois = rois_in_pixels([np.stack([box for box, _ in PERSONS]) + np.float32(0.02) for _ in clips], shapes)
    return pad_clips(clips), rois


def bare_train_clips_per_s(root: Path, size: Size, device: torch.device, precision: str, steps: int,
                           repeats: int = 2) -> float:
    """The model's forward+backward on one decoded batch, ``steps`` times (fastest of ``repeats``)."""
    torch.manual_seed(0)
    model = build_action_model(size.arch, "rgb", len(LABEL_MAP), 7, "max").to(device).train()
    spec = ClipSpec("rgb", size.clip_frames, size.clip_stride, size.input_size)
    clips, rois = decoded_batch(root, [("trainA", t) for t in keyframes_of(size.batch_size)], spec)
    clips, rois = clips.to(device), rois.to(device)
    labels = torch.zeros((len(rois), len(LABEL_MAP)), device=device)
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="sum")

    def step() -> None:
        with autocast(device, precision):
            logits = model(clips, rois)
        loss = loss_fn(logits.float(), labels) / logits.numel()
        model.zero_grad(set_to_none=True)
        loss.backward()

    step()   # warm-up
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return size.batch_size * steps / best


def measure_finetune(root: Path, data: Path, size: Size, compute: ComputeParams, workers: list[int],
                     work: Path) -> dict:
    """(a): the stage's training loop (``finetune``) with each number of loader workers, against the
    bare forward+backward; leaves the last run's weights in ``work`` for (b)."""
    device = select_device(compute.device)
    stores = finetune_stage.store_paths([root / "trainA.h5", root / "trainB.h5"])
    keyframes = finetune_stage.training_keyframes(LABEL_MAP, data / "train.gt.csv", data / "train.boxes.csv", 0.5,
                                                  stores)
    steps = size.train_keyframes // size.batch_size
    bare = bare_train_clips_per_s(root, size, device, compute.precision, steps)
    result: dict = {"bare_forward_backward_clips_per_s": round(bare, 2), "batch_size": size.batch_size,
                    "keyframes_per_epoch": len(keyframes), "epochs_timed": size.epochs - 1}
    for n in workers:
        params = backbone_params(size, dataclasses.replace(compute, loader_workers=n))
        log: list[dict[str, float]] = []
        with quiet():
            model = finetune_stage.finetune(keyframes, stores, params, len(LABEL_MAP), log=log)
        durations = np.diff([row["seconds"] for row in log])     # epoch 1 (warm-up) left out
        stage = len(keyframes) / float(durations.min())
        result[f"workers_{n}"] = {"clips_per_s": round(stage, 2), "ratio": round(stage / bare, 3)}
    torch.save({"backbone": model.backbone.state_dict(), "head": model.head.state_dict()}, work / "backbone.pt")
    best = max(workers, key=lambda n: result[f"workers_{n}"]["ratio"])
    result["ratio"] = result[f"workers_{best}"]["ratio"]
    result["best_workers"] = best
    return result


def measure_features(root: Path, data: Path, size: Size, compute: ComputeParams, threads: int, weights: Path,
                     work: Path) -> dict:
    """(b): the whole features stage against the bare ``model.features`` on the same clips.

    The stage runs on the first :data:`pipeline.stages.features.KEYFRAME_BATCH` keyframes of the
    video and on all ``size.feature_keyframes``: the difference gives its per-keyframe cost
    (decoding, sampling, ROIs, forward, writing) apart from its fixed cost per video (reading the
    CSVs, building the model, loading the weights, starting loader workers). The goal is judged on
    the per-keyframe cost (a real video has hundreds of keyframes: AVA's ~900); the whole-stage
    ratio of the measured video and the extrapolation to 900 keyframes are printed beside it.
    """
    device = select_device(compute.device)
    params = backbone_params(size, compute)
    short = features_stage.KEYFRAME_BATCH
    write_split(data, "short", {"valA": short})

    def stage(split: str) -> None:
        argv = ["--weights", str(weights), "--store", str(root / "valA.h5"), "--video-id=valA",
                "--keyframes", str(data / f"{split}.keyframes.csv"), "--boxes", str(data / f"{split}.boxes.csv"),
                "--ground-truth", str(data / f"{split}.gt.csv"), "--label-map", str(root / "label_map.pbtxt"),
                "--out", str(work / f"features_{split}.h5"), "--params", to_json(params), "--threads", str(threads)]
        with quiet():
            assert features_stage.main(argv) == 0
        synchronize(device)

    model = build_action_model(size.arch, "rgb", len(LABEL_MAP), 7, "max")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.backbone.load_state_dict(state["backbone"])
    model.head.load_state_dict(state["head"])
    model.to(device).eval()
    spec = ClipSpec("rgb", size.clip_frames, size.clip_stride, size.input_size)
    times = keyframes_of(size.feature_keyframes)
    batches = [decoded_batch(root, [("valA", t) for t in times[i:i + short]], spec)
               for i in range(0, len(times), short)]
    batches = [(c.to(device), r.to(device)) for c, r in batches]

    @torch.no_grad()
    def bare() -> None:
        for clips, rois in batches:
            with autocast(device, compute.precision):
                roi, context = model.features(clips, rois)
            roi.float().cpu(), context.float().cpu()   # the stage brings them back to the host too

    bare()   # warm-up
    spent: dict[str, list[float]] = {"short": [], "val": [], "bare": []}
    for _ in range(2):
        for name, fn in (("short", lambda: stage("short")), ("val", lambda: stage("val")), ("bare", bare)):
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            spent[name].append(time.perf_counter() - start)
    long, short_s, bare_s = min(spent["val"]), min(spent["short"]), min(spent["bare"])
    per_keyframe = max(long - short_s, 1e-9) / (len(times) - short)
    fixed = max(short_s - short * per_keyframe, 0.0)
    bare_per_keyframe = bare_s / len(times)
    steady = bare_per_keyframe / per_keyframe
    ava = 900 * bare_per_keyframe / (fixed + 900 * per_keyframe)
    return {"keyframes_per_s": round(1 / per_keyframe, 2),
            "bare_forward_keyframes_per_s": round(1 / bare_per_keyframe, 2),
            "ratio": round(steady, 3), "overhead_pct": round(100 * (1 - steady), 1), "goal_met": bool(steady >= 0.8),
            "fixed_s_per_video": round(fixed, 3), "whole_stage_ratio": round(len(times) * bare_per_keyframe / long, 3),
            "whole_stage_keyframes": len(times), "ava_video_ratio_extrapolated": round(ava, 3),
            "loader_workers": compute.loader_workers if device.type == "cuda" else 0}


def finetune_reads_world_size() -> bool:
    """Whether the finetune stage runs data-parallel under torchrun (it reads its rank from the environment)."""
    source = Path(finetune_stage.__file__).read_text()
    return "WORLD_SIZE" in source or "processes_from_env" in source


def measure_processes(root: Path, data: Path, size: Size, compute: ComputeParams, threads: int, work: Path,
                      processes: int = 2) -> dict:
    """(c): ``processes`` finetune processes under torchrun against one, the same global batch and threads."""
    if not finetune_reads_world_size():
        return {"note": "not measured: pipeline.stages.finetune does not read WORLD_SIZE yet (no DDP), so "
                        "torchrun would run the same training twice"}
    params = backbone_params(size, compute)
    result: dict = {"threads_in_all": threads, "global_batch": size.batch_size}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for n in (1, processes):
        out = work / f"p{n}" / "backbone.pt"
        out.parent.mkdir(parents=True, exist_ok=True)
        launcher = [sys.executable] if n == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    f"--nproc_per_node={n}"]
        argv = finetune_argv(root, data, out, params, max(1, threads // n))
        start = time.perf_counter()
        done = subprocess.run([*launcher, "-m", "pipeline.stages.finetune", *argv], capture_output=True, text=True,
                              env={**env, "OMP_NUM_THREADS": str(max(1, threads // n))}, timeout=900)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            return {"note": f"{n} processes failed (rc {done.returncode}): {done.stderr[-1500:]}"}
        result[f"{n}_process_clips_per_s"] = round(clips_per_s_from_log(out.with_suffix(".log.csv"),
                                                                        size.train_keyframes), 2)
        result[f"{n}_process_wall_s"] = round(wall, 1)
    result["ratio"] = round(result[f"{processes}_process_clips_per_s"] / result["1_process_clips_per_s"], 3)
    return result


def run_device(root: Path, sizes: dict[str, Size], device: str, precision: str, workers: int, threads: int,
               work: Path) -> dict:
    compute = ComputeParams(device=device, precision=precision if device == "cuda" else "off", loader_workers=workers)
    worker_counts = sorted({0, workers})
    result: dict = {"precision": compute.precision, "finetune": {}, "features": {}}
    for name, size in sizes.items():
        if size.cuda_only and device != "cuda":
            continue
        data = size_data(root, name, size)
        where = work / device / name
        where.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        result["finetune"][name] = measure_finetune(root, data, size, compute, worker_counts, where)
        print(f"[{device}] (a) finetune {name}: {result['finetune'][name]}", flush=True)
        result["features"][name] = measure_features(root, data, size, compute, threads, where / "backbone.pt", where)
        print(f"[{device}] (b) features {name}: {result['features'][name]} ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    name = GLOO_SIZE if GLOO_SIZE in sizes else next(iter(sizes))
    if device == "cuda" and torch.cuda.device_count() < 2:
        result["processes_2"] = {"note": f"not measured: 2 NCCL processes need 2 GPUs, this machine has "
                                         f"{torch.cuda.device_count()}"}
    else:
        # the loader workers that made (a) fastest on this device
        fastest = dataclasses.replace(compute, loader_workers=result["finetune"][name]["best_workers"])
        result["processes_2"] = {"size": name, "loader_workers": fastest.loader_workers,
                                 **measure_processes(root, root / name, sizes[name], fastest, threads,
                                                     work / device / "processes")}
    backend = "NCCL" if device == "cuda" else "gloo"
    print(f"[{device}] (c) 2 {backend} processes vs 1: {result['processes_2']}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (all processes)")
    parser.add_argument("--workers", type=int, default=2, help="compute.loader_workers (the config's default: 2)")
    parser.add_argument("--precision", default="bf16", choices=["off", "bf16", "fp16"], help="on CUDA")
    parser.add_argument("--cpu-only", action="store_true", help="leave CUDA out even when there is a GPU")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test, not a measurement)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    sizes = QUICK if args.quick else SIZES
    started = time.perf_counter()
    result: dict = {"threads": args.threads, "loader_workers": args.workers, "torch": torch.__version__,
                    "sizes": {k: dataclasses.asdict(v) for k, v in sizes.items()}}
    with tempfile.TemporaryDirectory(prefix="bench_train") as tmp:
        root = Path(tmp)
        make_data(root, sizes)
        result["cpu"] = run_device(root, sizes, "cpu", "off", args.workers, args.threads, root / "runs")
        if torch.cuda.is_available() and not args.cpu_only:
            result["gpu_name"] = torch.cuda.get_device_name(0)
            result["cuda"] = run_device(root, sizes, "cuda", args.precision, args.workers, args.threads, root / "runs")
        else:
            result["cuda"] = {"note": "not measured: " + ("--cpu-only" if args.cpu_only else "torch sees no GPU")}
    result["seconds"] = round(time.perf_counter() - started, 1)
    for device in ("cpu", "cuda"):
        for name, figures in result[device].get("features", {}).items():
            print(f"{device} features {name}: stage overhead {figures['overhead_pct']} % "
                  f"(goal <= 25 %: {'met' if figures['goal_met'] else 'not met'})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
