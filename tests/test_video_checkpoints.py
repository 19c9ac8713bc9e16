"""Kinetics I3D / I3D-NL checkpoints in PySlowFast's, MMAction2's and Caffe2's layouts, and P3D-199's
in qijiezhao/pseudo-3d-pytorch's.

Each test writes a checkpoint file in a source's own layout: random values under the key names and
shapes of that project's model code (PySlowFast's ``ResNet``/``ResBlock``/``Nonlocal``, MMAction2's
``ResNet3d``/``Bottleneck3d``/mmcv's ``NonLocal3d``, video-nonlocal-net's Caffe2 blobs), enumerated
here from the architecture independently of the loader, with the file's wrapping (PySlowFast's
``model_state``, MMAction2's ``state_dict`` with ``backbone.`` and ``cls_head.``, a Python-2-style
protocol-2 pickle of numpy blobs converted by ``pipeline.models.convert_caffe2``). A functional
forward written here from the source's definition (its key names, its non-local variant) is the
reference: the loaded network must give the same map, in float64.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.models.convert_caffe2 import main as convert_main
from pipeline.models.convert_caffe2 import read_caffe2_blobs
from pipeline.models.i3d import NonLocal3d
from pipeline.models.registry import build_backbone

torch.set_num_threads(1)

#: ResNet-50: (stage, planes, blocks, spatial stride, dilation) as the pipeline runs it (res5 dilated).
STAGES = ((2, 64, 3, 1, 1), (3, 128, 4, 2, 1), (4, 256, 6, 2, 1), (5, 512, 3, 1, 2))
#: The originals' temporal kernels of each block's first convolution (video-nonlocal-net obtain_arc(2)).
TIME_KERNELS = {2: (3, 3, 3), 3: (3, 1, 3, 1), 4: (3, 1, 3, 1, 3, 1), 5: (1, 3, 1)}
#: Blocks followed by a non-local block (LAYER_MOD 2 in res3 and res4).
NONLOCAL = {3: (1, 3), 4: (1, 3, 5)}
EPS = 1e-5


# --------------------------------------------------------------------------- source key names

class PySlowFast:
    """slowfast/models: ResNet with arch i3d (stem_helper, resnet_helper, nonlocal_helper)."""

    stem_conv, stem_bn = "s1.pathway0_stem.conv", "s1.pathway0_stem.bn"

    @staticmethod
    def conv(stage, j, role):
        return f"s{stage}.pathway0_res{j}." + ("branch1" if role == "shortcut" else f"branch2.{role}")

    @classmethod
    def bn(cls, stage, j, role):
        return cls.conv(stage, j, role) + "_bn"

    @staticmethod
    def nl(stage, j, part):
        return f"s{stage}.pathway0_nonlocal{j}." + ("bn" if part == "bn" else f"conv_{part}")

    @staticmethod
    def key(prefix, param):
        return f"{prefix}.{param}"

    nl_out_bias, nl_scale, nl_pool_embedding, bn_stats = True, True, False, True


class MMAction2:
    """mmaction/models/backbones/resnet3d.py (ConvModule: .conv/.bn) and mmcv's NonLocal3d (sub_sample)."""

    stem_conv, stem_bn = "conv1.conv", "conv1.bn"

    @staticmethod
    def conv(stage, j, role):
        module = "downsample" if role == "shortcut" else {"a": "conv1", "b": "conv2", "c": "conv3"}[role]
        return f"layer{stage - 1}.{j}.{module}.conv"

    @classmethod
    def bn(cls, stage, j, role):
        return cls.conv(stage, j, role)[: -len(".conv")] + ".bn"

    @staticmethod
    def nl(stage, j, part):
        path = {"theta": "theta.conv", "phi": "phi.0.conv", "g": "g.0.conv", "out": "conv_out.conv", "bn": "conv_out.bn"}
        return f"layer{stage - 1}.{j}.non_local_block.{path[part]}"

    @staticmethod
    def key(prefix, param):
        return f"{prefix}.{param}"

    nl_out_bias, nl_scale, nl_pool_embedding, bn_stats = False, False, True, True


