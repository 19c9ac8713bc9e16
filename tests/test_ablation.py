"""The ablation stage: heads retrained per seed on cached features, their figures and spreads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.ablation import spread, summarize
from pipeline.ava.formats import AvaRows, LabelMap, write_ground_truth, write_label_map
from pipeline.feature_store import FeatureRows, write_features
from pipeline.params import AblationParams, ComputeParams, EvaluateParams, FusionParams, ModelParams, TrainRecipe, to_json
from pipeline.stages import ablation

LABEL_MAP = LabelMap(ids=(12, 79, 80), names=("stand", "talk to", "listen to"),
                     label_types=("PERSON_MOVEMENT", "PERSON_INTERACTION", "PERSON_INTERACTION"))


def write_split(root, split: str, seed: int) -> tuple[list[str], AvaRows]:
    """Two videos of 6 keyframes; per keyframe a ground-truth person (standing; talking when the ROI says
    so) and its detection, shifted a little."""
    rng = np.random.default_rng(seed)
    paths, gt_rows = [], []
    for v in range(2):
        vid = f"{split}{v}"
        times = np.arange(902, 908)
        talk = rng.random(len(times)) < 0.5
        gt_box = np.array([0.1, 0.1, 0.5, 0.9], np.float32)
        boxes = np.stack([gt_box, gt_box + 0.01] * len(times)).astype(np.float32)
        box_t = np.repeat(times, 2)
        labels = np.zeros((len(box_t), 3), np.uint8)
        labels[:, 0] = 1
        labels[:, 1] = np.repeat(talk, 2)
        source = np.tile(np.array([0, 1], np.uint8), len(times))
        rows = FeatureRows(AvaRows([vid] * len(box_t), box_t, boxes, score=np.ones(len(box_t), np.float32)),
                           labels, source, np.ones(len(box_t), bool))
        roi = rng.normal(size=(len(box_t), 4)).astype(np.float32)
        roi[:, 0] += 3 * np.repeat(talk, 2)
        path = root / f"{vid}.h5"
        write_features(path, vid, times, rows, roi, rng.normal(size=(len(times), 4, 2, 3, 3)).astype(np.float32),
                       (48, 48), 16, LABEL_MAP, {})
        paths.append(str(path))
        for t, is_talk in zip(times, talk):
            gt_rows += [(vid, t, gt_box, 12)] + ([(vid, t, gt_box, 79)] if is_talk else [])
    gt = AvaRows(video_id=[r[0] for r in gt_rows], timestamp=[r[1] for r in gt_rows],
                 box=np.stack([r[2] for r in gt_rows]), action_id=[r[3] for r in gt_rows],
                 person_id=[0] * len(gt_rows))
    return paths, gt


def model(head: str) -> ModelParams:
    return ModelParams(backbones=["b"], combine="concat", head=head, seed=0, compute=ComputeParams("cpu", "off", 0),
                       train=TrainRecipe(epochs=5, lr=0.05, batch_size=8, weight_decay=0.0, optimizer="adamw",
                                         momentum=0.9, nesterov=False, schedule="constant", warmup_epochs=0.0,
                                         lr_steps=[], lr_step_factor=0.1))


def test_the_stage_retrains_every_model_per_seed_and_reports_the_spread(tmp_path):
    train, _ = write_split(tmp_path, "train", 0)
    held, gt = write_split(tmp_path, "val", 1)
    write_label_map(tmp_path / "lm.pbtxt", LABEL_MAP)
    write_ground_truth(tmp_path / "val.csv", gt)
    params = AblationParams(
        seeds=[0, 1], models={"lin": model("linear"), "atr": model("atr")},
        fusions={"k": FusionParams(["lin", "atr"], "topk_logit", "val"),
                 "box": FusionParams(["lin", "atr"], "topk_box_logit", None)},
        compare=[["atr", "lin"]], label_type="PERSON_INTERACTION", split="val",
        evaluate=EvaluateParams(iou=0.5, capacity=50, variant="2019"))
    out, md = tmp_path / "summary.json", tmp_path / "summary.md"
    assert ablation.main(["--train", "b", *train, "--held", "b", *held, "--label-map", str(tmp_path / "lm.pbtxt"),
                          "--ground-truth", str(tmp_path / "val.csv"), "--out", str(out), "--markdown", str(md),
                          "--params", to_json(params)]) == 0
    summary = json.loads(out.read_text())
    assert summary["seeds"] == [0, 1]
    assert set(summary["table"]) == {"lin", "atr", "fusion-k", "fusion-box"}
    lin = summary["table"]["lin"]
    assert lin["type_mAP"]["seeds"][0] > 0.5                        # the ROI says who talks
    assert lin["per_class"]["80"]["mean"] is None                     # no one listens in this ground truth
    diff = summary["compare"][0]["type_mAP_diff"]["seeds"]
    assert diff == pytest.approx([a - b for a, b in zip(summary["table"]["atr"]["type_mAP"]["seeds"],
                                                         lin["type_mAP"]["seeds"])])
    gain = summary["fusions"]["k"]["gain_over_best_member"]["seeds"]
    best = [max(summary["table"][m]["mAP"]["seeds"][i] for m in ("lin", "atr")) for i in range(2)]
    assert gain == pytest.approx([f - b for f, b in zip(summary["table"]["fusion-k"]["mAP"]["seeds"], best)])
    text = md.read_text()
    assert "| atr |" in text and "atr against lin" in text and "fusion-box (topk_box_logit" in text


def test_spread_is_the_mean_and_sample_deviation_of_the_values_that_exist():
    got = spread([0.1, None, 0.3])
    assert got["mean"] == pytest.approx(0.2) and got["sd"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert spread([None])["mean"] is None


def test_summarize_counts_the_seeds_where_the_model_is_better():
    per_seed = {s: {"a": {"mAP": 0.5, "type_mAP": t, "per_class": {}}, "b": {"mAP": 0.4, "type_mAP": 0.3,
                                                                              "per_class": {}}}
                for s, t in ((0, 0.4), (1, 0.2), (2, 0.35))}
    summary = summarize(per_seed, [["a", "b"]], {})
    assert summary["compare"][0]["seeds_better"] == 2
    assert summary["compare"][0]["type_mAP_diff"]["mean"] == pytest.approx((0.1 - 0.1 + 0.05) / 3)
