"""The report puts every model beside the baseline and draws its figures."""

from __future__ import annotations

import json

from pipeline.ava import formats
from pipeline.params import (BackboneParams, ComputeParams, FusionParams, ModelParams, ReportParams, FinetuneRecipe, TrainRecipe,
                             to_json)
from pipeline.stages import report

LABELS = formats.LabelMap(ids=(12, 79), names=("stand", "talk to"), label_types=("PERSON_MOVEMENT", "PERSON_INTERACTION"))
CPU = ComputeParams("cpu", "off", 0)
RECIPE = dict(epochs=1, lr=0.01, batch_size=8, weight_decay=0.0, optimizer="adamw", momentum=0.9, nesterov=False,
              schedule="constant", warmup_epochs=0.0, lr_steps=[], lr_step_factor=0.1)
TRAIN = FinetuneRecipe(**RECIPE, freeze_bn=False, head="linear")
PARAMS = ReportParams(
    baseline="baseline-prior", eval_splits=["val"],
    backbones={"b": BackboneParams(arch="r3d_tiny", modality="rgb", clip_frames=8, clip_stride=1, input_size=112,
                                   roi_size=7, roi_pool="max", context_frames=1, weights=None, finetune=TRAIN, seed=0,
                                   train_box_iou=0.5, dropout=0.3, compute=CPU)},
    models={"rgb": ModelParams(backbones=["b"], combine="concat", head="linear", train=TrainRecipe(**RECIPE), seed=0,
                            compute=CPU)},
    fusions={"mean": FusionParams(models=["rgb", "flow"], strategy="mean_prob", select_split=None)},
)


def evaluation(m: float) -> dict:
    return {"mAP": m, "per_class": {"12": m + 0.1, "79": m - 0.1},
            "per_type": {"PERSON_MOVEMENT": m + 0.1, "PERSON_INTERACTION": m - 0.1},
            "n_gt": {"12": 10, "79": 4},
            "pr": {"12": {"precision": [1.0, 0.5], "recall": [0.5, 1.0]}, "79": {"precision": [], "recall": []}}}


def test_report_tables_and_figures(tmp_path):
    paths = []
    for model, m in (("rgb", 0.6), ("fusion-mean", 0.7), ("baseline-prior", 0.2)):
        path = tmp_path / "eval" / model / "val.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(evaluation(m)))
        paths.append(str(path))
    metrics = tmp_path / "val.metrics.json"
    metrics.write_text(json.dumps({"recall": 0.95, "precision": 0.8, "ap50": 0.9}))
    out = tmp_path / "report"
    pbtxt = tmp_path / "labels.pbtxt"
    formats.write_label_map(pbtxt, LABELS)
    assert report.main(["--evaluations", *paths, "--detect-metrics", str(metrics), "--label-map", str(pbtxt),
                        "--out", str(out / "index.md"), "--params", to_json(PARAMS)]) == 0
    index = (out / "index.md").read_text()
    assert "| rgb | rgb | r3d_tiny, linear head | 60.00 | +40.00 |" in index
    assert "| fusion-mean | rgb + flow | fusion: mean_prob | 70.00 | +50.00 |" in index
    assert "| val | 95.00 | 80.00 | 90.00 |" in index
    assert "| 79 | talk to | 4 | 50.00 | 60.00 | 10.00 |" in index
    assert "| rgb | (3, 8, 112, 112) | rgb | r3d_tiny, linear head | 60.00 |" in (out / "table1.md").read_text()
    for png in ("ap_per_class_val.png", "pr_best_val.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