class Caffe2:
    """video-nonlocal-net's blobs (resnet_video.py, resnet_helper.py, nonlocal_helper.py)."""

    stem_conv, stem_bn = "conv1", "res_conv1_bn"

    @staticmethod
    def conv(stage, j, role):
        return f"res{stage}_{j}_" + ("branch1" if role == "shortcut" else f"branch2{role}")

    @classmethod
    def bn(cls, stage, j, role):
        return cls.conv(stage, j, role) + "_bn"

    @staticmethod
    def nl(stage, j, part):
        return f"nonlocal_conv{stage}_{j}_{part}"

    @staticmethod
    def key(prefix, param):
        return prefix + {"weight": "_w", "bias": "_b", "bn.weight": "_s", "bn.bias": "_b", "running_mean": "_rm",
                         "running_var": "_riv"}[param]

    nl_out_bias, nl_scale, nl_pool_embedding, bn_stats = True, True, False, True


class Caffe2Affine(Caffe2):
    """video-nonlocal-net with MODEL.USE_AFFINE: BatchNorms saved as scale and bias only."""

    bn_stats = False


def bn_keys(layout, prefix):
    names = {"weight": "bn.weight", "bias": "bn.bias"} if layout in (Caffe2, Caffe2Affine) else {"weight": "weight",
                                                                                                  "bias": "bias"}
    keys = {p: layout.key(prefix, names[p]) for p in ("weight", "bias")}
    if layout.bn_stats:
        keys.update({p: layout.key(prefix, p) for p in ("running_mean", "running_var")})
    return keys


