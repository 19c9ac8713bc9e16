"""Report stage: every model's frame-mAP beside the class-prior baseline, the detector's recall, figures.

    python -m pipeline.stages.report --evaluations results/eval/{model}/{split}.json ...
        --detect-metrics results/detect/{split}.metrics.json ... --label-map L --out results/report/index.md
        --params ReportParams

Writes, beside ``--out`` (``index.md``: the front page: mAP table, mAP per label type, detector
metrics, AP per class), ``table1.md`` (the paper's Table I for the models that ran) and, per
evaluated split, ``ap_per_class_{split}.png`` and ``pr_best_{split}.png`` (the precision-recall
curves of the best model); prints the mAP table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.ava import formats  # noqa: E402
from pipeline.cli import add_params_argument, read_params, run_stage, stage_parser  # noqa: E402
from pipeline.params import BackboneParams, ReportParams  # noqa: E402
from pipeline.store import atomic_path, write_text  # noqa: E402

LABEL_TYPE_TITLES = {"PERSON_MOVEMENT": "pose", "OBJECT_MANIPULATION": "object", "PERSON_INTERACTION": "interaction"}


def eval_path_parts(path: str | Path) -> tuple[str, str]:
    """``results/eval/{model}/{split}.json`` -> (model, split)."""
    path = Path(path)
    return path.parent.name, path.stem


def load_evaluations(paths: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{model: {split: evaluation JSON}}`` in the order given."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for path in paths:
        model, split = eval_path_parts(path)
        result.setdefault(model, {})[split] = json.loads(Path(path).read_text())
    return result


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def describe(model: str, params: ReportParams) -> dict[str, str]:
    """Input, modality and operation of a model, as the paper's Table I names them."""
    if model == params.baseline:
        return {"input": "–", "modality": "–", "operation": "class prior (train frequency)"}
    if model.startswith("fusion-"):
        fusion = params.fusions[model[len("fusion-"):]]
        return {"input": "–", "modality": " + ".join(fusion.models), "operation": f"fusion: {fusion.strategy}"}
    spec = params.models[model]
    backbones = [params.backbones[name] for name in spec.backbones]
    head = f"{'ATR' if spec.head == 'atr' else 'linear'} head"
    operation = " + ".join(b.arch for b in backbones)
    if len(backbones) > 1:
        operation += f" features {spec.combine}"
    return {
        "input": " + ".join(_input_shape(b) for b in backbones),
        "modality": " + ".join(b.modality for b in backbones),
        "operation": f"{operation}, {head}",
    }


def _input_shape(backbone: BackboneParams) -> str:
    if backbone.modality == "audio":
        return "log-mel window of the keyframe's second"
    return f"(3, {backbone.clip_frames}, {backbone.input_size}, {backbone.input_size})"


def map_table(evals: dict[str, dict[str, dict[str, Any]]], splits: list[str], params: ReportParams) -> str:
    """Markdown table: model, what it is, mAP per split and the gain over the baseline."""
    baseline = evals.get(params.baseline, {})
    head = "| model | modality | operation | " + " | ".join(f"mAP {s} (%)" for s in splits)
    head += " | " + " | ".join(f"vs baseline {s}" for s in splits) + " |"
    lines = [head, "|" + " --- |" * (3 + 2 * len(splits))]
    for model, by_split in evals.items():
        d = describe(model, params)
        maps = [by_split.get(s, {}).get("mAP") for s in splits]
        gains = []
        for s, m in zip(splits, maps):
            b = baseline.get(s, {}).get("mAP")
            gains.append("–" if m is None or b is None or model == params.baseline else f"{100 * (m - b):+.2f}")
        lines.append(f"| {model} | {d['modality']} | {d['operation']} | " + " | ".join(pct(m) for m in maps)
                     + " | " + " | ".join(gains) + " |")
    return "\n".join(lines)


def type_table(evals: dict[str, dict[str, dict[str, Any]]], split: str) -> str:
    """Markdown table of mAP per label type on one split."""
    types = sorted({t for by in evals.values() for t in by.get(split, {}).get("per_type", {})})
    if not types:
        return "The label map names no label types."
    lines = ["| model | " + " | ".join(LABEL_TYPE_TITLES.get(t, t) for t in types) + " |",
             "|" + " --- |" * (1 + len(types))]
    for model, by in evals.items():
        per_type = by.get(split, {}).get("per_type", {})
        lines.append(f"| {model} | " + " | ".join(pct(per_type.get(t)) for t in types) + " |")
    return "\n".join(lines)


def class_table(evals: dict[str, dict[str, dict[str, Any]]], split: str, label_map: formats.LabelMap) -> str:
    """Markdown table of AP per class on one split, with the ground-truth count."""
    models = list(evals)
    lines = ["| id | class | ground truth | " + " | ".join(models) + " |", "|" + " --- |" * (3 + len(models))]
    first = next(iter(evals.values())).get(split, {})
    for action_id in label_map.ids:
        key = str(action_id)
        n_gt = first.get("n_gt", {}).get(key, 0)
        aps = [pct(evals[m].get(split, {}).get("per_class", {}).get(key)) for m in models]
        lines.append(f"| {action_id} | {label_map.name(action_id)} | {n_gt} | " + " | ".join(aps) + " |")
    return "\n".join(lines)


def detector_table(metrics: dict[str, dict[str, Any]]) -> str:
    """Markdown table of the person detector's recall, precision and AP at IoU 0.5 per split."""
    lines = ["| split | recall@0.5 | precision@0.5 | AP@0.5 | boxes | ground-truth persons |",
             "| --- | --- | --- | --- | --- | --- |"]
    for split, m in metrics.items():
        lines.append(f"| {split} | {pct(m.get('recall'))} | {pct(m.get('precision'))} | {pct(m.get('ap50'))} "
                     f"| {m.get('n_detections', '–')} | {m.get('n_gt_boxes', '–')} |")
    return "\n".join(lines)


