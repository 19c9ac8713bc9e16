"""Detect stage with a pretrained COCO person detector: boxes at every keyframe of a split, no training.

    python -m pipeline.stages.detect_pretrained --frames F1.h5 F2.h5 ... --keyframes KEYFRAMES.csv
        --out BOXES.csv --metrics METRICS.json [--ground-truth GT.csv] [--excluded EXCLUDED.csv]
        --params PretrainedDetectorParams --threads N

The person boxes of videos without annotations (``snakemake infer``): the detector
``params.name`` of :mod:`pipeline.detect.pretrained` (SSD-MobileNetV2 COCO by default) on the stored
frame nearest each keyframe. Outputs are those of the ``detect`` stage (SlowFast's person-box rows
at ``infer.score_threshold`` and the metrics JSON, whose recall and precision are None without
``--ground-truth``; given one, as on a val split, they measure the detector).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.ava.formats import AvaRows, read_keyframes
from pipeline.cli import add_params_argument, add_person_box_outputs, read_params, run_stage, set_threads, stage_parser
from pipeline.detect.keyframes import KeyframeImages
from pipeline.detect.outputs import write_outputs
from pipeline.detect.pretrained import PersonDetector, pretrained_detector
from pipeline.devices import select_device
from pipeline.params import PretrainedDetectorParams
from pipeline.progress import progress

STAGE = "detect_pretrained"
BATCH = 4   # keyframes of one video per forward pass


def detect_all(detector: PersonDetector, images: KeyframeImages, keyframes: AvaRows) -> AvaRows:
    """Every detection of ``detector`` at every keyframe of ``keyframes`` [K], in keyframe order (AvaRows [D])."""
    parts: list[AvaRows] = []
    for video_id in progress(list(dict.fromkeys(keyframes.video_id.tolist())), desc="detect", unit="video"):
        stamps = keyframes.timestamp[keyframes.video_id == video_id]
        for start in range(0, len(stamps), BATCH):
            batch = stamps[start:start + BATCH]
            for timestamp, (boxes, scores) in zip(batch.tolist(), detector(images.read(video_id, batch))):
                parts.append(AvaRows(np.full(len(boxes), video_id), np.full(len(boxes), timestamp), boxes,
                                     score=scores))
    return AvaRows.concat(parts)


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.detect_pretrained", __doc__)
    parser.add_argument("--frames", type=Path, nargs="+", required=True,
                        help="frame stores of the split's videos (video id = file stem)")
    add_person_box_outputs(parser)
    add_params_argument(parser, PretrainedDetectorParams)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    params = read_params(parser, PretrainedDetectorParams, args.params)
    set_threads(args.threads)
    detector = pretrained_detector(params.name, params.detector, select_device(params.detector.compute.device))
    keyframes = read_keyframes(args.keyframes)
    with KeyframeImages(args.frames) as images:
        detections = detect_all(detector, images, keyframes)
    write_outputs(detections, keyframes, args.out, args.metrics, params.detector, args.ground_truth, args.excluded,
                  STAGE, {"source": f"pretrained {params.name}"})
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
