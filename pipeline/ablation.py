"""Ablations over seeds on cached features: models compared by their heads (e.g. the actor-target
relation against the same model without it) and fusions against their members, each trained and
evaluated once per seed, with the mean and spread of every figure.

Heads train on the train split's cached features (:func:`pipeline.heads.train_head`, each model's
recipe with the seed replaced), score the detected boxes of the evaluated split, and are evaluated as
the evaluate stage does (:func:`pipeline.ava.evaluate.evaluate`). A fusion of the ablation fuses its
members' logits of the same seed; ``topk_logit`` chooses its models per class by their AP on the
evaluated split itself (the DAG's ``select_on: val`` on the demo: optimistic, as the paper's table).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from pipeline.ava.evaluate import evaluate
from pipeline.ava.formats import AvaRows, LabelMap
from pipeline.detect.training_boxes import DETECTION
from pipeline.feature_store import Features, combine_features
from pipeline.fusion import SELECTING, fuse_probabilities, select_topk
from pipeline.heads import row_logits, train_head
from pipeline.params import EvaluateParams, FusionParams, ModelParams
from pipeline.scores import sigmoid, to_detections


def model_features(parts: dict[str, Features], model: ModelParams) -> Features:
    """The features of ``model`` from its backbones' (``parts``: backbone -> features)."""
    chosen = [parts[b] for b in model.backbones]
    if len(chosen) == 1:
        return chosen[0]
    return combine_features(chosen, model.combine, with_context=model.head == "atr")


def detection_rows(features: Features) -> tuple[np.ndarray, AvaRows]:
    """The detected boxes' rows int64 [M] and boxes (score: the detector's)."""
    rows = np.flatnonzero(features.box_source == DETECTION)
    return rows, AvaRows(video_id=features.video_id[rows], timestamp=features.box_t[rows], box=features.box[rows],
                         score=features.box_score[rows])


def scores(result: Any, label_map: LabelMap, label_type: str) -> dict[str, Any]:
    """mAP, the mAP of ``label_type`` and the AP of each of its classes (None: no ground truth)."""
    classes = [a for a, t in zip(label_map.ids, label_map.label_types) if t == label_type]
    return {"mAP": float(result.mAP), "type_mAP": result.per_type.get(label_type),
            "per_class": {str(a): result.per_class.get(a) for a in classes}}


def run_seed(seed: int, train: dict[str, Features], held: dict[str, Features], models: dict[str, ModelParams],
             fusions: dict[str, FusionParams], gt: AvaRows, excluded: set[tuple[str, int]] | None,
             label_map: LabelMap, label_type: str, evaluation: EvaluateParams) -> dict[str, dict[str, Any]]:
    """Every model's and fusion's :func:`scores` on the held-out split for one seed."""
    out: dict[str, dict[str, Any]] = {}
    logits: dict[str, np.ndarray] = {}
    ap: dict[str, np.ndarray] = {}
    boxes = None

    def score(name: str, probabilities: np.ndarray) -> None:
        result = evaluate(gt, to_detections(boxes, probabilities, label_map), label_map, excluded,
                          capacity=evaluation.capacity, variant=evaluation.variant, iou_threshold=evaluation.iou)
        out[name] = scores(result, label_map, label_type)
        ap[name] = np.array([np.nan if result.per_class[a] is None else result.per_class[a] for a in label_map.ids])

    for name, params in models.items():
        head = train_head(model_features(train, params), dataclasses.replace(params, seed=seed))
        features = model_features(held, params)
        rows, model_boxes = detection_rows(features)
        if boxes is None:
            boxes = model_boxes
        elif not (np.array_equal(boxes.box, model_boxes.box) and np.array_equal(boxes.video_id, model_boxes.video_id)):
            raise ValueError(f"model {name} scores other boxes than the first model")
        logits[name] = row_logits(head, features, rows, params.compute.precision)
        score(name, sigmoid(logits[name]))
    for name, fusion in fusions.items():
        stacked = np.stack([logits[m] for m in fusion.models])
        selection = select_topk(np.stack([ap[m] for m in fusion.models])) if fusion.strategy in SELECTING else None
        score(f"fusion-{name}", fuse_probabilities(stacked, fusion.strategy, selection))
    return out


def spread(values: list[float | None]) -> dict[str, float | None]:
    """Mean, sample standard deviation, min and max of the values that exist."""
    present = np.array([v for v in values if v is not None], np.float64)
    if len(present) == 0:
        return {"mean": None, "sd": None, "min": None, "max": None}
    return {"mean": float(present.mean()), "sd": float(present.std(ddof=1)) if len(present) > 1 else 0.0,
            "min": float(present.min()), "max": float(present.max())}


