"""Finetuning is reproducible, resumable and distributed: the same seed gives the same weights with any
number of loader workers; a training killed after an epoch resumes and ends bit-identical; two gloo
processes launched by torchrun, as the rule launches them, train what one process trains."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pipeline.ava.formats import AvaRows, LabelMap, write_boxes, write_ground_truth, write_label_map
from pipeline.media.frames import encode_jpeg
from pipeline.models.registry import build_action_model
from pipeline.params import BackboneParams, ComputeParams, FinetuneRecipe, to_json
from pipeline.training_state import resume_path

FPS = 10.0
HEIGHT, WIDTH = 48, 64
LABEL_MAP = LabelMap(ids=(3, 7), names=("stand", "carry"), label_types=(None, None))
KEYFRAMES = tuple(range(901, 909))
PERSONS = [(np.array([0.05, 0.2, 0.35, 0.9], np.float32), 3), (np.array([0.55, 0.1, 0.9, 0.95], np.float32), 7)]
PARAMS = BackboneParams(
    arch="r3d_tiny", modality="rgb", clip_frames=4, clip_stride=1, input_size=32, roi_size=3, roi_pool="max",
    roi_op="align", context_frames=1, weights_layout="torchvision", dropout=0.3,
    weights=None, finetune=FinetuneRecipe(epochs=2, lr=0.01, batch_size=4, weight_decay=0.01, optimizer="adamw", momentum=0.9, nesterov=False, schedule="constant", warmup_epochs=0.0, lr_steps=[], lr_step_factor=0.1, freeze_bn=False, head="linear"),
    seed=0, train_box_iou=0.5, compute=ComputeParams(device="cpu", precision="off", loader_workers=0))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two videos of 10 s: a bright person that stands left, a dark one that carries right; 8 keyframes each."""
    root = tmp_path_factory.mktemp("finetune")
    write_label_map(root / "labels.pbtxt", LABEL_MAP)
    rows = []
    for seed, vid in enumerate(("a", "b")):
        rng = np.random.default_rng(seed)
        with h5py.File(root / f"{vid}.h5", "w") as h5:
            jpeg = h5.create_dataset("jpeg", shape=(100,), dtype=h5py.vlen_dtype(np.uint8))
            for i in range(100):
                frame = rng.integers(80, 160, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
                frame[10:43, 3:22] = 250
                frame[5:45, 35:58] = 10
                jpeg[i] = encode_jpeg(frame, 90)
            h5.create_dataset("t", data=900.0 + np.arange(100) / FPS)
            h5.attrs.update({"fps": FPS, "height": HEIGHT, "width": WIDTH})
        # video b's right person leaves at odd keyframes: batches hold different numbers of boxes
        rows += [(vid, t, box, action, p) for t in KEYFRAMES for p, (box, action) in enumerate(PERSONS)
                 if not (vid == "b" and p == 1 and t % 2)]
    gt = AvaRows(video_id=[r[0] for r in rows], timestamp=[r[1] for r in rows], box=np.stack([r[2] for r in rows]),
                 action_id=[r[3] for r in rows], person_id=[r[4] for r in rows])
    write_ground_truth(root / "gt.csv", gt)
    write_boxes(root / "boxes.csv", AvaRows(gt.video_id[:0], gt.timestamp[:0], gt.box[:0]))
    return root


def command(data: Path, out: Path, params: BackboneParams, processes: int = 1) -> list[str]:
    """The stage's command line, as the finetune rule writes it (torchrun for several processes)."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return [*launcher, "-m", "pipeline.stages.finetune", "--label-map", str(data / "labels.pbtxt"),
            "--ground-truth", str(data / "gt.csv"), "--boxes", str(data / "boxes.csv"),
            "--stores", str(data / "a.h5"), str(data / "b.h5"), "--out", str(out),
            "--log-csv", str(out.with_suffix(".csv")), "--params", to_json(params), "--threads", "1"]


def train(data: Path, out: Path, params: BackboneParams = PARAMS, processes: int = 1) -> dict[str, torch.Tensor]:
    done = subprocess.run(command(data, out, params, processes), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(out, weights_only=True)
    return {f"{part}.{k}": v for part in ("backbone", "head") for k, v in state[part].items()}


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> dict[str, torch.Tensor]:
    return train(data, tmp_path_factory.mktemp("ref") / "backbone.pt")


def test_same_seed_same_weights_with_any_number_of_loader_workers(data, reference, tmp_path):
    assert_identical(reference, train(data, tmp_path / "again.pt"))
    workers = dataclasses.replace(PARAMS, compute=dataclasses.replace(PARAMS.compute, loader_workers=2))
    assert_identical(reference, train(data, tmp_path / "workers.pt", workers))
    other_seed = dataclasses.replace(PARAMS, seed=1)
    assert not torch.equal(reference["head.fc.weight"], train(data, tmp_path / "seed1.pt", other_seed)["head.fc.weight"])


def test_a_killed_training_resumes_from_its_last_epoch_and_ends_as_if_never_killed(data, tmp_path):
    params = dataclasses.replace(PARAMS, finetune=dataclasses.replace(PARAMS.finetune, epochs=4))
    out = tmp_path / "killed.pt"
    job = subprocess.Popen(command(data, out, params), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    deadline = time.monotonic() + 300
    while not resume_path(out).exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(job.pid, signal.SIGKILL)                       # as a scheduler kills a job: no clean-up
    job.wait()
    assert resume_path(out).exists() and not out.exists(), "the training ended before it could be killed"
    resumed = subprocess.run(command(data, out, params), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after epoch" in resumed.stderr
    assert "epoch 1: loss" not in resumed.stderr              # it went on where it stopped
    assert not resume_path(out).exists()                     # gone once the weights are written
    whole = train(data, tmp_path / "whole.pt", params)
    state = torch.load(out, weights_only=True)
    assert_identical(whole, {f"{p}.{k}": v for p in ("backbone", "head") for k, v in state[p].items()})


def test_a_state_of_other_parameters_is_not_resumed(data, tmp_path):
    out = tmp_path / "other.pt"
    params = dataclasses.replace(PARAMS, finetune=dataclasses.replace(PARAMS.finetune, epochs=1))
    train(data, out, params)
    torch.save({"params": "{}", "epoch": 1}, resume_path(out))   # the state of another run
    done = subprocess.run(command(data, out, params), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "made with other parameters, not resumed" in done.stderr


def test_two_gloo_processes_train_what_one_process_trains(data, tmp_path):
    """Two processes of 2 keyframes each against one of 4: the same global batches and flips, batch
    statistics shared (GlobalBatchNorm), the loss normalized over the global batch. What differs is
    the order of float sums (the all-reduce; batch-norm statistics from sums instead of Welford's
    running mean), about 1e-7 relative per step.

    Two settings make that visible rather than amplified: dropout is off (each process draws its own
    masks, so with it the two runs train on different masks), and the optimizer is SGD (AdamW
    divides each step by the root of the gradient's running square, so a weight whose gradient is
    near zero turns rounding differences into steps of up to lr: measured, 18 of 440k weights then
    differ by up to 8e-4). With SGD every weight agrees within 5e-5 (measured: 2e-5 after 8 steps)
    and every batch-norm statistic within 5e-5 relative (measured: 1.5e-5), while training moves the
    weights 20 times farther than that.
    """
    sgd = dataclasses.replace(PARAMS.finetune, optimizer="sgd", lr=0.05)
    params = dataclasses.replace(PARAMS, dropout=0.0, finetune=sgd)
    reference = train(data, tmp_path / "one.pt", params)
    two = train(data, tmp_path / "two.pt", params, processes=2)
    assert two.keys() == reference.keys()
    for key in two:
        torch.testing.assert_close(two[key], reference[key], rtol=5e-5, atol=5e-5, msg=key)
    torch.manual_seed(PARAMS.seed)
    initial = build_action_model(PARAMS.arch, PARAMS.modality, len(LABEL_MAP), PARAMS.roi_size, PARAMS.roi_pool)
    moved = float((initial.head.fc.weight.detach() - reference["head.fc.weight"]).abs().max())
    assert moved > 1e-3, moved                                # training moved them far beyond the tolerance
