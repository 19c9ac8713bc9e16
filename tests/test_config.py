"""config.yaml passes its schema, and broken configs fail with the key that is wrong."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from pipeline.config import (ConfigError, ablation_params, audio_params, backbone_params, clip_context_s, dataset_params,
                             detector_params, evaluate_params, fill_defaults, flow_params, frames_params, fusion_params,
                             load_config, model_backbones,
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
        (lambda c: c["backbones"]["rgb_r3d"].update(weights="k.pyth", weights_layout="pyslowfast"),
         "backbones.rgb_r3d.weights_layout: weights layout 'pyslowfast' is for i3d_r50, i3d_r50_nl only"),
        (lambda c: c["backbones"]["rgb_r3d"].update(weights_layout="keras"), "weights_layout"),
        (lambda c: c["backbones"]["rgb_r3d"].update(roi_op="warp"), "roi_op"),
        (lambda c: c["models"]["rgb"].update(paper_row="i3d_typo"), r"models\.rgb\.paper_row: 'i3d_typo' is not a row"),
        (lambda c: c["fusions"]["full"].update(paper_row="x"), r"fusions\.full\.paper_row: .*ensemble_full"),
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
        (lambda c: c["backbones"]["audio_vgg"].update(roi_op="pool"), r"audio_vgg\.roi_op: does not apply"),
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
    epochs = config["backbones"]["rgb_r3d"]["finetune"]["epochs"]
    validate_config(config)
    assert config["backbones"]["rgb_r3d"]["roi_pool"] == "max"
    assert config["backbones"]["rgb_r3d"]["roi_op"] == "align"
    assert config["backbones"]["rgb_r3d"]["weights_layout"] == "torchvision"
    assert config["backbones"]["flow_r3d"]["context_frames"] == 1
    assert config["backbones"]["rgb_r3d"]["weights"] is None
    # the paper's recipe: SGD with momentum at a constant rate, batch norm trained, a linear head
    assert config["backbones"]["rgb_r3d"]["finetune"] == {
        "epochs": epochs, "lr": 0.001, "batch_size": 8, "weight_decay": 0.0001, "optimizer": "sgd", "momentum": 0.9,
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
    for backbone in ("i3d_nl_rgb", "i3d_nl_flow"):                    # Kinetics-pretrained, as the paper's
        params = backbone_params(config, backbone)
        assert params.weights_layout == "caffe2" and params.weights.endswith("_kinetics400.pt")
    for backbone in ("p3d_rgb", "p3d_flow"):
        params = backbone_params(config, backbone)
        assert params.weights_layout == "pseudo-3d-pytorch" and params.weights.endswith("_199.checkpoint.pth.tar")
    # every model and fusion names its row of the paper's Table I, for the report to put beside it
    rows = report_params(config, "baseline-prior").paper_rows
    assert set(rows) == set(config["models"]) | {f"fusion-{f}" for f in config["fusions"]}
    assert rows["i3d_nl_atr"] == "i3d_nl_atr" and rows["fusion-vision"] == "ensemble_vision"


def _leaves(node: Any, path: tuple = ()) -> Iterator[tuple]:
    """Every leaf's key path in a config (lists count as leaves)."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    else:
        yield path


CONFIG_FILES = ("config.yaml", "configs/ava_v2.1.yaml", "configs/ava_v2.2.yaml")


@functools.lru_cache(maxsize=None)
def _filled(name: str) -> str:
    return json.dumps(fill_defaults(yaml.safe_load((ROOT / name).read_text())))


def _config_leaves() -> list[tuple[str, tuple]]:
    return [(name, path) for name in CONFIG_FILES for path in _leaves(json.loads(_filled(name)))]


@pytest.mark.parametrize("name, path", _config_leaves(), ids=lambda v: ".".join(map(str, v)) if isinstance(v, tuple) else v)
def test_every_key_of_every_config_is_named_when_its_value_is_wrong(name, path):
    """An audit of every key the configs hold, defaults included: a value of the wrong kind is
    refused before any job runs, by a message that names the key's full path."""
    config = json.loads(_filled(name))
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = {"a wrong": "value"}
    with pytest.raises(ConfigError) as caught:
        validate_config(config, name)
    assert ".".join(map(str, path)) in str(caught.value)


def test_a_wrong_choice_names_the_allowed_values():
    config = copy.deepcopy(demo_config())
    config["fusions"]["mean"]["strategy"] = "median"
    with pytest.raises(ConfigError, match=r"fusions\.mean\.strategy: 'median' is not one of \['mean_prob'"):
        validate_config(config)


def test_paper_rows_reach_the_report_only():
    config = load_config(ROOT / "config.yaml")
    assert report_params(config, "baseline-prior").paper_rows["fusion-full"] == "ensemble_full"
    assert report_params(config, "baseline-prior").config["seed"] == config["seed"]
    without = copy.deepcopy(demo_config())
    for section in ("models", "fusions"):
        for entry in without[section].values():
            entry.pop("paper_row", None)
    without = validate_config(without)
    for name in config["models"]:   # naming a row changes no model's or fusion's params: only the report re-runs
        assert to_json(model_params(config, name)) == to_json(model_params(without, name))
    for name in config["fusions"]:
        assert to_json(fusion_params(config, name)) == to_json(fusion_params(without, name))
