"""Training the linear and actor-target relation heads on cached features."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.feature_store import Features
from pipeline.heads import head_logits
from pipeline.models.atr import outside_mask
from pipeline.params import ComputeParams, ModelParams, TrainRecipe
from pipeline.stages.head import train_head

torch.set_num_threads(1)


def toy_features(n_rows: int, roi_signal: bool, context_signal: bool, seed: int = 0) -> Features:
    """Rows on 4x4 context maps, one keyframe per row; each row's box covers the map's left half.

    Class 0 is readable from the ROI feature (its first dimension's sign) when ``roi_signal``;
    class 1 from the context outside the box (the sign of channel 0 in the right half) when
    ``context_signal``, while the left half (inside the box) holds a decoy of the opposite sign.
    """
    rng = np.random.default_rng(seed)
    dim = 8
    y0 = rng.random(n_rows) < 0.5
    y1 = rng.random(n_rows) < 0.5
    roi = rng.normal(size=(n_rows, dim)).astype(np.float32)
    if roi_signal:
        roi[:, 0] = np.where(y0, 2.0, -2.0) + 0.3 * rng.normal(size=n_rows)
    context = rng.normal(scale=0.3, size=(n_rows, dim, 4, 4)).astype(np.float32)
    if context_signal:
        sign = np.where(y1, 1.0, -1.0)[:, None, None]
        context[:, 0, :, 2:] += 2.0 * sign
        context[:, 0, :, :2] -= 2.0 * sign
    box = np.tile(np.array([[0.0, 0.0, 0.5, 1.0]], np.float32), (n_rows, 1))
    return Features(
        video_id=np.full(n_rows, "v"), box=box, box_t=np.arange(n_rows, dtype=np.int64),
        box_score=np.ones(n_rows, np.float32), box_source=np.zeros(n_rows, np.uint8),
        train_mask=np.ones(n_rows, bool), label=np.stack([y0, y1], axis=1).astype(np.uint8), roi=roi,
        context=context, frame_index=np.arange(n_rows, dtype=np.int64),
        attend=outside_mask(torch.from_numpy(box), 4, 4, 0.25, 0.25).numpy(),
    )


def params(head: str, epochs: int = 30) -> ModelParams:
    return ModelParams(backbones=["toy"], combine="concat", head=head, seed=0, compute=ComputeParams("cpu", "off", 0),
                       train=TrainRecipe(epochs=epochs, lr=0.01, batch_size=32, weight_decay=0.0, optimizer="adamw", momentum=0.9, nesterov=False, schedule="constant", warmup_epochs=0.0, lr_steps=[], lr_step_factor=0.1))


def accuracy(head, features: Features, column: int) -> float:
    with torch.no_grad():
        logits = head_logits(head, features, np.arange(len(features))).numpy()
    return float(((logits[:, column] > 0) == features.label[:, column].astype(bool)).mean())


def test_linear_head_loss_decreases_and_it_learns():
    train, test = toy_features(256, True, False), toy_features(128, True, False, seed=1)
    log = []
    head = train_head(train, params("linear"), log)
    assert [row["epoch"] for row in log] == list(range(1, 31))
    assert log[-1]["loss"] < 0.75 * log[0]["loss"]
    assert accuracy(head, test, 0) > 0.95


def test_atr_head_learns_from_outside_the_box_only():
    train, test = toy_features(384, False, True), toy_features(128, False, True, seed=1)
    log = []
    atr = train_head(train, params("atr", epochs=40), log)
    assert log[-1]["loss"] < 0.75 * log[0]["loss"]
    assert accuracy(atr, test, 1) > 0.9
    linear = train_head(train, params("linear", epochs=40))
    assert accuracy(linear, test, 1) < 0.7              # the ROI feature holds nothing of it


def test_only_train_mask_rows_are_used():
    features = toy_features(64, True, False)
    features.train_mask[:] = False
    features.train_mask[:8] = True
    features.label[8:] = 1 - features.label[8:]           # would be contradicting if they were used
    head = train_head(features, params("linear", epochs=60))
    with torch.no_grad():
        logits = head_logits(head, features, np.arange(8)).numpy()
    assert ((logits[:, 0] > 0) == features.label[:8, 0].astype(bool)).mean() >= 0.85
