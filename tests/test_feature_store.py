"""Feature stores read lazily: the same rows, maps and masks as read at once, a linear head never
reads a context map, and heads train to the same weights either way."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.ava.formats import AvaRows, LabelMap
from pipeline.feature_store import (FeatureRows, LazyRows, combine_features, read_features, read_model_features,
                                    write_features)
from pipeline.heads import row_logits, train_head
from pipeline.params import ComputeParams, ModelParams, TrainRecipe

torch.set_num_threads(1)

LABEL_MAP = LabelMap(ids=(3, 12), names=("stand", "talk"), label_types=("PERSON_MOVEMENT", "PERSON_INTERACTION"))
DIM = 6


def write_video(path, vid: str, seed: int, map_hw: tuple[int, int], frames: int = 0) -> None:
    """A features file of 3 keyframes, 2 ground-truth rows each and a detection; maps of ``map_hw``
    (with ``frames`` time bins when > 0)."""
    rng = np.random.default_rng(seed)
    times = np.array([902, 903, 904])
    box_t = np.repeat(times, 3)
    boxes = np.tile(np.array([[0.0, 0.0, 0.5, 1.0], [0.5, 0.2, 1.0, 0.9], [0.2, 0.2, 0.6, 0.6]], np.float32), (3, 1))
    source = np.tile(np.array([0, 0, 1], np.uint8), 3)
    labels = rng.integers(0, 2, size=(9, 2)).astype(np.uint8) * (source == 0)[:, None]
    rows = FeatureRows(AvaRows([vid] * 9, box_t, boxes, score=np.ones(9, np.float32)), labels, source, source == 0)
    shape = (3, DIM, frames, *map_hw) if frames else (3, DIM, *map_hw)
    write_features(path, vid, times, rows, rng.normal(size=(9, DIM)).astype(np.float32),
                   rng.normal(size=shape).astype(np.float32), input_hw=(16 * map_hw[0], 16 * map_hw[1]),
                   spatial_stride=16, label_map=LABEL_MAP, params={})


def model(head: str, combine: str = "concat", backbones=("a",)) -> ModelParams:
    recipe = TrainRecipe(epochs=3, lr=0.01, batch_size=4, weight_decay=0.0, optimizer="sgd", momentum=0.9,
                         nesterov=True, schedule="cosine", warmup_epochs=1.0, lr_steps=[], lr_step_factor=0.1)
    return ModelParams(backbones=list(backbones), combine=combine, head=head, train=recipe, seed=0,
                       compute=ComputeParams("cpu", "off", 0))


@pytest.fixture(params=[0, 3], ids=["time-averaged", "3-time-bins"])
def files(request, tmp_path):
    paths = [tmp_path / "a.h5", tmp_path / "b.h5"]
    write_video(paths[0], "a", 0, (3, 4), request.param)
    write_video(paths[1], "b", 1, (2, 4), request.param)     # a smaller map: padded
    return paths


def test_lazy_reads_give_what_reading_at_once_gives(files):
    eager = read_features(files, LABEL_MAP)
    lazy = read_features(files, LABEL_MAP, cache_bytes=0)
    assert isinstance(eager.roi, np.ndarray) and isinstance(lazy.roi, LazyRows)
    for name in ("roi", "context", "attend"):
        np.testing.assert_array_equal(np.asarray(getattr(lazy, name)), getattr(eager, name), err_msg=name)
    index = np.array([8, 1, 10, 1])                  # unsorted, repeated, across both files
    np.testing.assert_array_equal(lazy.roi[index], eager.roi[index])
    np.testing.assert_array_equal(lazy.attend[index], eager.attend[index])
    np.testing.assert_array_equal(lazy.context[np.array([4, 0])], eager.context[[4, 0]])
    assert lazy.context.shape == eager.context.shape


def test_a_linear_head_never_reads_a_context_map_and_trains_as_from_memory(files):
    eager = read_features(files, LABEL_MAP)
    lazy = read_features(files, LABEL_MAP, cache_bytes=0)
    a, b = train_head(eager, model("linear")), train_head(lazy, model("linear"))
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    assert lazy.context._files == {}                # no context file was opened
    rows = np.flatnonzero(lazy.box_source == 1)
    np.testing.assert_array_equal(row_logits(b, lazy, rows), row_logits(a, eager, rows))


def test_an_atr_head_trains_on_lazy_maps_as_from_memory(files):
    eager = read_features(files, LABEL_MAP)
    lazy = read_features(files, LABEL_MAP, cache_bytes=0)
    a, b = train_head(eager, model("atr")), train_head(lazy, model("atr"))
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-6), name
    assert lazy.context._files != {}
    rows = np.arange(len(lazy))
    np.testing.assert_allclose(row_logits(b, lazy, rows), row_logits(a, eager, rows), atol=1e-5)


@pytest.mark.parametrize("combine", ["add", "concat"])
def test_combined_lazy_features_are_the_combined_features(files, combine):
    groups = [[str(p) for p in files]] * 2
    eager = read_model_features(groups, LABEL_MAP, model("atr", combine, ("a", "b")))
    parts = [read_features(g, LABEL_MAP, cache_bytes=0) for g in groups]
    lazy = combine_features(parts, combine, with_context=True)
    np.testing.assert_allclose(np.asarray(lazy.roi), eager.roi, rtol=1e-6)
    np.testing.assert_allclose(lazy.context[np.array([1, 3])], eager.context[[1, 3]], rtol=1e-6)
    narrow = dataclasses.replace(parts[1], roi=np.zeros((len(parts[1]), 2), np.float32))
    if combine == "add":
        with pytest.raises(ValueError, match="add needs ROI features of one shape"):
            combine_features([parts[0], narrow], "add", with_context=False)
