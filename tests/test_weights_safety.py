"""Weights files are data, never code: every loader reads them with ``torch.load(weights_only=True)``.

A crafted checkpoint whose pickle would create a file when unpickled (``__reduce__`` -> ``open(path, "w")``)
is refused by every loader of the pipeline with torch's "Weights only load failed" error, and the file is
not created: the code in it never ran. A source scan keeps every ``torch.load`` in pipeline/ and bench/
on ``weights_only=True``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline.ava.formats import LabelMap, write_label_map
from pipeline.detect.model import load_state_dict_file
from pipeline.errors import InputError
from pipeline.heads import load_head
from pipeline.models.checkpoints import load_torchvision_weights
from pipeline.models.registry import build_backbone
from pipeline.params import BackboneParams, ComputeParams, FinetuneRecipe, to_json
from pipeline.stages.features import main as features_main
from pipeline.training_state import load_state, resume_path

ROOT = Path(__file__).resolve().parent.parent
REFUSED = "Weights only load failed"        # torch's message when the unpickler meets a global it does not allow
LABEL_MAP = LabelMap((3, 7), ("stand", "carry"), ("PERSON_MOVEMENT", "OBJECT_MANIPULATION"))


class TouchOnLoad:
    """Unpickled by a plain unpickler, this calls ``open(path, "w")``: the file appears."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def crafted(path: Path, sentinel: Path, wrap=lambda payload: payload) -> Path:
    """Save ``wrap(payload)`` (the payload where a loader expects data) to ``path``."""
    torch.save(wrap(TouchOnLoad(sentinel)), path)
    return path


@pytest.fixture
def sentinel(tmp_path) -> Path:
    return tmp_path / "code_ran"


def test_the_crafted_file_runs_code_when_loaded_without_weights_only(tmp_path, sentinel):
    path = crafted(tmp_path / "evil.pt", sentinel, lambda p: {"weight": torch.zeros(2), "evil": p})
    loaded = torch.load(path, weights_only=False)       # what every loader must never do
    loaded["evil"].close()
    assert sentinel.exists()
    sentinel.unlink()
    with pytest.raises(Exception, match=REFUSED):
        torch.load(path, weights_only=True)
    assert not sentinel.exists()


def refused(call, sentinel: Path) -> BaseException:
    """Run ``call``, which must fail with torch's weights-only refusal, without the payload running."""
    with pytest.raises(Exception) as err:
        call()
    assert REFUSED in str(err.value), repr(err.value)
    assert isinstance(err.value, InputError) and "refused: this" in str(err.value), repr(err.value)
    assert not sentinel.exists(), "the crafted pickle ran code"
    return err.value


def test_detector_checkpoint(tmp_path, sentinel):
    for name, wrap in (("plain.pt", lambda p: {"backbone.body.conv1.weight": torch.zeros(1), "evil": p}),
                       ("wrapped.pt", lambda p: {"model": {"evil": p}})):
        path = crafted(tmp_path / name, sentinel, wrap)
        error = refused(lambda: load_state_dict_file(path), sentinel)
        assert isinstance(error, InputError) and str(path) in str(error)


def test_head_file(tmp_path, sentinel):
    path = crafted(tmp_path / "head.pt", sentinel,
                   lambda p: {"head": {"fc.weight": torch.zeros(2, 4)}, "kind": p, "roi_dim": 4, "context_dim": 4,
                              "label_ids": list(LABEL_MAP.ids)})
    refused(lambda: load_head(path, LABEL_MAP, "linear"), sentinel)


@pytest.mark.parametrize("arch, modality", [("r3d_tiny", "rgb"), ("vgg_tiny", "audio"), ("r3d_18", "rgb")])
def test_backbone_weights(tmp_path, sentinel, arch, modality):
    path = crafted(tmp_path / f"{arch}.pt", sentinel, lambda p: {"conv1.weight": torch.zeros(1), "evil": p})
    refused(lambda: build_backbone(arch, modality, path), sentinel)


