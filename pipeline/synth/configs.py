"""Pipeline configs for the synthetic datasets: the demo's ``config.yaml`` scaled to the tiny one.

The end-to-end tests, the SLURM test and ``bench/variance.py`` run the whole DAG on the tiny
dataset with this config: the demo's keys and code paths, at a size that runs in minutes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any


def tiny_config(demo_config: dict[str, Any], data_dir: str | Path) -> dict[str, Any]:
    """A copy of ``demo_config`` (``config.yaml``) for the tiny dataset at ``data_dir``."""
    config = copy.deepcopy(demo_config)
    config["dataset"]["root"] = str(data_dir)
    config["frames"]["short_side"] = 120
    config["detect"]["min_size"] = 120
    # 50 epochs of 18 keyframes (about 70 s): the detector finds 25 of the 30 val persons (2 epochs found
    # none, and every model then scored 0). A low threshold gives the later stages its weaker boxes too.
    config["detect"]["train"]["epochs"] = 50
    config["detect"]["score_threshold"] = 0.05
    for backbone in config["backbones"].values():
        if backbone["modality"] != "audio":
            backbone["input_size"] = 64
        backbone["finetune"]["epochs"] = 1
    for model in config["models"].values():
        model["train"]["epochs"] = 5
    return config
