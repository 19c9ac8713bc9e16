"""Speed of person detection at keyframes, against the bare model forward on the same tensors.

Run: ``.venv/bin/python bench/detect.py [--threads N] [--keyframes K]``.

For two frame sizes, the demo's (320x240 frames, the config's ``min_size``) and AVA's (455x256
frames, the frames stage's short side 256 for AVA, detected at ``min_size`` 256), it writes K
synthetic frames (a textured background and a few figures) to a frame store and measures:
- the stage: ``pipeline.detect.inference.detect_keyframes`` from the frame store (JPEG decoding,
  batching, the forward, the box conversion);
- the yardstick: the model's own forward on the same decoded tensors in the same batches.
Each is timed twice in alternation and the faster run counts. The detector is the config's
architecture at random initialisation (its speed does not depend on the weights), on the config's
``compute.device`` (in mixed precision at ``compute.precision`` on CUDA, for both), the stage reading as the
stage does (``compute.loader_workers`` DataLoader workers on CUDA, ``--workers`` overrides; none on
the CPU). The last line of output is
a JSON object; ``ratio_to_bare_forward`` is stage speed / yardstick speed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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

from pipeline.ava.formats import keyframe_rows  # noqa: E402
from pipeline.config import detector_params, load_config  # noqa: E402
from pipeline.detect.inference import BATCH_SIZE, detect_keyframes  # noqa: E402
from pipeline.detect.keyframes import KeyframeImages  # noqa: E402
from pipeline.detect.model import build_detector, image_tensor, mixed_precision  # noqa: E402
from pipeline.devices import select_device  # noqa: E402
from pipeline.media.frames import encode_jpeg  # noqa: E402
from pipeline.params import DetectorParams  # noqa: E402

SIZES = {"demo": (240, 320, None), "ava": (256, 455, 256)}   # frame height, width, min_size (None: config)


def synthetic_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 [n, H, W, 3]: a blurred random background with one to four upright figures each."""
    rng = np.random.default_rng(seed)
    frames = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
        image = cv2.GaussianBlur(cv2.resize(small, (width, height)), (0, 0), 2)
        for _ in range(int(rng.integers(1, 5))):
            h = int(rng.integers(height // 4, height * 3 // 4))
            w = h // 3
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            cv2.circle(image, (x + w // 2, y + w // 2), w // 2, colour, -1)
            cv2.rectangle(image, (x + w // 4, y + w), (x + 3 * w // 4, y + h), colour, -1)
        frames[i] = image
    return frames


def write_store(path: Path, frames: np.ndarray) -> None:
    """A frame store with one frame per second from 900 s (the layout of ``pipeline.media.frames``)."""
    with h5py.File(path, "w") as h5:
        jpeg = h5.create_dataset("jpeg", shape=(len(frames),), dtype=h5py.vlen_dtype(np.uint8))
        for i, frame in enumerate(frames):
            jpeg[i] = encode_jpeg(frame, 90)
        h5.create_dataset("t", data=900.0 + np.arange(len(frames), dtype=np.float64))
        h5.attrs.update({"fps": 1.0, "height": frames.shape[1], "width": frames.shape[2]})


def measure(params: DetectorParams, height: int, width: int, n: int, workdir: Path) -> dict:
    """Keyframes per second of the stage and of the bare forward at one frame size."""
    device = select_device(params.compute.device)
    precision, workers = params.compute.precision, params.compute.loader_workers
    torch.manual_seed(0)
    model = mixed_precision(build_detector(params, pretrained=False).eval().to(device), device, precision)
    frames = synthetic_frames(n, height, width)
    write_store(workdir / "bench.h5", frames)
    keyframes = keyframe_rows(["bench"] * n, list(range(900, 900 + n)))
    tensors = [image_tensor(f).to(device) for f in frames]

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def stage() -> int:
        with KeyframeImages([workdir / "bench.h5"]) as images:
            found = len(detect_keyframes(model, images, keyframes, loader_workers=workers))
        synchronize()
        return found

    @torch.inference_mode()
    def bare() -> None:
        for start in range(0, n, BATCH_SIZE):
            model(tensors[start:start + BATCH_SIZE])
        synchronize()

    bare()  # warm-up
    times = {"stage": [], "bare": []}
    for _ in range(2):
        for name, fn in (("stage", stage), ("bare", bare)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    stage_kfs, bare_kfs = n / min(times["stage"]), n / min(times["bare"])
    return {"frame_size": [height, width], "min_size": params.min_size, "keyframes": n, "device": str(device),
            "precision": precision if device.type == "cuda" else "off", "loader_workers": workers,
            "keyframes_per_s": round(stage_kfs, 3), "bare_forward_keyframes_per_s": round(bare_kfs, 3),
            "ratio_to_bare_forward": round(stage_kfs / bare_kfs, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keyframes", type=int, default=16)
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the config's)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="default: the config's")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    detect = detector_params(load_config(args.config))
    compute = dataclasses.replace(detect.compute, **{k: v for k, v in (("loader_workers", args.workers),
                                                                       ("device", args.device)) if v is not None})
    detect = dataclasses.replace(detect, compute=compute)
    result: dict = {"arch": detect.arch, "threads": args.threads}
    with tempfile.TemporaryDirectory(prefix="bench_detect") as tmp:
        for name, (height, width, min_size) in SIZES.items():
            params = dataclasses.replace(detect, min_size=min_size or detect.min_size)
            result[name] = measure(params, height, width, args.keyframes, Path(tmp))
            print(f"{name}: {result[name]}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
