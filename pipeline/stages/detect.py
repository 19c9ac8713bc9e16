"""Detect stage: person boxes at every keyframe of a split with the fine-tuned detector, and their metrics.

    python -m pipeline.stages.detect --checkpoint results/models/detector/detector.pt \\
        --frames F1.h5 F2.h5 ... --keyframes results/dataset/{split}.keyframes.csv \\
        --out results/detect/{split}.boxes.csv --metrics results/detect/{split}.metrics.json \\
        [--ground-truth results/dataset/{split}.gt.csv] [--excluded EXCLUDED.csv] \\
        --params DetectorParams --threads N

``--frames``: the split's frame stores (video id = file stem). Boxes are SlowFast's person-box rows
``video_id,timestamp,x1,y1,x2,y2,,score``: those scoring at least ``score_threshold`` after NMS at
``nms_iou``, at most ``max_per_keyframe`` per keyframe. The metrics (recall and precision at IoU 0.5,
AP@0.5: :mod:`pipeline.detect.metrics`) also use the detections under the threshold, for AP; without
``--ground-truth`` they are None. A checkpoint trained with another layout is refused. The detector
runs on ``compute.device`` (on CUDA its backbone and heads under autocast at ``compute.precision``,
boxes decoded in float32: :func:`pipeline.detect.model.mixed_precision`); there
``compute.loader_workers`` processes read the keyframe images ahead of it.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.ava.formats import read_keyframes
from pipeline.cli import add_params_argument, add_person_box_outputs, read_params, run_stage, set_threads, stage_parser
from pipeline.detect.inference import check_checkpoint, detect_keyframes
from pipeline.detect.keyframes import KeyframeImages
from pipeline.detect.model import mixed_precision, trained_detector
from pipeline.detect.outputs import write_outputs
from pipeline.devices import select_device
from pipeline.params import DetectorParams

STAGE = "detect"


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.detect", __doc__)
    parser.add_argument("--checkpoint", type=Path, required=True, help="the fine-tuned detector (.pt)")
    parser.add_argument("--frames", type=Path, nargs="+", required=True,
                        help="frame stores of the split's videos (video id = file stem)")
    add_person_box_outputs(parser)
    add_params_argument(parser, DetectorParams)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    params = read_params(parser, DetectorParams, args.params)
    set_threads(args.threads)
    check_checkpoint(args.checkpoint, params)
    device = select_device(params.compute.device)
    model = mixed_precision(trained_detector(params, args.checkpoint).to(device), device, params.compute.precision)
    keyframes = read_keyframes(args.keyframes)
    with KeyframeImages(args.frames) as images:
        detections = detect_keyframes(model, images, keyframes,
                                      loader_workers=params.compute.loader_workers)
    write_outputs(detections, keyframes, args.out, args.metrics, params, args.ground_truth, args.excluded,
                  STAGE, {"source": f"detector {args.checkpoint}"})
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
