"""The optimizers the config may name (``optimizer: sgd | adamw`` of a training section)."""

from __future__ import annotations

from typing import Iterable

import torch

OPTIMIZERS = ("sgd", "adamw")
MOMENTUM = 0.9


def make_optimizer(name: str, parameters: Iterable[torch.nn.Parameter], lr: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """SGD with momentum :data:`MOMENTUM`, or AdamW, over ``parameters``."""
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=MOMENTUM, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")