def source_shapes(layout, nonlocal_blocks: bool) -> dict[str, tuple[int, ...]]:
    """Every weight of the source's I3D(-NL) ResNet-50 backbone: ``{key: shape}``."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix, channels):
        for key in bn_keys(layout, prefix).values():
            shapes[key] = (channels,)

    shapes[layout.key(layout.stem_conv, "weight")] = (64, 3, 5, 7, 7)
    bn(layout.stem_bn, 64)
    width = 64
    for stage, planes, blocks, _, _ in STAGES:
        for j in range(blocks):
            kt = TIME_KERNELS[stage][j]
            shapes[layout.key(layout.conv(stage, j, "a"), "weight")] = (planes, width, kt, 1, 1)
            shapes[layout.key(layout.conv(stage, j, "b"), "weight")] = (planes, planes, 1, 3, 3)
            shapes[layout.key(layout.conv(stage, j, "c"), "weight")] = (4 * planes, planes, 1, 1, 1)
            for role, channels in (("a", planes), ("b", planes), ("c", 4 * planes)):
                bn(layout.bn(stage, j, role), channels)
            if j == 0:
                shapes[layout.key(layout.conv(stage, j, "shortcut"), "weight")] = (4 * planes, width, 1, 1, 1)
                bn(layout.bn(stage, j, "shortcut"), 4 * planes)
            width = 4 * planes
            if nonlocal_blocks and j in NONLOCAL.get(stage, ()):
                inner = width // 2
                for part in ("theta", "phi", "g"):
                    shapes[layout.key(layout.nl(stage, j, part), "weight")] = (inner, width, 1, 1, 1)
                    shapes[layout.key(layout.nl(stage, j, part), "bias")] = (inner,)
                shapes[layout.key(layout.nl(stage, j, "out"), "weight")] = (width, inner, 1, 1, 1)
                if layout.nl_out_bias:
                    shapes[layout.key(layout.nl(stage, j, "out"), "bias")] = (width,)
                bn(layout.nl(stage, j, "bn"), width)
    return shapes


def random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float32 values that keep 50 layers' activations of order one (He-scaled filters,
    BatchNorm scales near one, positive variances)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if len(shape) == 5:
            fan_in = shape[1] * shape[2] * shape[3] * shape[4]
            value = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif key.endswith(("running_var", "_riv")):
            value = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith(("bn.weight", "_bn_s")):
            value = 0.5 + 0.5 * torch.rand(shape, generator=g)
        else:
            value = 0.1 * torch.randn(shape, generator=g)
        state[key] = value
    return state


# --------------------------------------------------------------------------- the sources' forward

def reference_forward(layout, state: dict[str, torch.Tensor], x: torch.Tensor, nonlocal_blocks: bool) -> torch.Tensor:
    """The source's I3D(-NL) ResNet-50 map of ``x``, functionally from its own key names (eval
    BatchNorm; no temporal strides; res5 dilated 2): ``[B, 3, T, H, W]`` -> ``[B, 2048, T, H/16, W/16]``."""
    s = {k: v.double() for k, v in state.items()}

    def bn(y, prefix):
        keys = bn_keys(layout, prefix)
        if not layout.bn_stats:                                   # an affine transform
            shape = (1, -1, 1, 1, 1)
            return y * s[keys["weight"]].view(shape) + s[keys["bias"]].view(shape)
        return F.batch_norm(y, s[keys["running_mean"]], s[keys["running_var"]], s[keys["weight"]], s[keys["bias"]],
                            False, 0.0, EPS)

    def conv(y, prefix, stride=1, dilation=1, bias=False):
        w = s[layout.key(prefix, "weight")]
        kt, kh, _ = w.shape[2:]
        return F.conv3d(y, w, s[layout.key(prefix, "bias")] if bias else None, (1, stride, stride),
                        (kt // 2, dilation * (kh // 2), dilation * (kh // 2)), (1, dilation, dilation))

    def nonlocal_block(y, stage, j):
        n, _, t, h, w = y.shape
        pool = lambda z: F.max_pool3d(z, (1, 2, 2), (1, 2, 2))           # noqa: E731
        theta = conv(y, layout.nl(stage, j, "theta"), bias=True).flatten(2)
        if layout.nl_pool_embedding:
            phi = pool(conv(y, layout.nl(stage, j, "phi"), bias=True)).flatten(2)
            g = pool(conv(y, layout.nl(stage, j, "g"), bias=True)).flatten(2)
        else:
            phi = conv(pool(y), layout.nl(stage, j, "phi"), bias=True).flatten(2)
            g = conv(pool(y), layout.nl(stage, j, "g"), bias=True).flatten(2)
        affinity = torch.bmm(theta.transpose(1, 2), phi)
        if layout.nl_scale:
            affinity = affinity / theta.shape[1] ** 0.5
        out = torch.bmm(g, affinity.softmax(dim=-1).transpose(1, 2)).reshape(n, -1, t, h, w)
        out = conv(out, layout.nl(stage, j, "out"), bias=layout.nl_out_bias)
        return y + bn(out, layout.nl(stage, j, "bn"))

    y = F.relu(bn(conv(x.double(), layout.stem_conv, stride=2), layout.stem_bn))
    y = F.max_pool3d(y, (1, 3, 3), (1, 2, 2), (0, 1, 1))
    for stage, _, blocks, stride, dilation in STAGES:
        for j in range(blocks):
            first = stride if j == 0 else 1
            out = F.relu(bn(conv(y, layout.conv(stage, j, "a")), layout.bn(stage, j, "a")))
            out = F.relu(bn(conv(out, layout.conv(stage, j, "b"), first, dilation), layout.bn(stage, j, "b")))
            out = bn(conv(out, layout.conv(stage, j, "c")), layout.bn(stage, j, "c"))
            shortcut = bn(conv(y, layout.conv(stage, j, "shortcut"), first), layout.bn(stage, j, "shortcut")) \
                if j == 0 else y
            y = F.relu(out + shortcut)
            if nonlocal_blocks and j in NONLOCAL.get(stage, ()):
                y = nonlocal_block(y, stage, j)
    return y


# --------------------------------------------------------------------------- the files users have

def write_pyslowfast(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """A PySlowFast training checkpoint (checkpoint.save_checkpoint): model_state with the head and
    BatchNorm counters, optimizer state, the config as text."""
    model_state = dict(state)
    model_state.update({k.rsplit(".", 1)[0] + ".num_batches_tracked": torch.tensor(100)
                        for k in state if k.endswith("running_mean")})
    model_state["head.projection.weight"] = torch.randn(400, 2048)
    model_state["head.projection.bias"] = torch.zeros(400)
    torch.save({"epoch": 196, "model_state": model_state, "optimizer_state": {"state": {}, "param_groups": []},
                "cfg": "MODEL:\n  ARCH: i3d\n"}, path)
    return path


def write_mmaction2(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """An MMAction2 Recognizer3D checkpoint: backbone., cls_head. and meta."""
    state_dict = {f"backbone.{k}": v for k, v in state.items()}
    state_dict.update({f"backbone.{k.rsplit('.', 1)[0]}.num_batches_tracked": torch.tensor(7)
                       for k in state if k.endswith("running_mean")})
    state_dict["cls_head.fc_cls.weight"] = torch.randn(400, 2048)
    state_dict["cls_head.fc_cls.bias"] = torch.zeros(400)
    torch.save({"meta": {"epoch": 100, "mmengine_version": "0.8.4"}, "state_dict": state_dict}, path)
    return path


def write_caffe2(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """A Caffe2 weights pickle as video-nonlocal-net's checkpoints.save_model_params writes it:
    ``{"blobs": {name: float32 array}}`` with momenta, the iteration and the learning rate, protocol 2."""
    blobs = {k: v.numpy().astype(np.float32) for k, v in state.items()}
    blobs.update({f"{k}_momentum": np.zeros_like(v) for k, v in list(blobs.items())[:5]})
    blobs["pred_w"] = np.random.default_rng(0).standard_normal((400, 2048)).astype(np.float32)
    blobs["pred_b"] = np.zeros(400, np.float32)
    blobs["model_iter"] = np.array(400000)   # an array in the real files too; no place in the network
    blobs["lr"] = np.array(0.00125)
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    return path


LAYOUTS = {"pyslowfast": PySlowFast, "mmaction2": MMAction2, "caffe2": Caffe2}
WRITERS = {"pyslowfast": write_pyslowfast, "mmaction2": write_mmaction2, "caffe2": write_caffe2}
SUFFIX = {"pyslowfast": ".pyth", "mmaction2": ".pth", "caffe2": ".pkl"}


def checkpoint_file(tmp_path: Path, name: str, layout_cls, state) -> Path:
    """The file a user would point ``weights`` at (Caffe2 pickles converted first, as documented)."""
    path = WRITERS[name](tmp_path / f"source{SUFFIX[name]}", state)
    if name != "caffe2":
        return path
    out = tmp_path / "converted.pt"
    convert_main([str(path), str(out)])
    return out


def maps_agree(ours: torch.Tensor, reference: torch.Tensor, tolerance: float = 1e-9) -> None:
    """Equal up to ``tolerance`` of the map's largest value."""
    assert ours.shape == reference.shape
    torch.testing.assert_close(ours, reference, rtol=0, atol=tolerance * reference.abs().max().item())


