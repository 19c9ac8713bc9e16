"""The training recipe of finetuning and heads: optimizer, learning-rate schedule, frozen batch norm."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from pipeline.models.optim import (batch_norm_eval, freeze_batch_norm_parameters, recipe_lr, recipe_optimizer)
from pipeline.params import TrainRecipe

RECIPE = TrainRecipe(epochs=4, lr=0.1, batch_size=8, weight_decay=0.0001, optimizer="sgd", momentum=0.9,
                     nesterov=False, schedule="constant", warmup_epochs=0.0, lr_steps=[], lr_step_factor=0.1)


def lrs(recipe: TrainRecipe, per_epoch: int = 10) -> list[float]:
    return [recipe_lr(recipe, i, per_epoch) for i in range(recipe.epochs * per_epoch)]


def test_constant_is_the_papers_invariant_rate():
    assert set(lrs(RECIPE)) == {0.1}


def test_warmup_rises_linearly_then_the_schedule_takes_over():
    got = lrs(dataclasses.replace(RECIPE, warmup_epochs=1.0))
    assert got[:10] == pytest.approx([0.01 * (i + 1) for i in range(10)])
    assert set(got[10:]) == {0.1}


def test_cosine_decays_from_lr_towards_zero():
    got = lrs(dataclasses.replace(RECIPE, schedule="cosine"))
    assert got[0] == pytest.approx(0.1)
    assert got[20] == pytest.approx(0.05, rel=0.05)          # half way
    assert all(a >= b for a, b in zip(got, got[1:]))
    assert got[-1] < 0.001


def test_steps_multiply_by_the_factor_after_each_step_epoch():
    got = lrs(dataclasses.replace(RECIPE, schedule="steps", lr_steps=[2, 3]))
    assert got[19] == pytest.approx(0.1) and got[20] == pytest.approx(0.01) and got[30] == pytest.approx(0.001)


def test_the_optimizer_is_the_recipes():
    model = nn.Linear(3, 2)
    sgd = recipe_optimizer(dataclasses.replace(RECIPE, nesterov=True), model.parameters())
    assert isinstance(sgd, torch.optim.SGD)
    assert (sgd.defaults["momentum"], sgd.defaults["nesterov"], sgd.defaults["weight_decay"]) == (0.9, True, 0.0001)
    adamw = recipe_optimizer(dataclasses.replace(RECIPE, optimizer="adamw"), model.parameters())
    assert isinstance(adamw, torch.optim.AdamW)


def test_frozen_batch_norm_keeps_statistics_and_affine_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(2, 3, 8, 8))
    bn = model[1]
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    freeze_batch_norm_parameters(model)
    optimizer = recipe_optimizer(RECIPE, model.parameters())
    assert not any(p is bn.weight or p is bn.bias for g in optimizer.param_groups for p in g["params"])
    conv_before = model[0].weight.detach().clone()
    for _ in range(3):
        model.train()
        batch_norm_eval(model)
        loss = model(torch.randn(4, 3, 8, 8) * 5 + 3).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for key, value in bn.state_dict().items():
        assert torch.equal(value, before[key]), key              # statistics and affine parameters as they were
    assert not torch.equal(model[0].weight, conv_before)        # while the rest trains
