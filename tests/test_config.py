"""config.yaml passes its schema, and broken configs fail with the key that is wrong."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from pipeline.config import (ConfigError, ablation_params, audio_params, backbone_params, clip_context_s, dataset_params, detector_params,
                             evaluate_params, flow_params, frames_params, fusion_params, load_config, model_backbones,
                             model_params, report_params, validate_config)
from pipeline.params import BackboneParams, ParamsError, parse_params, to_json

ROOT = Path(__file__).resolve().parent.parent


def demo_config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_demo_config_is_valid():
    load_config(ROOT / "config.yaml")


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["flow"].update(bound=-1), "flow.bound"),
        (lambda c: c["frames"].update(window="some"), "frames.window"),
        (lambda c: c["detect"].pop("arch"), "detect"),
        (lambda c: c.update(unknown_key=1), "unknown_key"),
        (lambda c: c["models"]["rgb"].update(backbone="nope"), "models.rgb.backbone"),
        (lambda c: c["fusions"]["mean"].update(models=["rgb", "ghost"]), "ghost"),
        (lambda c: c["dataset"].update(eval_splits=["test"]), "test"),
        (lambda c: c["flow"].update(methods=["tvl1"]), "farneback"),
        (lambda c: c["fusions"]["full"].update(select_on="train2"), "fusions.full.select_on"),
        (lambda c: c["ablation"].update(compare=[["rgb_atr", "ghost"]]), "ablation.compare names 'ghost'"),
        (lambda c: c["ablation"].update(fusions=["nope"]), "ablation.fusions"),
        (lambda c: c["backbones"]["audio_vgg"]["finetune"].update(head="atr"), "audio_vgg.finetune.head"),
        (lambda c: c["models"]["rgb"]["train"].update(schedule="linear"), "schedule"),
    ],
)
def test_broken_configs_name_the_key(mutate, expected):
    config = copy.deepcopy(demo_config())
    mutate(config)
    with pytest.raises(ConfigError, match=expected):
        validate_config(config)


def test_clip_context_covers_the_longest_clip_of_each_modality():
    config = {"frames": {"fps": 10.0}, "backbones": {
        "rgb": {"modality": "rgb", "clip_frames": 8, "clip_stride": 2},        # spans 16 frames
        "flow": {"modality": "flow/tvl1", "clip_frames": 8, "clip_stride": 1},  # spans 8 pairs
    }}
    assert clip_context_s(config) == pytest.approx((8 + 1) / 10)             # frames serve both
    assert clip_context_s(config, "rgb") == pytest.approx((8 + 1) / 10)
    assert clip_context_s(config, "flow/tvl1") == pytest.approx((4 + 1) / 10)
    assert clip_context_s(config, "flow/farneback") == clip_context_s(config)  # read by no backbone


def test_audio_backbone_needs_an_audio_arch_no_clip_keys_and_a_linear_head():
    config = demo_config()
    config["backbones"]["audio_vgg"] = {"arch": "vgg_tiny", "modality": "audio",
                                        "finetune": {"epochs": 1, "lr": 0.001, "batch_size": 8}}
    config["models"]["audio"] = {"backbone": "audio_vgg", "head": "linear",
                                 "train": {"epochs": 1, "lr": 0.01, "batch_size": 8}}
    validate_config(config)
    assert clip_context_s(config) == clip_context_s(demo_config())   # audio reads no frames
    for mutate, expected in [
        (lambda c: c["backbones"]["audio_vgg"].update(clip_frames=8), r"audio_vgg\.clip_frames: does not apply"),
        (lambda c: c["backbones"]["audio_vgg"].update(arch="r3d_tiny"), "'r3d_tiny' does not read 'audio'"),
        (lambda c: c["backbones"]["rgb_r3d"].update(arch="vgg16"), "'vgg16' does not read 'rgb'"),
        (lambda c: c["models"]["audio"].update(head="atr"), r"models\.audio: the atr head"),
        (lambda c: c["backbones"]["rgb_r3d"].pop("input_size"), "rgb_r3d: 'input_size' is a required property"),
    ]:
        broken = copy.deepcopy(config)
        mutate(broken)
        with pytest.raises(ConfigError, match=expected):
            validate_config(broken)


def test_a_model_may_combine_the_features_of_several_backbones():
    config = demo_config()
    config["models"]["both"] = {"backbones": ["rgb_r3d", "flow_r3d"], "combine": "add", "head": "linear",
                                "train": {"epochs": 1, "lr": 0.01, "batch_size": 8}}
    validate_config(config)
    assert model_backbones(config["models"]["both"]) == ["rgb_r3d", "flow_r3d"]
    assert model_backbones(config["models"]["rgb"]) == ["rgb_r3d"]
    for mutate, expected in [
        (lambda m: m.update(backbones=["rgb_r3d", "nope"]), r"models\.both\.backbones names 'nope'"),
        (lambda m: m.update(backbone="rgb_r3d"), r"models\.both: .* is valid under each of"),
        (lambda m: m.update(backbones=["rgb_r3d"]), "should be non-empty|is too short"),
        (lambda m: m.update(combine="multiply"), "'multiply' is not one of"),
    ]:
        broken = copy.deepcopy(config)
        mutate(broken["models"]["both"])
        with pytest.raises(ConfigError, match=expected):
            validate_config(broken)
    single = copy.deepcopy(config)
    single["models"]["rgb"]["combine"] = "concat"
    with pytest.raises(ConfigError, match=r"models\.rgb\.combine needs backbones"):
        validate_config(single)


def test_the_schema_fills_in_every_default():
    config = demo_config()
    del config["backbones"]["rgb_r3d"]["finetune"]["weight_decay"]
    del config["backbones"]["rgb_r3d"]["finetune"]["optimizer"]
    del config["flow"]["tvl1"]["tau"]
    validate_config(config)
    assert config["backbones"]["rgb_r3d"]["roi_pool"] == "max"
    assert config["backbones"]["flow_r3d"]["context_frames"] == 1
    assert config["backbones"]["rgb_r3d"]["weights"] is None
    # the paper's recipe: SGD with momentum at a constant rate, batch norm trained, a linear head
    assert config["backbones"]["rgb_r3d"]["finetune"] == {
        "epochs": 12, "lr": 0.001, "batch_size": 8, "weight_decay": 0.0001, "optimizer": "sgd", "momentum": 0.9,
        "nesterov": False, "schedule": "constant", "warmup_epochs": 0, "lr_steps": [], "lr_step_factor": 0.1,
        "freeze_bn": False, "head": "linear"}
    assert config["detect"]["max_size"] is None
    assert config["flow"]["tvl1"]["tau"] == 0.25                      # OpenCV's default, from the schema
    assert config["flow"]["farneback"]["flags"] == 0
    assert config["models"]["rgb"]["combine"] == "concat"
    assert config["models"]["rgb"]["train"]["optimizer"] == "adamw"


def test_every_stage_gets_typed_params_that_survive_their_json():
    config = load_config(ROOT / "config.yaml")
    built = [
        dataset_params(config), frames_params(config), flow_params(config, "farneback"), audio_params(config),
        detector_params(config), backbone_params(config, "rgb_r3d"), backbone_params(config, "audio_vgg"),
        model_params(config, "rgb_flow"), fusion_params(config, "full"), evaluate_params(config),
        ablation_params(config),
        report_params(config, "baseline-prior"),
    ]
    for params in built:
        assert parse_params(type(params), to_json(params)) == params
    assert detector_params(config).seed == config["seed"]
    assert backbone_params(config, "rgb_r3d").train_box_iou == config["detect"]["train_box_iou"]
    assert backbone_params(config, "audio_vgg").clip_frames is None
    assert model_params(config, "rgb").backbones == ["rgb_r3d"]
    assert flow_params(config, "farneback").options == config["flow"]["farneback"]
    assert frames_params(config).context_s == pytest.approx(clip_context_s(config))
    config["frames"]["window"] = "all"
    assert frames_params(config).context_s is None


def test_params_json_names_what_is_missing_unknown_or_mistyped():
    config = load_config(ROOT / "config.yaml")
    data = json.loads(to_json(backbone_params(config, "rgb_r3d")))
    with pytest.raises(ParamsError, match=r"BackboneParams: missing \['seed'\]"):
        parse_params(BackboneParams, json.dumps({k: v for k, v in data.items() if k != "seed"}))
    with pytest.raises(ParamsError, match=r"unknown \['typo'\]"):
        parse_params(BackboneParams, json.dumps({**data, "typo": 1}))
    with pytest.raises(ParamsError, match=r"BackboneParams\.finetune\.epochs: expected int"):
        parse_params(BackboneParams, json.dumps({**data, "finetune": {**data["finetune"], "epochs": "12"}}))


@pytest.mark.parametrize("name", ["ava_v2.1.yaml", "ava_v2.2.yaml"])
def test_the_ava_configs_are_valid_and_give_every_stage_its_params(name):
    config = load_config(ROOT / "configs" / name)
    for backbone in config["backbones"]:
        recipe = backbone_params(config, backbone).finetune
        assert (recipe.optimizer, recipe.momentum, recipe.schedule, recipe.lr, recipe.epochs, recipe.batch_size,
                recipe.freeze_bn) == ("sgd", 0.9, "constant", 0.001, 5, 16, True)
    for model in config["models"]:
        train = model_params(config, model).train
        assert (train.optimizer, train.momentum, train.schedule, train.lr) == ("sgd", 0.9, "constant", 0.001)
    assert {f: fusion_params(config, f).strategy for f in config["fusions"]} == {"vision": "topk_logit",
                                                                                "full": "topk_logit"}
    assert config["compute"]["gpus"]["finetune"] == 8                 # the paper's 8 GPUs per training
