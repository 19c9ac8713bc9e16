"""The report puts every model beside the baseline, reads Table I's rows from the config, lists the
videos an evaluation could not use, sums the benchmark files and draws figures people can read."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import matplotlib.colors
import pytest

from pipeline import paper
from pipeline.ava import formats
from pipeline.errors import InputError
from pipeline.params import (BackboneParams, ComputeParams, FinetuneRecipe, FusionParams, ModelParams, ReportParams,
                             TrainRecipe,
                             to_json)
from pipeline.reporting import benchmarks, figures, files
from pipeline.reporting.table1 import extends, table1
from pipeline.stages import report

LABELS = formats.LabelMap(ids=(12, 79), names=("stand", "talk to (e.g., self, a person, a group)"),
                          label_types=("PERSON_MOVEMENT", "PERSON_INTERACTION"))
CPU = ComputeParams("cpu", "off", 0)
RECIPE = dict(epochs=1, lr=0.01, batch_size=8, weight_decay=0.0, optimizer="adamw", momentum=0.9, nesterov=False,
              schedule="constant", warmup_epochs=0.0, lr_steps=[], lr_step_factor=0.1)
TRAIN = FinetuneRecipe(**RECIPE, freeze_bn=False, head="linear")


def backbone(modality: str = "rgb", arch: str = "r3d_tiny") -> BackboneParams:
    return BackboneParams(arch=arch, modality=modality, clip_frames=8, clip_stride=1, input_size=112, roi_size=7,
                          roi_pool="max", roi_op="align", context_frames=1, weights_layout="torchvision", weights=None,
                          finetune=TRAIN, seed=0, train_box_iou=0.5, dropout=0.3, compute=CPU)


def model(backbones: list[str], head: str = "linear", combine: str = "concat") -> ModelParams:
    return ModelParams(backbones=backbones, combine=combine, head=head, train=TrainRecipe(**RECIPE), seed=0,
                       compute=CPU)


PARAMS = ReportParams(
    baseline="baseline-prior", eval_splits=["val"],
    backbones={"b": backbone(), "f": backbone("flow/farneback")},
    models={"rgb": model(["b"]), "flow": model(["f"])},
    fusions={"mean": FusionParams(models=["rgb", "flow"], strategy="mean_prob", select_split=None)},
    paper_rows={"rgb": "i3d_nl"}, config={"seed": 0, "models": {"rgb": {"backbone": "b"}}},
)


def evaluation(m: float, **extra) -> dict:
    return {"mAP": m, "per_class": {"12": m + 0.1, "79": m - 0.1},
            "per_type": {"PERSON_MOVEMENT": m + 0.1, "PERSON_INTERACTION": m - 0.1},
            "n_gt": {"12": 10, "79": 4},
            "pr": {"12": {"precision": [1.0, 0.5], "recall": [0.5, 1.0]}, "79": {"precision": [], "recall": []}},
            **extra}


def write_inputs(tmp_path: Path, evals: dict[str, dict]) -> tuple[list[str], list[str]]:
    paths = []
    for name, ev in evals.items():
        path = tmp_path / "eval" / name / "val.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(ev))
        paths.append(str(path))
    metrics = tmp_path / "val.metrics.json"
    metrics.write_text(json.dumps({"recall": 0.95, "precision": 0.8, "ap50": 0.9}))
    pbtxt = tmp_path / "labels.pbtxt"
    formats.write_label_map(pbtxt, LABELS)
    return paths, ["--detect-metrics", str(metrics), "--label-map", str(pbtxt)]


def run_report(tmp_path: Path, evals: dict[str, dict], params: ReportParams = PARAMS, *extra: str) -> Path:
    paths, args = write_inputs(tmp_path, evals)
    out = tmp_path / "report"
    assert report.main(["--evaluations", *paths, *args, *extra, "--out", str(out / "index.md"),
                        "--params", to_json(params)]) == 0
    return out


def test_report_tables_pages_and_figures(tmp_path):
    out = run_report(tmp_path, {"rgb": evaluation(0.6), "fusion-mean": evaluation(0.7),
                                "baseline-prior": evaluation(0.2)})
    index = (out / "index.md").read_text()
    assert "| rgb | r3d_tiny | RGB | - | 60.00 | +40.00 |" in index
    assert "| fusion-mean | ensemble of 2 | RGB + Flow (Farneback) | mean of probabilities | 70.00 | +50.00 |" in index
    assert "| val | 95.00 | 80.00 | 90.00 |" in index
    assert "| 79 | talk to (e.g., self, a person, a group) | 4 | 50.00 | 60.00 | 10.00 |" in index
    assert "Videos not evaluated" not in index                   # no evaluation names any
    assert "| rgb | r3d_tiny | (3, 8, 112, 112) | RGB | - | 60.00 | – | – | i3d resnet50 + NL | 19.33 | – |" \
        in (out / "table1.md").read_text()
    # every HTML page of the Snakemake report is a whole document holding its table
    for name, page in files.PAGES.items():
        text = (out / page).read_text()
        assert text.startswith("<!doctype html>") and text.rstrip().endswith("</html>"), name
    assert re.search(r"<td>rgb</td>.*<td class=\"num\">60\.00</td><td class=\"num\">\+40\.00</td>",
                     (out / files.PAGES["map"]).read_text())
    assert "<td>fusion-mean</td><td>ensemble of 2</td>" in (out / files.PAGES["table1"]).read_text()
    assert "seed: 0" in (out / files.PAGES["config"]).read_text() and "seed: 0" in (out / files.CONFIG).read_text()
    for name in files.FIGURES:
        png = out / files.figure_file(name, "val")
        width, _ = png_size(png)
        assert width <= figures.PAGE_WIDTH_IN * figures.DPI, png   # fits a page


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_videos_not_evaluated_are_listed_with_their_reason(tmp_path):
    missing = [{"video": "vid_A", "reason": "no frames could be decoded", "ground_truth_boxes": 7}]
    out = run_report(tmp_path, {"rgb": evaluation(0.6, missing_videos=missing),
                                "baseline-prior": evaluation(0.2, missing_videos=missing)})
    index = (out / "index.md").read_text()
    assert "## Videos not evaluated" in index
    assert "| val | vid_A | no frames could be decoded | 7 | all |" in index
    page = (out / files.PAGES["map"]).read_text()
    assert "Videos not evaluated" in page and "<td>vid_A</td>" in page


def test_an_empty_missing_videos_list_adds_no_section(tmp_path):
    out = run_report(tmp_path, {"rgb": evaluation(0.6, missing_videos=[]), "baseline-prior": evaluation(0.2)})
    assert "Videos not evaluated" not in (out / "index.md").read_text()


def test_table1_finds_the_row_each_model_extends_from_the_config():
    params = dataclasses.replace(
        PARAMS,
        backbones={"r": backbone("rgb", "i3d_r50_nl"), "f": backbone("flow/tvl1", "i3d_r50_nl"),
                   "t": backbone("rgb", "tsn_resnet152")},
        models={"plain": model(["r"]), "with_atr": model(["r"], head="atr"), "two": model(["r", "f"], combine="add"),
                "two_atr": model(["r", "f"], head="atr", combine="add"), "flow_only_atr": model(["f"], head="atr"),
                "tsn": model(["t"])},
        fusions={"all": FusionParams(models=["plain", "with_atr", "two"], strategy="topk_logit", select_split="val")},
        paper_rows={"plain": "i3d_nl", "with_atr": "i3d_nl_atr", "two": "i3d_nl_rgb_flow",
                    "fusion-all": "ensemble_vision", "tsn": "tsn_resnet152"})
    maps = {"plain": 0.20, "with_atr": 0.21, "two": 0.25, "two_atr": 0.26, "flow_only_atr": 0.1, "tsn": 0.1,
            "fusion-all": 0.27, "baseline-prior": 0.05}
    evals = {name: {"val": {"mAP": m}} for name, m in maps.items()}
    found = {name: extends(name, params, evals, "val") for name in evals}
    assert found == {"plain": None, "with_atr": "plain", "two": "plain", "two_atr": "two", "flow_only_atr": None,
                     "tsn": None, "fusion-all": "two", "baseline-prior": None}
    rows = {row[0]: row for row in table1(evals, "val", params).rows}
    # Model, Network, Input, Modality, Operation, mAP, Extends, Δ, Paper row, Paper mAP, Paper Δ
    assert rows["with_atr"] == ["with_atr", "i3d_r50_nl", "(3, 8, 112, 112)", "RGB", "ATR", "21.00", "plain",
                                "+1.00", "i3d resnet50 + NL, ATR", "20.01", "+0.68"]   # the paper's 0.68
    assert rows["two"][2:5] == ["(3, 8(RGB)+8(Flow), 112, 112)", "RGB + Flow (TV-L1)", "add"]
    assert rows["two"][6:] == ["plain", "+5.00", "i3d resnet50 + NL, add", "21.66", "+2.33"]
    assert rows["fusion-all"][6:] == ["two", "+2.00", "Ensemble (Vision Only)", "25.63",
                                      f"{paper.TABLE1['ensemble_vision'].mAP - 21.66:+.2f}"]
    assert rows["tsn"][4] == "TSN" and rows["two_atr"][4] == "add, ATR"
    # when the best member changes, so does the row a fusion extends
    evals["plain"]["val"]["mAP"] = 0.3
    assert extends("fusion-all", params, evals, "val") == "plain"


def test_every_paper_row_that_a_row_extends_is_in_table1():
    for key, row in paper.TABLE1.items():
        assert row.extends is None or row.extends in paper.TABLE1, key
    assert paper.TABLE1["i3d_nl_atr"].mAP - paper.TABLE1["i3d_nl"].mAP == pytest.approx(0.68)  # paper IV


def test_stage_costs_come_from_the_benchmark_files(tmp_path):
    root = tmp_path / "benchmarks"
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    tables = {"frames/a.tsv": "1.5\t0:00:01\t100.0\t1\t1\t1\t0\t0\t50\t1.0\n",
              "frames/b.tsv": "2.5\t0:00:02\t300.0\t1\t1\t1\t0\t0\t50\t2.0\n",
              "detector_train.tsv": "10.0\t0:00:10\tNA\t1\t1\t1\t0\t0\t50\t19.0\n"}
    for name, row in tables.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(header + row)
    out = run_report(tmp_path, {"rgb": evaluation(0.6), "baseline-prior": evaluation(0.2)}, PARAMS,
                     "--benchmark-root", str(root))
    index = (out / "index.md").read_text()
    assert "| frames | 2 | 4.0 | 2.5 | 3.0 | 300 |" in index
    assert "| detector_train | 1 | 10.0 | 10.0 | 19.0 | 0 |" in index
    assert "| total | 3 | 14.0 | 10.0 | 22.0 | 300 |" in index
    assert "<td>frames</td>" in (out / files.PAGES["stages"]).read_text()
    (root / "frames/a.tsv").write_text("wall\n1\n")
    with pytest.raises(InputError, match=r"frames/a\.tsv:1: not a Snakemake benchmark file"):
        benchmarks.stage_costs([root / "frames/a.tsv"], root)


def test_contact_sheets_are_copied_and_shown(tmp_path):
    sheet = tmp_path / "visualize" / "vid_A.contact_sheet.png"
    sheet.parent.mkdir()
    sheet.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    out = run_report(tmp_path, {"rgb": evaluation(0.6), "baseline-prior": evaluation(0.2)}, PARAMS,
                     "--contact-sheets", str(sheet))
    assert (out / "vid_A.contact_sheet.png").read_bytes() == sheet.read_bytes()
    assert "![contact sheet](vid_A.contact_sheet.png)" in (out / "index.md").read_text()


def test_figures_show_full_class_names_and_a_colour_per_model(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(figures, "save", lambda fig, path: drawn.append(fig))
    names = [f"model_{i}" for i in range(12)]          # more models than tab10 has colours
    evals = {name: {"val": evaluation(0.3 + 0.01 * i)} for i, name in enumerate(names)}
    evals["baseline-prior"] = {"val": evaluation(0.1)}
    figures.plot_ap_per_class(evals, "val", LABELS, "baseline-prior", tmp_path / "ap.png")
    (fig,) = drawn
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["stand (10)", "talk to (e.g., self, a person, a group) (4)"]
    assert ax.get_xlabel() and ax.get_ylabel()
    legend = fig.legends[0]
    colors = [matplotlib.colors.to_hex(h.get_color()) for h in legend.legend_handles]
    assert len(colors) == 13 and len(set(colors)) == 13            # no colour used twice
    assert fig.get_figwidth() <= figures.PAGE_WIDTH_IN

    drawn.clear()
    figures.plot_pr_grid(evals["model_0"]["val"], evals["baseline-prior"]["val"], LABELS, "model_0", "val",
                         tmp_path / "pr.png")
    (fig,) = drawn
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == len(LABELS)                                # one small panel per class
    assert panels[1].get_title() == "talk to (e.g., self, a\nperson, a group)"   # whole name, wrapped
    assert all(len(ax.get_lines()) <= 2 for ax in panels)           # the model and the baseline, no more
