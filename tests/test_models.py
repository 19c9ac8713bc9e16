"""Backbones, the ROI head and the actor-target relation."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from pipeline.models.atr import AtrHead, outside_mask
from pipeline.models.registry import AUDIO_ARCHS, VIDEO_ARCHS, build_backbone, build_head, modality_channels
from pipeline.models.roi_head import ActionClassifier, KeyframePooling, LinearHead, RoiFeatures

torch.set_num_threads(1)


@pytest.mark.parametrize("arch", VIDEO_ARCHS)
@pytest.mark.parametrize("modality", ["rgb", "flow/tvl1"])
def test_backbone_shapes(arch, modality):
    torch.manual_seed(0)
    net = build_backbone(arch, modality).eval()
    x = torch.randn(1, modality_channels(modality), 8, 64, 96)
    with torch.no_grad():
        y = net(x)
    assert y.shape[:2] == (1, net.out_channels)
    assert y.shape[3:] == (math.ceil(64 / net.spatial_stride), math.ceil(96 / net.spatial_stride))
    assert 1 <= y.shape[2] <= 8
    assert torch.isfinite(y).all()


def test_i3d_inflated_from_resnet50_sees_a_still_clip_as_the_2d_network_does(tmp_path):
    from torchvision.models import resnet50
    torch.manual_seed(0)
    net2d = resnet50(weights=None, replace_stride_with_dilation=[False, False, True]).eval()
    path = tmp_path / "resnet50.pth"
    torch.save(net2d.state_dict(), path)
    i3d = build_backbone("i3d_r50_nl", "rgb", weights=path).eval()
    net2d.layer4[0].conv2.dilation, net2d.layer4[0].conv2.padding = (2, 2), (2, 2)   # every res5 block dilated
    frame = torch.randn(1, 3, 48, 64)
    clip = frame[:, :, None].expand(1, 3, 25, 48, 64).contiguous()
    trunk = torch.nn.Sequential(*list(net2d.children())[:-2])   # stem to layer4
    with torch.no_grad():
        expected = trunk(frame)
        maps = i3d(clip)
    assert maps.shape == (1, 2048, 25, 3, 4) and expected.shape == (1, 2048, 3, 4)
    # the middle frame is further from the clip's ends than the network's temporal reach
    # (stem 2, res2 3, res3 2, res4 3, res5 1)
    torch.testing.assert_close(maps[:, :, 12], expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(maps[:, :, 0], expected, rtol=1e-4, atol=1e-4)   # zeros beyond the ends


def test_i3d_temporal_kernels_are_the_originals_stage_by_stage():
    net = build_backbone("i3d_r50", "rgb")
    kernels = {name: [block.conv1.kernel_size[0] for block in getattr(net, name)]
               for name in ("layer1", "layer2", "layer3", "layer4")}
    assert kernels == {"layer1": [3, 3, 3], "layer2": [3, 1, 3, 1], "layer3": [3, 1, 3, 1, 3, 1], "layer4": [1, 3, 1]}
    assert net.stem[0].kernel_size == (5, 7, 7)
    assert all(block.conv2.kernel_size[0] == 1 and block.conv3.kernel_size[0] == 1
               for name in kernels for block in getattr(net, name))
    assert [block.conv2.dilation for block in net.layer4] == [(1, 2, 2)] * 3


def test_p3d_199_has_47_pseudo_3d_blocks_with_bn_relu_between_s_and_t_and_a_2d_res5(tmp_path):
    from torchvision.models import resnet152
    from pipeline.models.p3d import TEMPORAL_BN_SHIFT, PseudoConv3d
    torch.manual_seed(0)
    net2d = resnet152(weights=None, replace_stride_with_dilation=[False, False, True])
    for m in net2d.modules():   # running statistics of real activations keep 152 layers' maps of order 1
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        net2d(torch.randn(4, 3, 48, 64))
    net2d.eval()
    path = tmp_path / "resnet152.pth"
    torch.save(net2d.state_dict(), path)
    p3d = build_backbone("p3d_199", "rgb", weights=path).eval()
    blocks = [m for m in p3d.modules() if isinstance(m, PseudoConv3d)]
    assert len(blocks) == 47 and [m.mode for m in blocks[:4]] == ["A", "B", "C", "A"]
    assert not any(isinstance(m, PseudoConv3d) for m in p3d.layer4.modules())
    assert all(block.conv2.kernel_size == (1, 3, 3) for block in p3d.layer4)
    assert all(b.spatial.kernel_size == (1, 3, 3) and b.temporal.kernel_size == (3, 1, 1) for b in blocks)
    # the spatial convolution and BatchNorm are the 2D network's
    assert torch.equal(blocks[0].spatial.weight[:, :, 0], net2d.layer1[0].conv2.weight)
    assert torch.equal(blocks[0].spatial_bn.running_mean, net2d.layer1[0].bn2.running_mean)

    # between S and T: BatchNorm and ReLU. A block: T reads relu(bn(S x)), which is never negative
    a = blocks[0]
    x = torch.randn(1, 64, 3, 6, 6)
    seen = {}
    a.temporal.register_forward_hook(lambda m, i, o: seen.update(input=i[0]))
    with torch.no_grad():
        out = a(x)
        s = torch.relu(a.spatial_bn(a.spatial(x)))
    torch.testing.assert_close(seen["input"], s)
    torch.testing.assert_close(torch.relu(out), s)      # the untrained A block (and the block's ReLU) is the 2D block
    # B and C start with a small constant temporal branch (their ReLU would stop a zero branch from learning)
    for block in blocks[1:3]:
        x = torch.randn(1, block.spatial.in_channels, 3, 6, 6)
        with torch.no_grad():
            s = torch.relu(block.spatial_bn(block.spatial(x)))
            torch.testing.assert_close(block(x), s + TEMPORAL_BN_SHIFT)
        trained = copy.deepcopy(block).train()            # a copy: training mode moves the running statistics
        trained(x).sum().backward()
        assert trained.temporal_bn.weight.grad.abs().sum() > 0     # the temporal branch learns

    frame = torch.randn(1, 3, 48, 64)
    clip = frame[:, :, None].expand(1, 3, 3, 48, 64).contiguous()
    trunk = torch.nn.Sequential(*list(net2d.children())[:-2])
    with torch.no_grad():
        expected = trunk(frame)
        exact = trunk.double()(frame.double())       # float32 drifts over 152 layers: measure how far
        float32_error = (expected.double() - exact).abs().max()
        for m in blocks:
            if m.mode != "A":
                m.temporal_bn.bias.zero_()
        for t in range(3):   # without it, the untrained network is the 2D one on every frame
            assert (p3d(clip)[:, :, t].double() - exact).abs().max() <= 2 * float32_error
        for m in blocks:
            m.temporal.weight.normal_(0, 0.01)
            m.temporal_bn.weight.fill_(1.0)
            m.temporal_bn.bias.zero_()
        moved = clip.clone()
        moved[:, :, 0] += 1.0
        change = (p3d(moved) - p3d(clip))[:, :, -1].abs().max()
    assert change > 1e-4     # trained temporal convolutions carry the first frame to the last


def test_artnet18_has_smart_blocks_at_the_stem_and_res2_to_res4_and_3d_convolutions_elsewhere(tmp_path):
    from torchvision.models import resnet18
    from pipeline.models.artnet import SmartBlock
    torch.manual_seed(0)
    net2d = resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(net2d.state_dict(), path)
    art = build_backbone("artnet18", "rgb", weights=path).eval()
    smart = [name for name, m in art.named_modules() if isinstance(m, SmartBlock)]
    assert smart == ["stem.0", "layer1.0.conv1", "layer1.1.conv1", "layer2.0.conv1", "layer2.1.conv1",
                     "layer3.0.conv1", "layer3.1.conv1"]
    assert art.stem[0].appearance[0].kernel_size == (1, 7, 7) and art.stem[0].relation_conv.kernel_size == (3, 7, 7)
    three_d = [name for name, m in art.named_modules() if isinstance(m, torch.nn.Conv3d) and m.kernel_size == (3, 3, 3)
               and "relation" not in name]
    assert three_d == ["layer1.0.conv2", "layer1.1.conv2", "layer2.0.conv2", "layer2.1.conv2", "layer3.0.conv2",
                       "layer3.1.conv2", "layer4.0.conv1", "layer4.0.conv2", "layer4.1.conv1", "layer4.1.conv2"]
    frame = torch.randn(1, 3, 64, 96)
    clip = frame[:, :, None].expand(1, 3, 23, 64, 96).contiguous()
    with torch.no_grad():
        expected = torch.nn.Sequential(*list(net2d.children())[:-2])(frame)
        maps = art(clip)
        assert maps.shape == (1, 512, 23, 2, 3)
        # the joining convolutions pass the appearance branch only, at first: the middle frame, further
        # from the ends than the ten 3x3x3 convolutions reach, is the 2D network's
        torch.testing.assert_close(maps[:, :, 11], expected, rtol=1e-4, atol=1e-4)
        block = art.layer1[0].conv1
        moving = torch.randn(1, 64, 4, 8, 8)
        still = moving[:, :, :1].expand(-1, -1, 4, -1, -1)
        relation_moving, relation_still = block.relation(moving), block.relation(still)
    assert (relation_moving >= 0).all()
    # the relation branch is a 3D convolution: a still clip gives its inner frames one response,
    # a moving one does not
    torch.testing.assert_close(relation_still[:, :, 1], relation_still[:, :, 2])
    assert not torch.allclose(relation_moving[:, :, 1], relation_moving[:, :, 2])


def test_nonlocal_block_starts_as_identity_and_links_distant_frames():
    from pipeline.models.i3d import NonLocal3d
    torch.manual_seed(0)
    block = NonLocal3d(8).eval()
    x = torch.randn(1, 8, 6, 4, 4)
    with torch.no_grad():
        assert torch.equal(block(x), x)
        block.out[1].weight.fill_(1.0)
        moved = x.clone()
        moved[:, :, 0] += 1.0
        change = (block(moved) - block(x))[:, :, -1].abs().max()
    assert change > 1e-3          # the last frame's output depends on the first frame


def test_nonlocal_affinities_are_scaled_by_one_over_the_root_of_the_embedding_width():
    from pipeline.models.i3d import NonLocal3d
    torch.manual_seed(0)
    block = NonLocal3d(16).eval()
    x = torch.randn(1, 16, 2, 4, 4)
    seen = {}
    original = torch.softmax
    def spy(scores, dim):
        seen["scores"] = scores
        return original(scores, dim=dim)
    torch.softmax = spy
    try:
        with torch.no_grad():
            block(x)
    finally:
        torch.softmax = original
    with torch.no_grad():
        pooled = block.max_pool(x)
        raw = torch.einsum("bcq,bcp->bqp", block.theta(x).flatten(2), block.phi(pooled).flatten(2))
    torch.testing.assert_close(seen["scores"], raw / 8 ** 0.5)     # 16 channels -> 8 inside


def test_tsn_sees_each_frame_alone_and_keeps_their_order():
    torch.manual_seed(0)
    net = build_backbone("tsn_resnet18", "rgb").eval()
    clip = torch.randn(2, 3, 4, 64, 96)
    with torch.no_grad():
        maps = net(clip)
        reversed_maps = net(clip.flip(2))
        third = net(clip[:, :, 2:3])
    assert maps.shape == (2, 512, 4, 2, 3)
    torch.testing.assert_close(reversed_maps, maps.flip(2))
    torch.testing.assert_close(third[:, :, 0], maps[:, :, 2])


def test_tsn_weights_from_local_file(tmp_path):
    from torchvision.models import resnet18
    torch.manual_seed(0)
    state = resnet18(weights=None).state_dict()     # torchvision's ImageNet layout, classifier included
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    net = build_backbone("tsn_resnet18", "flow/tvl1", weights=path)
    assert torch.equal(net.trunk[0].weight, state["conv1.weight"])
    assert torch.equal(net.trunk[7][1].conv2.weight, state["layer4.1.conv2.weight"])
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a torchvision resnet18 checkpoint"):
        build_backbone("tsn_resnet18", "rgb", weights=bad)


@pytest.mark.parametrize("arch", AUDIO_ARCHS)
def test_audio_backbone_shapes(arch):
    torch.manual_seed(0)
    net = build_backbone(arch, "audio").eval()
    with torch.no_grad():
        y = net(torch.randn(2, 1, 1, 64, 98))
    assert net.per_keyframe
    assert y.shape[:3] == (2, net.out_channels, 1)
    assert y.shape[3:] == (64 // net.spatial_stride, 98 // net.spatial_stride)
    assert torch.isfinite(y).all()
    with pytest.raises(ValueError, match=r"log-mel windows \[B, 1, 1, n_mels, frames\]"):
        net(torch.randn(2, 3, 8, 64, 98))


def test_unknown_arch_and_modality():
    with pytest.raises(ValueError, match="unknown arch"):
        build_backbone("resnet9000", "rgb")
    with pytest.raises(ValueError, match="unknown modality"):
        build_backbone("r3d_tiny", "depth")
    with pytest.raises(ValueError, match="'vgg16' does not read 'rgb'"):
        build_backbone("vgg16", "rgb")
    with pytest.raises(ValueError, match="'r3d_tiny' does not read 'audio'"):
        build_backbone("r3d_tiny", "audio")


def test_vgg16_weights_from_local_file_sum_the_rgb_filters(tmp_path):
    from torchvision.models import vgg16
    torch.manual_seed(0)
    state = vgg16(weights=None).state_dict()      # torchvision's key layout, classifier included
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    net = build_backbone("vgg16", "audio", weights=path)
    first = net.layers[1]
    assert torch.allclose(first.weight, state["features.0.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(net.layers[3].weight, state["features.2.weight"])
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a torchvision vgg16 checkpoint"):
        build_backbone("vgg16", "audio", weights=bad)


def test_audio_detector_gives_every_box_of_a_keyframe_its_window_feature():
    torch.manual_seed(0)
    model = ActionClassifier(build_backbone("vgg_tiny", "audio"), num_classes=4, roi_size=7).eval()
    assert isinstance(model.roi, KeyframePooling)
    windows = torch.randn(2, 1, 1, 64, 98)
    rois = torch.tensor([[0, 1, 2, 30, 40], [0, 50, 2, 90, 60], [1, 5, 5, 10, 10]], dtype=torch.float32)
    with torch.no_grad():
        roi, context = model.features(windows, rois)
        alone, _ = model.features(windows[1:], torch.tensor([[0, 0, 0, 1, 1]], dtype=torch.float32))
    assert roi.shape == (3, model.backbone.out_channels) and context.shape == (2, roi.shape[1], 1, 1)
    assert torch.equal(roi[0], roi[1])                  # same keyframe, boxes anywhere: same feature
    assert not torch.allclose(roi[0], roi[2])
    torch.testing.assert_close(roi[2], alone[0])        # each keyframe's feature is its own window's
    assert model(windows, rois).shape == (3, 4)


def test_torchvision_weights_from_local_file(tmp_path):
    torch.manual_seed(0)
    source = build_backbone("mc3_18", "rgb")
    state = dict(source.state_dict())
    state["fc.weight"] = torch.zeros(400, 512)   # torchvision's checkpoints carry a classifier
    state["fc.bias"] = torch.zeros(400)
    path = tmp_path / "mc3_18.pth"
    torch.save(state, path)
    torch.manual_seed(1)
    loaded = build_backbone("mc3_18", "rgb", weights=path)
    for (name, a), b in zip(source.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a torchvision mc3_18 checkpoint"):
        build_backbone("mc3_18", "rgb", weights=bad)


def test_roi_align_maps_pixel_boxes_onto_cells():
    # feature value = column index: a box over the input pixels of cell column j averages to j
    stride = 16
    fmap = torch.arange(10, dtype=torch.float32).view(1, 1, 1, 1, 10).expand(1, 1, 2, 6, 10).contiguous()
    pool = RoiFeatures(roi_size=4, spatial_stride=stride, pool="avg")
    rois = torch.tensor([[0, j * stride, 0, (j + 1) * stride, 96] for j in (0, 3, 7)], dtype=torch.float32)
    roi, context = pool(fmap, rois)
    assert roi.shape == (3, 1) and context.shape == (1, 1, 6, 10)
    assert torch.allclose(roi[:, 0], torch.tensor([0.0, 3.0, 7.0]), atol=0.3)


def test_roi_feature_is_larger_over_a_bright_patch():
    fmap = torch.zeros(2, 8, 4, 6, 8)
    fmap[1, :, :, 1:3, 5:7] = 5.0                      # bright in clip 1, cells rows 1-2, columns 5-6
    pool = RoiFeatures(roi_size=7, spatial_stride=16, pool="max")
    rois = torch.tensor([[1, 80, 16, 112, 48],        # over the patch in clip 1
                         [1, 0, 48, 48, 96],          # elsewhere in clip 1
                         [0, 80, 16, 112, 48]])       # same place in clip 0
    roi, context = pool(fmap, rois)
    assert roi.shape == (3, 8)
    assert torch.allclose(context, fmap.mean(dim=2))
    assert (roi[0] > 4.0).all()
    assert (roi[1] < 1e-6).all() and (roi[2] < 1e-6).all()


@pytest.mark.parametrize("arch, context_hw", [("r3d_tiny", (3, 4)), ("tsn_resnet18", (2, 2)), ("artnet18", (2, 2)),
                                             ("i3d_r50_nl", (3, 4)), ("p3d_199", (3, 4))])
def test_action_detector_logits_and_features(arch, context_hw):
    torch.manual_seed(0)
    model = ActionClassifier(build_backbone(arch, "rgb"), num_classes=5, roi_size=4).eval()
    clips = torch.randn(2, 3, 4, 48, 64)
    rois = torch.tensor([[0, 0, 0, 32, 48], [1, 10, 5, 60, 40], [1, 0, 0, 64, 48]], dtype=torch.float32)
    with torch.no_grad():
        logits = model(clips, rois)
        roi, context = model.features(clips, rois)
    assert logits.shape == (3, 5)
    assert roi.shape == (3, model.backbone.out_channels)
    assert context.shape == (2, model.backbone.out_channels, *context_hw)
    assert torch.allclose(model.head(roi), logits)
    model.train()
    model(clips, rois).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_outside_mask():
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]])
    mask = outside_mask(boxes, 4, 4, 0.25, 0.25)
    assert mask.shape == (2, 4, 4)
    assert not mask[0, :2, :2].any() and mask[0, 2:, :].all() and mask[0, :, 2:].all()
    assert not mask[1].any()


def _atr_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    roi = torch.randn(3, 16, generator=g)
    context = torch.randn(2, 16, 4, 5, generator=g)
    frame_index = torch.tensor([0, 1, 1])
    boxes = torch.tensor([[0.0, 0.0, 0.4, 0.5], [0.5, 0.25, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    attend = outside_mask(boxes, 4, 5, 0.2, 0.25)
    return roi, context, frame_index, attend


def test_atr_ignores_features_inside_the_box():
    torch.manual_seed(0)
    head = AtrHead(16, 16, num_classes=4).eval()
    torch.nn.init.normal_(head.out.weight)             # a trained relation: the context term is not zero
    roi, context, frame_index, attend = _atr_inputs()
    base = head.relation(roi, context, frame_index, attend)
    assert base[:2].abs().sum() > 0
    assert torch.equal(base[2], torch.zeros(16))       # the box covers the whole frame: nothing outside

    changed = context.clone()
    changed[0][:, ~attend[0]] += 100.0                 # inside row 0's box
    changed[1][:, ~attend[1]] -= 50.0                  # inside row 1's box
    after = head.relation(roi, changed, frame_index, attend)
    assert torch.allclose(after[0], base[0], atol=1e-5)
    assert torch.allclose(after[1], base[1], atol=1e-5)

    outside = context.clone()
    outside[0][:, attend[0]] += 1.0
    assert not torch.allclose(head.relation(roi, outside, frame_index, attend)[0], base[0])


def test_atr_starts_as_the_linear_head_and_has_finite_gradients():
    torch.manual_seed(0)
    head = build_head("atr", 16, 16, num_classes=4).eval()
    roi, context, frame_index, attend = _atr_inputs()
    linear = LinearHead(16, 4).eval()
    linear.fc.load_state_dict(head.fc.state_dict())
    assert torch.allclose(head(roi, context, frame_index, attend), linear(roi))
    head.train()
    head(roi, context, frame_index, attend).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


def test_build_head_kinds():
    assert isinstance(build_head("linear", 8, 8, 3), LinearHead)
    with pytest.raises(ValueError, match="unknown head"):
        build_head("mlp", 8, 8, 3)


def _outside_by_hand(box, height: int, width: int, cell_w: float, cell_h: float) -> torch.Tensor:
    """outside_mask cell by cell: a cell is inside when its centre is within the box."""
    x1, y1, x2, y2 = box
    return torch.tensor([[not (x1 <= (j + 0.5) * cell_w <= x2 and y1 <= (i + 0.5) * cell_h <= y2)
                          for j in range(width)] for i in range(height)])


def test_outside_mask_of_off_origin_boxes_on_a_non_square_map():
    # A 3 x 5 map of 0.2-wide, 1/3-high cells (centres x 0.1 .. 0.9, y 1/6, 1/2, 5/6). The first box spans
    # columns 1-3 and rows 1-2: its x range [0.2, 0.8] holds the row centres 1/2 only, its y range [0.4, 0.9]
    # the column centres 0.5 and 0.7 only, so a mask that mixes x and y, or the cell sizes, differs.
    boxes = torch.tensor([[0.2, 0.4, 0.8, 0.9], [0.6, 0.0, 1.0, 0.3], [0.05, 0.6, 0.15, 1.0]])
    mask = outside_mask(boxes, 3, 5, 0.2, 1 / 3)
    assert mask.shape == (3, 3, 5)
    expected = torch.ones(3, 3, 5, dtype=torch.bool)
    expected[0, 1:3, 1:4] = False
    expected[1, 0, 3:5] = False
    expected[2, 2, 0] = False
    assert torch.equal(mask, expected)
    for box, m in zip(boxes.tolist(), mask):
        assert torch.equal(m, _outside_by_hand(box, 3, 5, 0.2, 1 / 3))


def test_outside_mask_of_random_boxes_is_the_cell_by_cell_rule():
    g = torch.Generator().manual_seed(0)
    corners = torch.rand(200, 2, 2, generator=g).sort(dim=1).values       # [N, (min, max), (x, y)]
    boxes = corners.permute(0, 2, 1).reshape(200, 4)[:, [0, 2, 1, 3]]     # x1, y1, x2, y2
    for height, width in ((4, 7), (6, 3)):
        cell_w, cell_h = 1 / width, 1 / height
        mask = outside_mask(boxes, height, width, cell_w, cell_h)
        for box, m in zip(boxes.tolist(), mask):
            assert torch.equal(m, _outside_by_hand(box, height, width, cell_w, cell_h)), box


def test_roi_op_align_or_pool_cuts_the_grid_with_torchvisions_op():
    from torchvision.ops import roi_align, roi_pool
    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(2, 4, 3, 6, 8, generator=g)
    rois = torch.tensor([[0, 5.0, 7.0, 61.0, 50.0], [1, 20.0, 3.0, 90.0, 80.0]])
    context = fmap.mean(dim=2)
    expected = {"align": roi_align(context, rois, 3, 1 / 16, sampling_ratio=2, aligned=True),
                "pool": roi_pool(context, rois, 3, 1 / 16)}
    found = {}
    for op in ("align", "pool"):
        for pool in ("max", "avg"):
            roi, _ = RoiFeatures(roi_size=3, spatial_stride=16, pool=pool, op=op)(fmap, rois)
            grid = expected[op]
            torch.testing.assert_close(roi, grid.amax(dim=(2, 3)) if pool == "max" else grid.mean(dim=(2, 3)))
            found[op, pool] = roi
    assert not torch.allclose(found["align", "avg"], found["pool", "avg"])
    # ROIPool's bins are whole cells: a box inside one cell gives that cell's value, ROIAlign interpolates
    inside = torch.tensor([[0, 17.0, 17.0, 23.0, 23.0]])     # within cell (1, 1), corners rounded to it
    pooled, _ = RoiFeatures(1, 16, "avg", "pool")(fmap, inside)
    torch.testing.assert_close(pooled[0], context[0, :, 1, 1])
    with pytest.raises(ValueError, match="unknown ROI op 'warp'"):
        RoiFeatures(3, 16, op="warp")
    model = ActionClassifier(build_backbone("r3d_tiny", "rgb"), num_classes=3, roi_size=2, roi_op="pool")
    assert model.roi.op == "pool"
