"""Peak memory of head training on AVA-sized feature stores: read lazily, it does not grow with the
number of keyframes.

Run: ``.venv/bin/python bench/heads.py [--keyframes N] [--quick]``.

It writes synthetic feature stores of AVA's sizes per keyframe (I3D ResNet-50 at 224: ROI features of
2048, context maps 2048 x 14 x 14 in float16; 2 labelled boxes and a detection per keyframe; 80
classes), 64 keyframes per video, N and 2N keyframes in all. Each measurement runs in a fresh
process (its peak resident memory, ``ru_maxrss``): reading the train features as the head stage does
(:func:`pipeline.feature_store.read_features`) and training a linear head and an ATR head one epoch
each, as the head stage does, with the features

- lazy (the head stage's reading when the arrays do not fit in ``CACHE_BYTES``): at N and at 2N;
- read at once (the yardstick, the reading before issue 13): at N and at 2N.

Figures: the peak resident memory (``ru_maxrss``) in MB of each and the peak of the memory that
Python and numpy allocate (``tracemalloc``: every feature array; the process's RSS has a floor of
about 1 GB of imported libraries, ``floor_mb``, a fresh interpreter with torch and the pipeline
imported, which hides smaller arrays), the growth of the traced peak per 1,000 keyframes (lazy
against at once: ``growth_ratio``), the size of the stores, and the process's peak extrapolated to
AVA's train split (211k keyframes) from the larger of the lazy traced and RSS growths, plus the
boxes, labels and masks that stay in memory for every row (``metadata_bytes_per_row`` times an
assumed 6 rows per AVA keyframe; goal: under 4 GB). The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROI_DIM, MAP_HW, CLASSES = 2048, (14, 14), 80
PER_VIDEO = 64
AVA_TRAIN_KEYFRAMES = 211_000
AVA_ROWS_PER_KEYFRAME = 6      # an assumption: ~1.6 ground-truth persons and ~4-5 detections per keyframe
GOAL_MB = 4096


def label_map():
    from pipeline.ava.formats import LabelMap
    return LabelMap(ids=tuple(range(1, CLASSES + 1)), names=tuple(f"c{i}" for i in range(CLASSES)),
                    label_types=(None,) * CLASSES)


def write_stores(folder: Path, videos: int) -> list[Path]:
    """``videos`` feature files of :data:`PER_VIDEO` keyframes each."""
    from pipeline.ava.formats import AvaRows
    from pipeline.feature_store import FeatureRows, write_features
    rng = np.random.default_rng(0)
    paths = []
    for v in range(videos):
        times = np.arange(902, 902 + PER_VIDEO)
        box_t = np.repeat(times, 3)
        boxes = np.tile(np.array([[0.1, 0.1, 0.4, 0.9], [0.5, 0.2, 0.9, 0.95], [0.3, 0.3, 0.6, 0.6]], np.float32),
                        (PER_VIDEO, 1))
        source = np.tile(np.array([0, 0, 1], np.uint8), PER_VIDEO)
        labels = (rng.random((len(box_t), CLASSES)) < 0.05).astype(np.uint8) * (source == 0)[:, None]
        rows = FeatureRows(AvaRows([f"v{v}"] * len(box_t), box_t, boxes, score=np.ones(len(box_t), np.float32)),
                           labels, source, source == 0)
        roi = rng.normal(size=(len(box_t), ROI_DIM)).astype(np.float16)
        context = rng.normal(size=(PER_VIDEO, ROI_DIM, *MAP_HW)).astype(np.float16)
        path = folder / f"v{v}.h5"
        write_features(path, f"v{v}", times, rows, roi, context, (224, 224), 16, label_map(), {})
        paths.append(path)
    return paths


def measure(paths: list[str], lazy: bool) -> dict:
    """(In a child process) read the features and train a linear and an ATR head an epoch each."""
    from pipeline.feature_store import read_features
    from pipeline.heads import train_head
    from pipeline.params import ComputeParams, ModelParams, TrainRecipe
    import torch
    torch.set_num_threads(1)
    tracemalloc.start()
    start = time.perf_counter()
    features = read_features(paths, label_map(), cache_bytes=0 if lazy else 1 << 62)
    recipe = TrainRecipe(epochs=1, lr=0.001, batch_size=64, weight_decay=0.0001, optimizer="sgd", momentum=0.9,
                         nesterov=False, schedule="constant", warmup_epochs=0.0, lr_steps=[], lr_step_factor=0.1)
    resident = [v for v in vars(features).values() if isinstance(v, np.ndarray)]
    metadata = sum(a.nbytes for a in resident if a is not features.roi and a is not features.context
                   and a is not features.attend) / len(features)
    for head in ("linear", "atr"):
        train_head(features, ModelParams(backbones=["b"], combine="concat", head=head, train=recipe, seed=0,
                                         compute=ComputeParams("cpu", "off", 0)))
    return {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "traced_peak_mb": tracemalloc.get_traced_memory()[1] / 2 ** 20, "seconds": time.perf_counter() - start,
            "metadata_bytes_per_row": metadata}


def child(paths: list[Path] | None, lazy: bool) -> dict:
    """Run :func:`measure` (or, with no paths, only the imports: the floor) in a fresh interpreter."""
    result = subprocess.run([sys.executable, __file__, "--child", json.dumps([str(p) for p in paths or []]),
                             "--lazy" if lazy else "--at-once"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_child(paths: list[str], lazy: bool) -> None:
    import torch  # noqa: F401  (the floor holds what the stage imports)
    import pipeline.feature_store  # noqa: F401
    import pipeline.heads  # noqa: F401
    out = measure(paths, lazy) if paths else {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                              "traced_peak_mb": 0.0, "seconds": 0.0, "metadata_bytes_per_row": 0.0}
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keyframes", type=int, default=256, help="N (a multiple of 64); 2N is measured too")
    parser.add_argument("--quick", action="store_true", help="N = 128")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--lazy", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--at-once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        run_child(json.loads(args.child), args.lazy)
        return
    n = 128 if args.quick else args.keyframes
    videos = max(1, n // PER_VIDEO)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        paths = write_stores(Path(tmp), 2 * videos)
        written_s = time.perf_counter() - start
        store_mb = sum(p.stat().st_size for p in paths) / 2 ** 20
        floor = child(None, True)["peak_mb"]
        runs = {}
        for label, count in (("n", videos), ("2n", 2 * videos)):
            for mode in ("lazy", "at_once"):
                runs[f"{mode}_{label}"] = child(paths[:count], mode == "lazy")
                print(f"{mode} {count * PER_VIDEO} keyframes: {runs[f'{mode}_{label}']}", file=sys.stderr)
    per_k = 1000 / (videos * PER_VIDEO)
    more = (AVA_TRAIN_KEYFRAMES - 2 * videos * PER_VIDEO) / 1000
    lazy_growth = (runs["lazy_2n"]["traced_peak_mb"] - runs["lazy_n"]["traced_peak_mb"]) * per_k
    eager_growth = (runs["at_once_2n"]["traced_peak_mb"] - runs["at_once_n"]["traced_peak_mb"]) * per_k
    rss_growth = (runs["lazy_2n"]["peak_mb"] - runs["lazy_n"]["peak_mb"]) * per_k
    # the whole process at AVA's size: its peak at 2N plus the traced growth (arrays) to 211k keyframes
    # plus the boxes, labels and masks held for every row (not seen at this size): bytes per row x AVA's rows
    metadata_mb = runs["lazy_2n"]["metadata_bytes_per_row"] * AVA_TRAIN_KEYFRAMES * AVA_ROWS_PER_KEYFRAME / 2 ** 20
    ava_peak = runs["lazy_2n"]["peak_mb"] + max(lazy_growth, rss_growth, 0.0) * more + metadata_mb
    eager_ava = runs["at_once_2n"]["peak_mb"] + eager_growth * more
    print(json.dumps({
        "keyframes": [videos * PER_VIDEO, 2 * videos * PER_VIDEO],
        "store_mb_2n": round(store_mb, 1), "write_s": round(written_s, 1), "floor_mb": round(floor, 1),
        **{f"{k}_peak_mb": round(v["peak_mb"], 1) for k, v in runs.items()},
        **{f"{k}_traced_peak_mb": round(v["traced_peak_mb"], 1) for k, v in runs.items()},
        **{f"{k}_s": round(v["seconds"], 2) for k, v in runs.items()},
        "lazy_growth_mb_per_1k_keyframes": round(lazy_growth, 2),
        "at_once_growth_mb_per_1k_keyframes": round(eager_growth, 1),
        "growth_ratio": round(lazy_growth / eager_growth, 4) if eager_growth > 0 else None,
        "metadata_bytes_per_row": round(runs["lazy_2n"]["metadata_bytes_per_row"], 1),
        "ava_rows_assumed": AVA_TRAIN_KEYFRAMES * AVA_ROWS_PER_KEYFRAME,
        "ava_metadata_mb": round(metadata_mb, 0),
        "ava_train_peak_mb_extrapolated": round(ava_peak, 0),
        "ava_train_peak_mb_at_once_extrapolated": round(eager_ava, 0),
        "goal_mb": GOAL_MB, "goal_met": bool(ava_peak < GOAL_MB),
    }))


if __name__ == "__main__":
    main()