@pytest.mark.parametrize("name", ["pyslowfast", "mmaction2", "caffe2"])
@pytest.mark.parametrize("arch", ["i3d_r50_nl", "i3d_r50"])
def test_loaded_i3d_gives_the_source_networks_map(tmp_path, name, arch):
    layout_cls, nonlocal_blocks = LAYOUTS[name], arch == "i3d_r50_nl"
    state = random_state(source_shapes(layout_cls, nonlocal_blocks))
    path = checkpoint_file(tmp_path, name, layout_cls, state)
    net = build_backbone(arch, "rgb", weights=path, layout=name).double().eval()
    x = torch.randn(1, 3, 4, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        reference = reference_forward(layout_cls, state, x, nonlocal_blocks)
        maps_agree(net(x), reference)
    blocks = [m for m in net.modules() if isinstance(m, NonLocal3d)]
    assert len(blocks) == (5 if nonlocal_blocks else 0)
    if nonlocal_blocks:
        # the non-local variant matters: the other source's variant gives another map
        for block in blocks:
            block.scale, block.pool = not block.scale, "input" if block.pool == "embedding" else "embedding"
        with torch.no_grad():
            assert not torch.allclose(net(x), reference, rtol=1e-6, atol=1e-6 * reference.abs().max().item())


def test_caffe2_affine_batchnorms_load_as_the_affine_transform(tmp_path):
    state = random_state(source_shapes(Caffe2Affine, True))
    assert not any(k.endswith(("_rm", "_riv")) for k in state)
    path = checkpoint_file(tmp_path, "caffe2", Caffe2Affine, state)
    net = build_backbone("i3d_r50_nl", "flow/tvl1", weights=path, layout="caffe2").double().eval()
    x = torch.randn(1, 3, 4, 64, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        # the variances 1 - eps are float32 numbers: the BatchNorms are the affine transforms to 1e-8,
        # which 53 layers of a random network amplify to about 1e-6 of the map's largest value
        maps_agree(net(x), reference_forward(Caffe2Affine, state, x, True), tolerance=1e-5)


def test_loaded_weights_are_the_source_values_key_for_key(tmp_path):
    state = random_state(source_shapes(PySlowFast, True), seed=3)
    net = build_backbone("i3d_r50_nl", "rgb", weights=write_pyslowfast(tmp_path / "k.pyth", state), layout="pyslowfast")
    ours = net.state_dict()
    pairs = {"stem.0.weight": "s1.pathway0_stem.conv.weight", "stem.1.running_var": "s1.pathway0_stem.bn.running_var",
             "layer1.0.conv1.weight": "s2.pathway0_res0.branch2.a.weight",
             "layer1.0.downsample.1.bias": "s2.pathway0_res0.branch1_bn.bias",
             "layer2.2.theta.bias": "s3.pathway0_nonlocal1.conv_theta.bias",   # layer2: blocks 0, 1, NL, 2, 3, NL
             "layer2.5.out.1.weight": "s3.pathway0_nonlocal3.bn.weight",
             "layer3.8.out.0.weight": "s4.pathway0_nonlocal5.conv_out.weight",
             "layer4.1.conv1.weight": "s5.pathway0_res1.branch2.a.weight"}
    for ours_key, source_key in pairs.items():
        assert torch.equal(ours[ours_key], state[source_key]), ours_key
    assert ours["layer4.1.conv1.weight"].shape[2] == 3 and ours["layer4.0.conv1.weight"].shape[2] == 1


def test_keys_that_do_not_fit_are_listed(tmp_path):
    state = random_state(source_shapes(PySlowFast, True))
    del state["s4.pathway0_res2.branch2.b.weight"]
    state["s4.pathway0_res9.branch2.a.weight"] = torch.zeros(1)
    state["s2.pathway0_res1.branch2.a.weight"] = torch.zeros(64, 256, 1, 1, 1)     # a C2D kernel where I3D has 3
    path = write_pyslowfast(tmp_path / "bad.pyth", state)
    with pytest.raises(ValueError) as err:
        build_backbone("i3d_r50_nl", "rgb", weights=path, layout="pyslowfast")
    message = str(err.value)
    assert str(path) in message
    assert "missing 1: s4.pathway0_res2.branch2.b.weight (for layer3.3.conv2.weight)" in message   # after a non-local block
    assert "unexpected 1: s4.pathway0_res9.branch2.a.weight" in message
    assert "s2.pathway0_res1.branch2.a.weight (64, 256, 1, 1, 1) (for layer1.1.conv1.weight (64, 256, 3, 1, 1))" \
        in message
    # a non-local checkpoint into the network without non-local blocks: its 5 blocks (5 x 12 arrays) are left over
    good = write_pyslowfast(tmp_path / "nl.pyth", random_state(source_shapes(PySlowFast, True)))
    with pytest.raises(ValueError, match=r"unexpected 60: s3.pathway0_nonlocal1"):
        build_backbone("i3d_r50", "rgb", weights=good, layout="pyslowfast")
    # the layout must be the file's: an MMAction2 file read as PySlowFast's fits nowhere
    mm = write_mmaction2(tmp_path / "mm.pth", random_state(source_shapes(MMAction2, True)))
    with pytest.raises(ValueError, match=r"not a pyslowfast I3D-NL ResNet-50 checkpoint; missing 3\d\d"):
        build_backbone("i3d_r50_nl", "rgb", weights=mm, layout="pyslowfast")


def test_video_layouts_are_for_their_archs_only(tmp_path):
    with pytest.raises(ValueError, match="weights layout 'mmaction2' is for i3d_r50, i3d_r50_nl only, not 'p3d_199'"):
        build_backbone("p3d_199", "rgb", weights=tmp_path / "x.pth", layout="mmaction2")
    with pytest.raises(ValueError, match="weights layout 'pseudo-3d-pytorch' is for p3d_199 only, not 'i3d_r50'"):
        build_backbone("i3d_r50", "rgb", weights=tmp_path / "x.pth", layout="pseudo-3d-pytorch")
    with pytest.raises(ValueError, match="unknown weights layout 'keras'"):
        build_backbone("i3d_r50", "rgb", layout="keras")


def test_finetuned_nonlocal_variant_travels_in_the_state_dict(tmp_path):
    state = random_state(source_shapes(MMAction2, True))
    loaded = build_backbone("i3d_r50_nl", "rgb", weights=write_mmaction2(tmp_path / "m.pth", state),
                            layout="mmaction2")
    saved = loaded.state_dict()
    assert saved["layer2.2._extra_state"] == {"scale": False, "pool": "embedding"}
    fresh = build_backbone("i3d_r50_nl", "rgb")       # what the features stage builds before loading backbone.pt
    assert fresh.layer2[2].scale and fresh.layer2[2].pool == "input"
    fresh.load_state_dict(saved)
    assert not fresh.layer2[2].scale and fresh.layer2[2].pool == "embedding"


# --------------------------------------------------------------------------- the Caffe2 converter

def test_converter_keeps_the_blobs_and_drops_momenta_and_counters(tmp_path):
    state = random_state(source_shapes(Caffe2, False))
    out = tmp_path / "out.pt"
    convert_main([str(write_caffe2(tmp_path / "in.pkl", state)), str(out)])
    tensors = torch.load(out, weights_only=True)
    assert set(tensors) == set(state) | {"pred_w", "pred_b", "model_iter", "lr"}
    assert all(torch.equal(tensors[k], v) for k, v in state.items())


def test_converter_reads_python2_pickles(tmp_path):
    # Python 2's cPickle writes a numpy array's bytes as a str (SHORT_BINSTRING), which only
    # encoding="latin1" reads back: a hand-made protocol-2 stream of that form
    data = np.arange(6, dtype="<f4").reshape(2, 3)
    raw = data.tobytes()
    stream = (b"\x80\x02}q\x00U\x05blobsq\x01}q\x02U\x06conv1wq\x03"
              b"cnumpy.core.multiarray\n_reconstruct\nq\x04cnumpy\nndarray\nq\x05K\x00\x85U\x01b\x87R"
              b"(K\x01K\x02K\x03\x86cnumpy\ndtype\nU\x02f4K\x00K\x01\x87R(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff"
              b"\xff\xffK\x00tb\x89U" + bytes([len(raw)]) + raw + b"tbss.")
    path = tmp_path / "py2.pkl"
    path.write_bytes(stream)
    blobs = read_caffe2_blobs(path)
    np.testing.assert_array_equal(blobs["conv1w"], data)


class RunsCode:
    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_converter_refuses_a_pickle_that_names_other_globals(tmp_path):
    sentinel = tmp_path / "code_ran"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": {"conv1_w": np.zeros(3, np.float32), "x": RunsCode(sentinel)}}, f, protocol=2)
    with pytest.raises(ValueError, match=r"evil.pkl: not a Caffe2 weights pickle \(refused global io.open"):
        convert_main([str(path), str(tmp_path / "out.pt")])
    assert not sentinel.exists() and not (tmp_path / "out.pt").exists()


# --------------------------------------------------------------------------- P3D-199 (pseudo-3d-pytorch)

#: P3D-199: ResNet-152's (planes, blocks) per stage; the first 47 blocks are pseudo-3D, res5's 2D.
P3D_STAGES = ((64, 3), (128, 8), (256, 36), (512, 3))
P3D_DEPTH_3D = 47


def p3d_port_shapes(in_channels: int) -> dict[str, tuple[int, ...]]:
    """Every weight of qijiezhao/pseudo-3d-pytorch's P3D199 (p3d_model.py): ``{key: shape}``."""
    shapes = {"conv1_custom.weight": (64, in_channels, 1, 7, 7), "fc.weight": (400, 2048), "fc.bias": (400,)}

    def bn(prefix, channels):
        shapes.update({f"{prefix}.{p}": (channels,) for p in ("weight", "bias", "running_mean", "running_var")})

    bn("bn1", 64)
    inplanes, n_s = 64, 0
    for stage, (planes, blocks) in enumerate(P3D_STAGES, start=1):
        for j in range(blocks):
            p, three_d = f"layer{stage}.{j}", n_s < P3D_DEPTH_3D
            k = (1, 1, 1) if three_d else (1, 1)
            shapes[f"{p}.conv1.weight"] = (planes, inplanes, *k)
            bn(f"{p}.bn1", planes)
            if three_d:
                shapes[f"{p}.conv2.weight"] = (planes, planes, 1, 3, 3)
                bn(f"{p}.bn2", planes)
                shapes[f"{p}.conv3.weight"] = (planes, planes, 3, 1, 1)
                bn(f"{p}.bn3", planes)
            else:
                shapes[f"{p}.conv_normal.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn_normal", planes)
            shapes[f"{p}.conv4.weight"] = (4 * planes, planes, *k)
            bn(f"{p}.bn4", 4 * planes)
            if j == 0:
                shapes[f"{p}.downsample.0.weight"] = (4 * planes, inplanes, *k)
                bn(f"{p}.downsample.1", 4 * planes)
            inplanes, n_s = 4 * planes, n_s + 1
    return shapes


def p3d_port_res4(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The port's P3D-199 from its input to res4's output, functionally (eval BatchNorm; strides in the
    first 1x1 convolution of res3's and res4's first blocks, as its Bottleneck; its temporal max pools
    left out, as the pipeline runs it): ``[B, C, T, H, W]`` -> ``[B, 1024, T, H/16, W/16]``."""
    s = {k: v.double() for k, v in state.items()}

    def bn(y, prefix):
        return F.batch_norm(y, s[f"{prefix}.running_mean"], s[f"{prefix}.running_var"], s[f"{prefix}.weight"],
                            s[f"{prefix}.bias"], False, 0.0, EPS)

    def conv(y, key, stride=1):
        w = s[key]
        return F.conv3d(y, w, None, (1, stride, stride), tuple(k // 2 for k in w.shape[2:]))

    y = F.relu(bn(F.conv3d(x.double(), s["conv1_custom.weight"], None, (1, 2, 2), (0, 3, 3)), "bn1"))
    y = F.max_pool3d(y, (1, 3, 3), (1, 2, 2), (0, 1, 1))
    n_s = 0
    for stage, (_, blocks) in enumerate(P3D_STAGES[:3], start=1):
        for j in range(blocks):
            p, stride = f"layer{stage}.{j}", 2 if j == 0 and stage > 1 else 1
            out = F.relu(bn(conv(y, f"{p}.conv1.weight", stride), f"{p}.bn1"))
            mode = "ABC"[n_s % 3]
            spatial = F.relu(bn(conv(out, f"{p}.conv2.weight"), f"{p}.bn2"))
            if mode == "A":
                out = F.relu(bn(conv(spatial, f"{p}.conv3.weight"), f"{p}.bn3"))
            elif mode == "B":
                out = spatial + F.relu(bn(conv(out, f"{p}.conv3.weight"), f"{p}.bn3"))
            else:
                out = spatial + F.relu(bn(conv(spatial, f"{p}.conv3.weight"), f"{p}.bn3"))
            out = bn(conv(out, f"{p}.conv4.weight"), f"{p}.bn4")
            shortcut = bn(conv(y, f"{p}.downsample.0.weight", stride), f"{p}.downsample.1") if j == 0 else y
            y, n_s = F.relu(out + shortcut), n_s + 1
    return y


@pytest.mark.parametrize("modality, channels", [("rgb", 3), ("flow/tvl1", 2)])
def test_kinetics_p3d_199_of_the_pytorch_port_gives_its_map(tmp_path, modality, channels):
    state = random_state(p3d_port_shapes(channels), seed=4)
    path = tmp_path / f"p3d_{'rgb' if channels == 3 else 'flow'}_199.checkpoint.pth.tar"
    torch.save({"epoch": 10, "arch": "P3D199", "best_prec1": 80.1, "state_dict": state}, path)
    net = build_backbone("p3d_199", modality, weights=path, layout="pseudo-3d-pytorch").double().eval()
    x = torch.randn(1, 3, 4, 64, 64, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.no_grad():
        ours = net.layer3(net.layer2(net.layer1(net.stem(x))))
        # the port's flow network reads dx and dy; the third channel's filters start at zero
        maps_agree(ours, p3d_port_res4(state, x[:, :channels]))
        assert net(x).shape == (1, 2048, 4, 4, 4)
    saved = net.state_dict()
    assert saved["_extra_state"] == {"stride_in": "1x1"}
    # res5 is 2D in the port: its 4D filters, key for key
    assert torch.equal(saved["layer4.1.conv2.weight"][:, :, 0], state["layer4.1.conv_normal.weight"])
    assert torch.equal(saved["layer4.0.downsample.0.weight"][:, :, 0], state["layer4.0.downsample.0.weight"])
    assert torch.equal(saved["layer4.2.bn3.running_var"], state["layer4.2.bn4.running_var"])
    fresh = build_backbone("p3d_199", modality)     # the features stage: built, then loaded from backbone.pt
    fresh.load_state_dict(saved)
    with torch.no_grad():
        maps_agree(fresh.double().eval()(x), net(x))


def test_p3d_checkpoint_keys_that_do_not_fit_are_listed(tmp_path):
    state = random_state(p3d_port_shapes(3))
    state["layer3.35.conv3.weight"] = torch.zeros(256, 256, 1, 1, 1)
    path = tmp_path / "p3d.pth.tar"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match=r"p3d.pth.tar: not a pseudo-3d-pytorch P3D-199 checkpoint; other shapes 1: "
                                         r"layer3.35.conv3.weight \(256, 256, 1, 1, 1\) "
                                         r"\(for layer3.35.conv2.temporal.weight \(256, 256, 3, 1, 1\)\)"):
        build_backbone("p3d_199", "rgb", weights=path, layout="pseudo-3d-pytorch")