@pytest.mark.parametrize("layout, wrap", [("pyslowfast", lambda p: {"model_state": {"evil": p}, "epoch": 1}),
                                          ("mmaction2", lambda p: {"state_dict": {"backbone.evil": p}, "meta": {}}),
                                          ("caffe2", lambda p: {"conv1_w": torch.zeros(1), "evil": p})])
def test_kinetics_checkpoints(tmp_path, sentinel, layout, wrap):
    path = crafted(tmp_path / f"{layout}.pt", sentinel, wrap)
    error = refused(lambda: build_backbone("i3d_r50_nl", "rgb", path, layout), sentinel)
    assert str(path) in str(error)


def test_torchvision_checkpoint(tmp_path, sentinel):
    path = crafted(tmp_path / "resnet.pt", sentinel, lambda p: {"fc.weight": torch.zeros(1), "evil": p})
    refused(lambda: load_torchvision_weights(nn.Linear(1, 1), path, "resnet18", "fc."), sentinel)


def test_features_stage_weights(tmp_path, sentinel):
    weights = crafted(tmp_path / "backbone.pt", sentinel, lambda p: {"backbone": p, "head": {}})
    write_label_map(tmp_path / "lm.pbtxt", LABEL_MAP)
    (tmp_path / "keyframes.csv").write_text("v,0902\n")
    (tmp_path / "boxes.csv").write_text("v,0902,0.1,0.2,0.5,0.9,,0.9\n")
    params = BackboneParams(
        arch="r3d_tiny", modality="rgb", clip_frames=4, clip_stride=1, input_size=32, roi_size=3, roi_pool="max",
        roi_op="align", context_frames=1, weights_layout="torchvision",
        weights=None, finetune=FinetuneRecipe(epochs=1, lr=0.01, batch_size=2, weight_decay=0.01, optimizer="adamw", momentum=0.9, nesterov=False, schedule="constant", warmup_epochs=0.0, lr_steps=[], lr_step_factor=0.1, freeze_bn=False, head="linear"),
        seed=0, train_box_iou=0.5, dropout=0.3, compute=ComputeParams(device="cpu", precision="off", loader_workers=0))
    argv = ["--weights", str(weights), "--store", str(tmp_path / "v.h5"), "--video-id=v",
            "--keyframes", str(tmp_path / "keyframes.csv"), "--boxes", str(tmp_path / "boxes.csv"),
            "--label-map", str(tmp_path / "lm.pbtxt"), "--out", str(tmp_path / "out.h5"), "--params", to_json(params)]
    refused(lambda: features_main(argv), sentinel)
    assert not (tmp_path / "out.h5").exists()


def test_training_resume_state(tmp_path, sentinel):
    out = tmp_path / "detector.pt"
    crafted(resume_path(out), sentinel, lambda p: {"params": "{}", "epoch": 1, "model": {"evil": p}})
    refused(lambda: load_state(out, "{}"), sentinel)


def torch_load_calls(path: Path) -> list[ast.Call]:
    """Every call of ``torch.load`` (or a bare ``load`` imported from torch) in a Python file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    from_torch = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                  and node.module == "torch" for alias in node.names if alias.name == "load"}
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if (isinstance(f, ast.Attribute) and f.attr == "load" and isinstance(f.value, ast.Name)
                and f.value.id == "torch") or (isinstance(f, ast.Name) and f.id in from_torch):
            calls.append(node)
    return calls


def test_every_torch_load_of_the_pipeline_and_benchmarks_is_weights_only():
    files = sorted((ROOT / "pipeline").rglob("*.py")) + sorted((ROOT / "bench").rglob("*.py"))
    found, unsafe, loaders = 0, [], set()
    for path in files:
        for call in torch_load_calls(path):
            found += 1
            loaders.add(str(path.relative_to(ROOT)))
            keywords = {k.arg: k.value for k in call.keywords}
            value = keywords.get("weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                unsafe.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert found >= 1                                  # the scan sees the one loader
    # every loader above goes through pipeline.store.load_torch_file, the one torch.load of the package
    assert {p for p in loaders if p.startswith("pipeline/")} == {"pipeline/store.py"}
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"
