"""Report stage: every model's frame-mAP beside the class-prior baseline, Table I, the detector's recall,
each stage's cost, figures; as Markdown and as the HTML pages of ``snakemake --report``.

    python -m pipeline.stages.report --evaluations results/eval/{model}/{split}.json ...
        --detect-metrics results/detect/{split}.metrics.json ... --label-map L --out results/report/index.md
        [--benchmark-root results/benchmarks]
        [--contact-sheets results/visualize/{video}.contact_sheet.png ...] --params ReportParams

Writes, beside ``--out`` (``index.md``: the front page: mAP table, videos not evaluated, mAP per label
type, detector metrics, AP per class, stage costs, figures), ``table1.md`` (the paper's Table I for the
models that ran, with the paper's figures), ``config.yaml`` (the validated config), the HTML pages of
``pipeline.reporting.files.PAGES`` (the Snakemake report's tables), per evaluated split
``ap_per_class_{split}.png`` and ``pr_best_{split}.png`` (precision-recall per class of the best
model), and a copy of each contact sheet; prints the mAP table.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from pipeline import paper
from pipeline.ava import formats
from pipeline.cli import add_params_argument, read_params, run_stage, stage_parser
from pipeline.params import ReportParams
from pipeline.reporting import files
from pipeline.reporting.benchmarks import cost_table, stage_costs
from pipeline.reporting.figures import plot_ap_per_class, plot_pr_grid
from pipeline.reporting.table1 import describe, paper_rows_not_run, pct, table1
from pipeline.reporting.tables import Table, heading, html_page, note, preformatted
from pipeline.store import write_text

LABEL_TYPE_TITLES = {"PERSON_MOVEMENT": "pose", "OBJECT_MANIPULATION": "object", "PERSON_INTERACTION": "interaction"}
Evaluations = dict[str, dict[str, dict[str, Any]]]
MISSING_NOTE = ("Videos of the annotations that the dataset stage left out (results/dataset/problems.csv), or whose "
                "ground truth lies partly outside the video: those ground-truth rows are not scored, and the mAP "
                "above is over the rest.")

MAP_NOTE = ("Frame-mAP at IoU 0.5 (AVA's evaluation), every model beside the class-prior baseline (each class "
            "scored by its train frequency, on the same detected boxes).")
TABLE1_NOTE = ("Extends: the row this one adds one thing to (the ATR head to the linear head, a second stream to "
               "the first, an ensemble to its best member); Δ mAP: the difference in points. Paper: "
               f"{paper.SOURCE}; its Δ is between the paper's figures for the same two rows.")


def eval_path_parts(path: str | Path) -> tuple[str, str]:
    """``results/eval/{model}/{split}.json`` -> (model, split)."""
    path = Path(path)
    return path.parent.name, path.stem


def load_evaluations(paths: list[str]) -> Evaluations:
    """``{model: {split: evaluation JSON}}`` in the order given."""
    result: Evaluations = {}
    for path in paths:
        model, split = eval_path_parts(path)
        result.setdefault(model, {})[split] = json.loads(Path(path).read_text())
    return result


def map_table(evals: Evaluations, splits: list[str], params: ReportParams) -> Table:
    """Model, what it is, mAP per split and the gain over the baseline (points)."""
    baseline = evals.get(params.baseline, {})
    table = Table(["model", "network", "modality", "operation"] + [f"mAP {s} (%)" for s in splits]
                  + [f"vs baseline {s}" for s in splits])
    for model, by_split in evals.items():
        d = describe(model, params)
        maps = [by_split.get(s, {}).get("mAP") for s in splits]
        gains = []
        for s, m in zip(splits, maps):
            b = baseline.get(s, {}).get("mAP")
            gains.append("–" if m is None or b is None or model == params.baseline else f"{100 * (m - b):+.2f}")
        table.add(model, d.network, d.modality, d.operation, *[pct(m) for m in maps], *gains)
    return table


def missing_videos_table(evals: Evaluations) -> Table | None:
    """The videos of the annotations that an evaluation could not use (its ``missing_videos``), one row
    per split, video and reason, naming the predictions that missed it; None when there are none."""
    found: dict[tuple[str, str, str, Any], list[str]] = {}
    per_split: dict[str, list[str]] = {}
    for model, by_split in evals.items():
        for split, evaluation in by_split.items():
            per_split.setdefault(split, []).append(model)
            for missing in evaluation.get("missing_videos") or []:
                key = (split, str(missing.get("video")), str(missing.get("reason", "")),
                       missing.get("ground_truth_boxes", "–"))
                found.setdefault(key, []).append(model)
    if not found:
        return None
    table = Table(["split", "video", "reason", "ground-truth boxes", "predictions"])
    for (split, video, reason, n_gt), models in found.items():
        table.add(split, video, reason, n_gt, "all" if models == per_split[split] else ", ".join(models))
    return table


def type_table(evals: Evaluations, split: str) -> Table | None:
    """mAP per label type on one split; None when the label map names no label types."""
    types = sorted({t for by in evals.values() for t in by.get(split, {}).get("per_type", {})})
    if not types:
        return None
    table = Table(["model"] + [f"{LABEL_TYPE_TITLES.get(t, t)} (%)" for t in types])
    for model, by in evals.items():
        per_type = by.get(split, {}).get("per_type", {})
        table.add(model, *[pct(per_type.get(t)) for t in types])
    return table


def class_table(evals: Evaluations, split: str, label_map: formats.LabelMap) -> Table:
    """AP per class on one split (%), with the ground-truth count."""
    models = list(evals)
    table = Table(["id", "class", "ground truth"] + models)
    first = next(iter(evals.values())).get(split, {})
    for action_id in label_map.ids:
        key = str(action_id)
        aps = [pct(evals[m].get(split, {}).get("per_class", {}).get(key)) for m in models]
        table.add(action_id, label_map.name(action_id), first.get("n_gt", {}).get(key, 0), *aps)
    return table


def detector_table(metrics: dict[str, dict[str, Any]]) -> Table:
    """The person detector's recall, precision and AP at IoU 0.5 per split."""
    table = Table(["split", "recall@0.5 (%)", "precision@0.5 (%)", "AP@0.5 (%)", "boxes", "ground-truth persons"])
    for split, m in metrics.items():
        table.add(split, pct(m.get("recall")), pct(m.get("precision")), pct(m.get("ap50")),
                  m.get("n_detections", "–"), m.get("n_gt_boxes", "–"))
    return table


