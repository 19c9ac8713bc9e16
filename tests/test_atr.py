"""The actor-target relation through space and time: it attends to every time bin of the context
map outside the box, never inside it, and trains end to end with the backbone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.models.atr import AtrActionClassifier, AtrHead, outside_mask, pixel_outside_mask, time_bins
from pipeline.models.optim import freeze_batch_norm_parameters
from pipeline.models.registry import build_action_model

torch.set_num_threads(1)


def relation_inputs(frames: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    roi = torch.randn(4, 8, generator=generator)
    context = torch.randn(2, 8, frames, 4, 4, generator=generator)
    boxes = torch.tensor([[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 0.5], [0.25, 0.25, 0.75, 0.75], [0.0, 0.0, 1.0, 1.0]])
    attend = outside_mask(boxes, 4, 4, 0.25, 0.25)
    return roi, context, torch.tensor([0, 0, 1, 1]), attend


def trained_head() -> AtrHead:
    torch.manual_seed(0)
    head = AtrHead(8, 8, 3)
    torch.nn.init.normal_(head.out.weight)     # a relation that is not zero
    return head.eval()


def test_the_relation_does_not_change_when_the_features_inside_the_box_change():
    head = trained_head()
    roi, context, frame_index, attend = relation_inputs()
    before = head.relation(roi, context, frame_index, attend)
    for row in range(3):
        changed = context.clone()
        inside = ~attend[row]                                   # [h, w], at every time bin
        changed[frame_index[row], :, :, inside] = 1e3 * torch.randn(changed.shape[1], changed.shape[2], int(inside.sum()))
        after = head.relation(roi, changed, frame_index, attend)
        assert torch.equal(after[row], before[row]), row
    # ... while a change outside the box, at one time bin only, does change it: the relation sees time
    changed = context.clone()
    changed[0, :, 2, :, 3] += 5.0                             # column 3 (outside row 0's box), last time bin
    assert not torch.allclose(head.relation(roi, changed, frame_index, attend)[0], before[0])


def test_a_box_that_covers_the_whole_map_attends_to_nothing():
    head = trained_head()
    roi, context, frame_index, attend = relation_inputs()
    assert torch.equal(head.relation(roi, context, frame_index, attend)[3], torch.zeros(8))


def test_time_bins_average_the_map_in_equal_parts():
    feature_map = torch.arange(8, dtype=torch.float32).reshape(1, 1, 8, 1, 1).expand(1, 1, 8, 2, 2)
    np.testing.assert_allclose(time_bins(feature_map, 4)[0, 0, :, 0, 0].numpy(), [0.5, 2.5, 4.5, 6.5])
    assert time_bins(feature_map, 20).shape[2] == 8          # never more bins than the map has


def test_pixel_boxes_give_the_masks_of_normalized_boxes():
    rois = torch.tensor([[0, 0.0, 0.0, 32.0, 64.0], [1, 32.0, 16.0, 64.0, 48.0]])
    got = pixel_outside_mask(rois, (64, 64), (4, 4), 16)
    expected = outside_mask(torch.tensor([[0.0, 0.0, 0.5, 1.0], [0.5, 0.25, 1.0, 0.75]]), 4, 4, 0.25, 0.25)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("freeze_bn", [False, True])
def test_the_atr_trains_end_to_end_with_the_backbone(freeze_bn):
    torch.manual_seed(0)
    model = build_action_model("r3d_tiny", "rgb", 3, 3, "max", head="atr", context_frames=2)
    assert isinstance(model, AtrActionClassifier) and isinstance(model.head, AtrHead)
    if freeze_bn:
        freeze_batch_norm_parameters(model)
    clips = torch.randn(2, 3, 4, 32, 32)
    rois = torch.tensor([[0, 2.0, 2.0, 16.0, 30.0], [1, 10.0, 4.0, 30.0, 30.0], [1, 0.0, 0.0, 12.0, 12.0]])
    torch.nn.init.normal_(model.head.out.weight, std=0.1)   # let the gradient pass through the relation
    logits = model(clips, rois)
    assert logits.shape == (3, 3)
    logits.sum().backward()
    assert model.head.key.weight.grad.abs().sum() > 0        # the relation learns
    trained = [p for p in model.backbone.parameters() if p.requires_grad]
    assert trained and all(p.grad is not None for p in trained)   # and the backbone under it


def test_an_audio_backbone_has_no_atr():
    with pytest.raises(ValueError, match="picture"):
        build_action_model("vgg_tiny", "audio", 3, None, "max", head="atr")
