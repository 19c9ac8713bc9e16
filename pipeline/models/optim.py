"""The optimizers and learning-rate schedules the config may name (a training section's
``optimizer: sgd | adamw``, and for finetuning and heads ``momentum``, ``nesterov``, ``schedule``,
``warmup_epochs``, ``lr_steps``), and frozen batch norm."""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from pipeline.params import TrainRecipe

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "cosine", "steps")
MOMENTUM = 0.9


def make_optimizer(name: str, parameters: Iterable[torch.nn.Parameter], lr: float,
                   weight_decay: float, momentum: float = MOMENTUM, nesterov: bool = False) -> torch.optim.Optimizer:
    """SGD with ``momentum`` (Nesterov's with ``nesterov``), or AdamW, over ``parameters``."""
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=nesterov and momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")


def recipe_optimizer(recipe: TrainRecipe, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer of a finetuning or head recipe, over the ``parameters`` that require a gradient."""
    trained = [p for p in parameters if p.requires_grad]
    return make_optimizer(recipe.optimizer, trained, recipe.lr, recipe.weight_decay, recipe.momentum,
                          recipe.nesterov)


def recipe_lr(recipe: TrainRecipe, iteration: int, per_epoch: int) -> float:
    """The learning rate at ``iteration`` (0-based, over the whole training) of ``per_epoch`` steps
    per epoch: linear warmup from ``lr / warmup steps`` to ``lr`` over ``warmup_epochs``, then
    ``constant``, ``cosine`` (half a cosine from lr to 0 at the end of the last epoch) or ``steps``
    (``lr * lr_step_factor ** j`` after the j-th epoch of ``lr_steps``)."""
    if recipe.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {recipe.schedule!r}; expected one of {', '.join(SCHEDULES)}")
    per_epoch = max(1, per_epoch)
    warmup = int(round(recipe.warmup_epochs * per_epoch))
    if iteration < warmup:
        return recipe.lr * (iteration + 1) / warmup
    if recipe.schedule == "constant":
        return recipe.lr
    if recipe.schedule == "cosine":
        total = recipe.epochs * per_epoch
        done = (iteration - warmup) / max(1, total - warmup)
        return recipe.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))
    passed = sum(1 for step in recipe.lr_steps if iteration >= step * per_epoch)
    return recipe.lr * recipe.lr_step_factor ** passed


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def is_batch_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def freeze_batch_norm_parameters(model: nn.Module) -> None:
    """Stop the gradient of every batch norm's scale and shift (Detectron's frozen BN; the
    statistics are kept by :func:`batch_norm_eval` after each ``model.train()``)."""
    for module in model.modules():
        if is_batch_norm(module):
            for parameter in module.parameters(recurse=False):
                parameter.requires_grad_(False)


def batch_norm_eval(model: nn.Module) -> None:
    """Every batch norm of ``model`` in eval mode: it normalizes with its (pretrained) running
    statistics and leaves them as they are. Call after ``model.train()``."""
    for module in model.modules():
        if is_batch_norm(module):
            module.eval()