def table1(evals: dict[str, dict[str, dict[str, Any]]], split: str, params: ReportParams) -> str:
    """The paper's Table I (model, input, modality, operation, mAP) for what ran, on one split."""
    lines = [f"# Table I: results on the {split} split", "",
             "| Model | Input | Modality | Operation | mAP (%) |", "| --- | --- | --- | --- | --- |"]
    for model, by in evals.items():
        d = describe(model, params)
        lines.append(f"| {model} | {d['input']} | {d['modality']} | {d['operation']} | {pct(by.get(split, {}).get('mAP'))} |")
    return "\n".join(lines) + "\n"


def plot_per_class(evals: dict[str, dict[str, dict[str, Any]]], split: str, label_map: formats.LabelMap,
                   path: Path) -> None:
    """Grouped bar chart of AP per class, one bar per model."""
    models = list(evals)
    n = len(label_map)
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * n + 2), 4.5))
    for i, model in enumerate(models):
        per_class = evals[model].get(split, {}).get("per_class", {})
        values = [per_class.get(str(a)) or 0.0 for a in label_map.ids]
        ax.bar([k + i * width for k in range(n)], values, width=width, label=model)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(n)])
    ax.set_xticklabels([label_map.name(a)[:18] for a in label_map.ids], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("AP@0.5")
    ax.set_ylim(0, 1)
    ax.set_title(f"AP per class, {split}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def plot_pr(evaluation: dict[str, Any], label_map: formats.LabelMap, title: str, path: Path) -> None:
    """Precision-recall curve of every class of one evaluation."""
    fig, ax = plt.subplots(figsize=(6, 5))
    for action_id in label_map.ids:
        pr = evaluation.get("pr", {}).get(str(action_id))
        if pr and len(pr["recall"]):
            ax.plot(pr["recall"], pr["precision"], label=label_map.name(action_id)[:18], linewidth=1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    if ax.lines:
        ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def missing_table(evals: dict[str, dict[str, dict[str, Any]]], split: str) -> str:
    """The videos of ``split`` that were not scored, whole or in part, and why (from any evaluation:
    every model of a split is scored on the same ground truth); empty when there are none."""
    missing = next((e[split].get("missing_videos") for e in evals.values() if split in e), None) or []
    rows = ["| video | ground-truth rows not scored | left out | reason |", "| --- | --- | --- | --- |"]
    rows += [f"| {m['video']} | {m['ground_truth_boxes']} | {'whole video' if m['whole_video'] else 'some rows'} "
             f"| {m['reason'].replace('|', '/')} |" for m in missing]
    return "\n".join(rows) if missing else ""


def build_report(evals: dict[str, dict[str, dict[str, Any]]], detect: dict[str, dict[str, Any]],
                 label_map: formats.LabelMap, params: ReportParams, out_dir: Path) -> str:
    """Write index.md, table1.md and the figures; return the mAP table."""
    splits = params.eval_splits
    table = map_table(evals, splits, params)
    sections = ["# AVA action localization: report", "",
                "Frame-mAP at IoU 0.5 (AVA's evaluation), every model beside the class-prior baseline "
                "(each class scored by its train frequency, on the same detected boxes).", "",
                "## mAP", "", table, "",
                "## Person detector (region proposals)", "", detector_table(detect), ""]
    for split in splits:
        best = max((m for m in evals if m != params.baseline),
                   key=lambda m: evals[m].get(split, {}).get("mAP") or 0.0, default=None)
        plot_per_class(evals, split, label_map, out_dir / f"ap_per_class_{split}.png")
        missing = missing_table(evals, split)
        if missing:
            sections += [f"## {split}: videos not scored", "",
                         "The dataset stage left these out (results/dataset/problems.csv): the mAP above is over "
                         "the other videos.", "", missing, ""]
        sections += [f"## {split}: mAP per label type (%)", "", type_table(evals, split), "",
                     f"## {split}: AP per class (%)", "", class_table(evals, split, label_map), "",
                     f"![AP per class]({f'ap_per_class_{split}.png'})", ""]
        plot_pr(evals[best][split] if best is not None else {}, label_map, f"precision-recall, {best}, {split}",
                out_dir / f"pr_best_{split}.png")
        if best is not None:
            sections += [f"Precision-recall of the best model ({best}):", "", f"![PR](pr_best_{split}.png)", ""]
    sections += ["Table I in the paper's form: [table1.md](table1.md).", ""]
    write_text(out_dir / "index.md", "\n".join(sections))
    write_text(out_dir / "table1.md", "\n".join(table1(evals, s, params) for s in splits))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.report", __doc__)
    parser.add_argument("--evaluations", nargs="+", required=True, help="results/eval/{model}/{split}.json")
    parser.add_argument("--detect-metrics", nargs="*", default=[], help="results/detect/{split}.metrics.json")
    parser.add_argument("--label-map", required=True)
    parser.add_argument("--out", required=True, help="results/report/index.md; the other files go beside it")
    add_params_argument(parser, ReportParams)
    args = parser.parse_args(argv)
    params = read_params(parser, ReportParams, args.params)
    evals = load_evaluations(args.evaluations)
    detect = {Path(p).name.split(".")[0]: json.loads(Path(p).read_text()) for p in args.detect_metrics}
    table = build_report(evals, detect, formats.read_label_map(args.label_map), params, Path(args.out).parent)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
