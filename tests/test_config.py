"""config.yaml passes its schema, and broken configs fail with the key that is wrong."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, load_config, validate_config

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
    ],
)
def test_broken_configs_name_the_key(mutate, expected):
    config = copy.deepcopy(demo_config())
    mutate(config)
    with pytest.raises(ConfigError, match=expected):
        validate_config(config)
