"""What every source of person boxes writes: the box CSV at the operating threshold and the metrics JSON.

Boxes are SlowFast's person-box rows ``video_id,timestamp,x1,y1,x2,y2,,score``: those scoring at
least ``score_threshold``. The metrics (:mod:`pipeline.detect.metrics`) use all the detections, those
under the threshold too (for AP), on the keyframes that are not excluded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping

from pipeline.ava.formats import AvaRows, read_excluded, read_ground_truth, write_boxes
from pipeline.detect.boxes import KeyframeKey
from pipeline.detect.metrics import detector_metrics
from pipeline.params import DetectorParams, as_dict
from pipeline.store import provenance, write_json, write_sidecar


def keyframe_keys(keyframes: AvaRows, excluded: set[KeyframeKey]) -> list[KeyframeKey]:
    """The (video_id, timestamp) keyframes of ``keyframes`` [K] that count in the metrics: those not
    excluded, each once, in file order."""
    keys = list(dict.fromkeys(zip(keyframes.video_id.tolist(), keyframes.timestamp.tolist())))
    return [k for k in keys if k not in excluded]


def write_outputs(detections: AvaRows, keyframes: AvaRows, out: Path, metrics_path: Path,
                  params: DetectorParams, ground_truth: Path | None, excluded: Path | None,
                  stage: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Write the boxes of ``detections`` [D] scoring at least ``params.score_threshold`` to ``out`` and the
    metrics JSON of all of them on ``keyframes`` [K] to ``metrics_path``; return the metrics.

    ``extra`` (its ``source`` names where the boxes came from) is added to the metrics; the metrics are
    printed to stderr too.
    """
    threshold = params.score_threshold
    write_boxes(out, detections.take(detections.score >= threshold))
    write_sidecar(out, stage, {**as_dict(params), "source": extra.get("source")})
    skip = read_excluded(excluded) if excluded else set()
    gt = read_ground_truth(ground_truth) if ground_truth else None
    metrics = detector_metrics(detections, keyframe_keys(keyframes, skip), gt, threshold)
    metrics.update(extra)
    metrics["n_excluded_keyframes"] = len(skip & set(zip(keyframes.video_id.tolist(),
                                                         keyframes.timestamp.tolist())))
    metrics["provenance"] = provenance(stage, as_dict(params))
    write_json(metrics_path, metrics)
    print(json.dumps({k: v for k, v in metrics.items() if k != "provenance"}), file=sys.stderr)
    return metrics