def best_model(evals: Evaluations, split: str, params: ReportParams) -> str | None:
    return max((m for m in evals if m != params.baseline and split in evals[m]),
               key=lambda m: evals[m][split].get("mAP") or 0.0, default=None)


def _md(table: Table | None, empty: str) -> str:
    return table.markdown() if table is not None else empty


def _html(table: Table | None, empty: str) -> str:
    return table.html() if table is not None else note(empty)


def build_report(evals: Evaluations, detect: dict[str, dict[str, Any]], label_map: formats.LabelMap,
                 params: ReportParams, out_dir: Path, costs: Table | None = None,
                 contact_sheets: list[Path] | None = None, ablation: Path | None = None) -> str:
    """Write the Markdown report, Table I, the config, the HTML pages and the figures; return the mAP table."""
    splits = params.eval_splits
    contact_sheets = contact_sheets or []
    table = map_table(evals, splits, params)
    missing = missing_videos_table(evals)
    no_types = "The label map names no label types."
    no_costs = "No benchmark files were given."

    md = ["# AVA action localization: report", "", MAP_NOTE, "", "## mAP", "", table.markdown(), ""]
    if missing is not None:
        md += ["## Videos not evaluated", "", MISSING_NOTE, "", missing.markdown(), ""]
    md += ["## Person detector (region proposals)", "", detector_table(detect).markdown(), ""]
    html_map = [note(MAP_NOTE), table.html()]
    if missing is not None:
        html_map += [heading("Videos not evaluated"), note(MISSING_NOTE), missing.html()]
    html_types, html_classes, html_table1 = [], [], [note(TABLE1_NOTE)]
    md_table1 = []
    for split in splits:
        best = best_model(evals, split, params)
        ap_png = files.figure_file("ap_per_class", split)
        pr_png = files.figure_file("pr_best", split)
        plot_ap_per_class(evals, split, label_map, params.baseline, out_dir / ap_png)
        plot_pr_grid(evals[best][split] if best else {}, evals.get(params.baseline, {}).get(split), label_map,
                     best or "no model", split, out_dir / pr_png)
        types = type_table(evals, split)
        classes = class_table(evals, split, label_map)
        md += [f"## {split}: mAP per label type", "", _md(types, no_types), "",
               f"## {split}: AP per class (%)", "", classes.markdown(), "", f"![AP per class, {split}]({ap_png})", ""]
        if best is not None:
            md += [f"Precision-recall per class of the best model ({best}):", "", f"![PR, {split}]({pr_png})", ""]
        html_types += [heading(split), _html(types, no_types)]
        html_classes += [heading(split), classes.html()]
        t1 = table1(evals, split, params)
        md_table1 += [f"# Table I: results on the {split} split", "", t1.markdown(), ""]
        html_table1 += [heading(f"{split} split"), t1.html()]
    not_run = paper_rows_not_run(params)
    md_table1 += [TABLE1_NOTE, ""]
    if not_run.rows:
        md_table1 += ["## Rows of the paper's Table I that this run does not have", "", not_run.markdown(), ""]
        html_table1 += [heading("Rows of the paper's Table I that this run does not have"), not_run.html()]
    md += ["## Cost of each stage (Snakemake benchmark files)", "", _md(costs, no_costs), ""]
    for sheet in contact_sheets:
        md += [f"## Contact sheet: {sheet.name.split('.')[0]}", "", f"![contact sheet]({sheet.name})", ""]
    ablation_text = ablation.read_text() if ablation is not None else None
    if ablation_text is not None:   # the ablation stage's summary, its headings one level down
        md += [line if not line.startswith("#") else "#" + line for line in ablation_text.splitlines()] + [""]
    md += ["Table I in the paper's form: [table1.md](table1.md). The config of this run: [config.yaml](config.yaml).",
           ""]
    config_text = yaml.safe_dump(params.config, sort_keys=False, allow_unicode=True)

    for sheet in contact_sheets:
        shutil.copyfile(sheet, out_dir / files.contact_sheet_file(str(sheet)))
    pages = {
        "map": ("mAP of every model", html_map),
        "table1": ("Table I", html_table1),
        "label_types": ("mAP per label type (%)", html_types),
        "ap_per_class": ("AP per class (%)", html_classes),
        "detector": ("Person detector (region proposals)", [detector_table(detect).html()]),
        "stages": ("Cost of each stage", [note("From the Snakemake benchmark files: wall and CPU time summed over "
                                               "a stage's jobs, memory the largest peak resident set of a job."),
                                          _html(costs, no_costs)]),
        "ablation": ("Ablations over seeds", [note("From results/ablation/summary.md: heads retrained on the cached "
                                                   "features once per seed, mean ± sd.") , preformatted(ablation_text)]
                     if ablation_text is not None else [note("This config has no ablation section.")]),
        "config": ("Configuration of this run", [note("The validated config, with the schema's defaults filled in."),
                                                 preformatted(config_text)]),
    }
    for name, (title, blocks) in pages.items():
        write_text(out_dir / files.PAGES[name], html_page(title, blocks))
    write_text(out_dir / files.CONFIG, config_text)
    write_text(out_dir / files.TABLE1, "\n".join(md_table1))
    write_text(out_dir / files.INDEX, "\n".join(md))
    return table.markdown()


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("pipeline.stages.report", __doc__)
    parser.add_argument("--evaluations", nargs="+", required=True, help="results/eval/{model}/{split}.json")
    parser.add_argument("--detect-metrics", nargs="*", default=[], help="results/detect/{split}.metrics.json")
    parser.add_argument("--label-map", required=True)
    # A folder, not the files: AVA has thousands of jobs, more paths than one command line holds.
    parser.add_argument("--benchmark-root", default=None,
                        help="the Snakemake benchmark files' folder: every *.tsv below it, a file's stage its first "
                             "part below")
    parser.add_argument("--contact-sheets", nargs="*", default=[], help="results/visualize/{video}.contact_sheet.png")
    parser.add_argument("--ablation", default=None, help="results/ablation/summary.md, when the config has an ablation")
    parser.add_argument("--out", required=True, help="results/report/index.md; the other files go beside it")
    add_params_argument(parser, ReportParams)
    args = parser.parse_args(argv)
    params = read_params(parser, ReportParams, args.params)
    evals = load_evaluations(args.evaluations)
    detect = {Path(p).name.split(".")[0]: json.loads(Path(p).read_text()) for p in args.detect_metrics}
    costs = None
    if args.benchmark_root:
        root = Path(args.benchmark_root)
        costs = cost_table(stage_costs(sorted(root.rglob("*.tsv")), root))
    table = build_report(evals, detect, formats.read_label_map(args.label_map), params, Path(args.out).parent,
                         costs, [Path(p) for p in args.contact_sheets], Path(args.ablation) if args.ablation else None)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