def summarize(per_seed: dict[int, dict[str, dict[str, Any]]], compare: list[list[str]],
              fusions: dict[str, FusionParams]) -> dict[str, Any]:
    """Per model and fusion, the figures of every seed and their :func:`spread`; per comparison, the
    per-seed differences (model - against) of the label type's mAP and the mAP; per fusion, its
    best member's (by mAP, per seed) mAP and the fusion's gain over it."""
    seeds = sorted(per_seed)
    names = list(per_seed[seeds[0]])
    table: dict[str, Any] = {}
    for name in names:
        runs = [per_seed[s][name] for s in seeds]
        classes = list(runs[0]["per_class"])
        table[name] = {
            "mAP": {"seeds": [r["mAP"] for r in runs], **spread([r["mAP"] for r in runs])},
            "type_mAP": {"seeds": [r["type_mAP"] for r in runs], **spread([r["type_mAP"] for r in runs])},
            "per_class": {c: {"seeds": [r["per_class"][c] for r in runs], **spread([r["per_class"][c] for r in runs])}
                          for c in classes},
        }
    comparisons = []
    for model, against in compare:
        diff = [per_seed[s][model]["type_mAP"] - per_seed[s][against]["type_mAP"] for s in seeds]
        diff_map = [per_seed[s][model]["mAP"] - per_seed[s][against]["mAP"] for s in seeds]
        comparisons.append({"model": model, "against": against,
                            "type_mAP_diff": {"seeds": diff, **spread(diff)},
                            "mAP_diff": {"seeds": diff_map, **spread(diff_map)},
                            "seeds_better": int(sum(d > 0 for d in diff))})
    fused = {}
    for name, fusion in fusions.items():
        best = [max(fusion.models, key=lambda m: per_seed[s][m]["mAP"]) for s in seeds]
        best_map = [per_seed[s][b]["mAP"] for s, b in zip(seeds, best)]
        gain = [per_seed[s][f"fusion-{name}"]["mAP"] - b for s, b in zip(seeds, best_map)]
        fused[name] = {"strategy": fusion.strategy, "models": list(fusion.models), "best_member": best,
                       "best_member_mAP": {"seeds": best_map, **spread(best_map)},
                       "gain_over_best_member": {"seeds": gain, **spread(gain)}}
    return {"seeds": seeds, "table": table, "compare": comparisons, "fusions": fused}


def _pct(figure: dict[str, Any]) -> str:
    if figure["mean"] is None:
        return "n/a"
    return f"{100 * figure['mean']:.2f} ± {100 * figure['sd']:.2f}"


def markdown(summary: dict[str, Any], label_map: LabelMap, label_type: str, split: str) -> str:
    """The summary as Markdown: a table of every model and fusion, the comparisons, the fusions' gains."""
    seeds = summary["seeds"]
    names = list(summary["table"])
    classes = list(summary["table"][names[0]]["per_class"]) if names else []
    lines = [f"# Ablations on {split}, {len(seeds)} seeds ({', '.join(map(str, seeds))})", "",
             "Heads on the cached features, trained once per seed; mean ± sample standard deviation over the "
             "seeds, in %.", "",
             "| model | mAP | " + f"{label_type} mAP | " + " | ".join(label_map.name(int(c)) for c in classes) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in classes) + " |"]
    for name in names:
        row = summary["table"][name]
        lines.append(f"| {name} | {_pct(row['mAP'])} | {_pct(row['type_mAP'])} | "
                     + " | ".join(_pct(row["per_class"][c]) for c in classes) + " |")
    if summary["compare"]:
        lines += ["", f"## Comparisons ({label_type} mAP, model − against, per seed)", ""]
        for c in summary["compare"]:
            per = ", ".join(f"{100 * d:+.2f}" for d in c["type_mAP_diff"]["seeds"])
            lines.append(f"- {c['model']} against {c['against']}: {_pct(c['type_mAP_diff'])} points "
                         f"({per}; better in {c['seeds_better']} of {len(seeds)} seeds); mAP "
                         f"{_pct(c['mAP_diff'])} points")
    if summary["fusions"]:
        lines += ["", "## Fusions against their best member (mAP, per seed)", ""]
        for name, f in summary["fusions"].items():
            per = ", ".join(f"{100 * d:+.2f}" for d in f["gain_over_best_member"]["seeds"])
            lines.append(f"- fusion-{name} ({f['strategy']} of {', '.join(f['models'])}): "
                         f"{_pct(summary['table']['fusion-' + name]['mAP'])}, best member "
                         f"({', '.join(sorted(set(f['best_member'])))}) {_pct(f['best_member_mAP'])}, "
                         f"gain {_pct(f['gain_over_best_member'])} points ({per})")
    return "\n".join(lines) + "\n"
