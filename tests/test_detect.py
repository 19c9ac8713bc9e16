"""The person detector: COCO checkpoints, training, inference, precomputed boxes, metrics, training boxes;
the detector_train, detect and detect_precomputed stages."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from pipeline.ava.formats import AvaRows, LabelMap, keyframe_rows, read_boxes, write_ground_truth, write_keyframes
from pipeline.batches import GlobalBatchSampler, epoch_order
from pipeline.detect import training
from pipeline.detect.boxes import distinct_persons
from pipeline.detect.inference import detect_images, detect_keyframes
from pipeline.detect.keyframes import KeyframeImages
from pipeline.detect.metrics import detector_ap, detector_metrics, match_keyframe
from pipeline.detect.model import (
    PREDICTOR,
    autocast_parts,
    build_detector,
    coco_detector,
    load_state_dict_file,
    max_image_size,
    mixed_precision,
    reduce_to_person,
)
from pipeline.detect.precomputed import distinct_boxes
from pipeline.detect.training_boxes import DETECTION, GROUND_TRUTH, training_boxes
from pipeline.errors import InputError
from pipeline.media.frames import encode_jpeg
from pipeline.params import ComputeParams, DetectorParams, TrainSettings, to_json
from pipeline.stages import detect, detect_precomputed, detector_train
from pipeline.training_state import resume_path

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent

SMALL = DetectorParams(arch="resnet18_fpn", weights=None, min_size=96, max_size=None,
                       train=TrainSettings(epochs=1, lr=0.01, batch_size=2, weight_decay=1e-4, optimizer="sgd"),
                       score_threshold=0.5, nms_iou=0.5, max_per_keyframe=3, seed=0,
                       compute=ComputeParams(device="cpu", precision="off", loader_workers=0))


def small(**changes) -> DetectorParams:
    return dataclasses.replace(SMALL, **changes)


def rows(video_ids, timestamps, boxes, action_id=None, person_id=None, score=None) -> AvaRows:
    return AvaRows(np.asarray(video_ids), np.asarray(timestamps), np.asarray(boxes, np.float32).reshape(-1, 4),
                   None if action_id is None else np.asarray(action_id),
                   None if person_id is None else np.asarray(person_id),
                   None if score is None else np.asarray(score, np.float32))


def figure_scene(rng: np.random.Generator, height: int = 96, width: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A noisy background with one or two filled upright 'persons' (head and body): image, boxes [n, 4]."""
    image = rng.integers(60, 120, (height, width, 3), dtype=np.uint8)
    boxes = []
    for _ in range(int(rng.integers(1, 3))):
        h = int(rng.integers(40, 70))
        w = h // 3
        x = int(rng.integers(0, width - w))
        y = int(rng.integers(0, height - h))
        colour = tuple(int(c) for c in rng.integers(150, 256, 3))
        cv2.circle(image, (x + w // 2, y + w // 2), w // 2, colour, -1)
        cv2.rectangle(image, (x, y + w), (x + w - 1, y + h - 1), colour, -1)
        boxes.append([x / width, y / height, (x + w) / width, (y + h) / height])
    return image, np.asarray(boxes, np.float32)


def write_frame_store(path: Path, images: np.ndarray, times: np.ndarray) -> None:
    """A frame store in the layout of ``pipeline.media.frames``: ``jpeg`` (vlen uint8), ``t``; attrs."""
    with h5py.File(path, "w") as h5:
        jpeg = h5.create_dataset("jpeg", shape=(len(images),), dtype=h5py.vlen_dtype(np.uint8))
        for i, image in enumerate(images):
            jpeg[i] = encode_jpeg(image, 95)
        h5.create_dataset("t", data=np.asarray(times, np.float64))
        h5.attrs.update({"fps": 1.0, "height": images.shape[1], "width": images.shape[2]})


# ------------------------------------------------------------------------------------------ model

def test_coco_checkpoint_is_reduced_to_the_person_class(tmp_path):
    torch.manual_seed(0)
    coco = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).state_dict()
    path = tmp_path / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"
    torch.save(coco, path)
    model = coco_detector(small(arch="resnet50_fpn", weights=str(path)), path)
    predictor = model.roi_heads.box_predictor
    assert predictor.cls_score.out_features == 2 and predictor.bbox_pred.out_features == 8
    assert torch.equal(predictor.cls_score.weight, coco[f"{PREDICTOR}.cls_score.weight"][[0, 1]])
    assert torch.equal(predictor.cls_score.bias, coco[f"{PREDICTOR}.cls_score.bias"][[0, 1]])
    assert torch.equal(predictor.bbox_pred.weight, coco[f"{PREDICTOR}.bbox_pred.weight"][:8])
    assert torch.equal(predictor.bbox_pred.bias, coco[f"{PREDICTOR}.bbox_pred.bias"][:8])
    layer = "backbone.body.layer3.0.conv1.weight"
    assert torch.equal(model.state_dict()[layer], coco[layer])
    assert not any(p.requires_grad for p in model.backbone.body.layer1.parameters())


def test_reduce_rejects_other_class_counts_and_other_files(tmp_path):
    state = {f"{PREDICTOR}.cls_score.weight": torch.zeros(5, 3)}
    with pytest.raises(InputError, match="5 classes"):
        reduce_to_person(state, "x.pth")
    with pytest.raises(InputError, match="not a torchvision Faster R-CNN"):
        reduce_to_person({"fc.weight": torch.zeros(2, 2)}, "x.pth")
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(InputError, match="bad.pth"):
        load_state_dict_file(bad)


def test_checkpoint_of_another_architecture_is_an_input_error(tmp_path):
    path = tmp_path / "r18.pt"
    torch.save(build_detector(SMALL, pretrained=False).state_dict(), path)
    with pytest.raises(InputError, match="does not fit the configured detector"):
        coco_detector(small(arch="mobilenet_v3_fpn"), path)


def test_mixed_precision_decodes_boxes_in_float32():
    """Under autocast the backbone and heads compute in bfloat16, and the boxes still come out in float32
    (torchvision decodes them in its heads' dtype: whole pixels off in bfloat16); on the CPU nothing changes."""
    torch.manual_seed(0)
    model = build_detector(small(score_threshold=0.1), pretrained=False).eval()
    keys = list(model.state_dict())
    assert mixed_precision(model, torch.device("cpu"), "bf16") is model
    assert not hasattr(model.backbone, "_autocast_wrapped")
    seen = []
    model.backbone.body.register_forward_hook(lambda module, args, out: seen.append(out["0"].dtype))
    context = lambda: torch.autocast("cpu", dtype=torch.bfloat16)   # noqa: E731  (CUDA's stands in)
    wrapped = autocast_parts(model, context).backbone.forward
    assert autocast_parts(model, context).backbone.forward is wrapped   # twice: wrapped once
    image = figure_scene(np.random.default_rng(0))[0]
    with torch.inference_mode():
        out = model([training.image_tensor(image)])[0]
    assert seen == [torch.bfloat16] and len(out["boxes"]) > 0
    assert out["boxes"].dtype == torch.float32 and out["scores"].dtype == torch.float32
    assert list(model.state_dict()) == keys


# ------------------------------------------------------------------------------------------ training

def test_training_on_tiny_images_lowers_the_loss():
    rng = np.random.default_rng(0)
    samples = [figure_scene(rng) for _ in range(8)]
    torch.manual_seed(0)
    model = build_detector(SMALL, pretrained=False)
    settings = TrainSettings(epochs=6, lr=0.01, batch_size=4, weight_decay=1e-4, optimizer="sgd")
    log = training.fit(model, samples, settings, seed=0, frozen_norm=False)
    assert len(log) == 6 and log[-1]["iterations"] == 12
    assert log[-1]["loss"] < 0.8 * log[0]["loss"]
    assert not model.training


def test_flip_mirrors_boxes():
    image = np.zeros((4, 10, 3), np.uint8)
    image[:, 1] = 255
    flipped, boxes = training.flip_horizontal(image, np.array([[0.1, 0.2, 0.3, 0.9]], np.float32))
    assert flipped[0, 8, 0] == 255
    np.testing.assert_allclose(boxes, [[0.7, 0.2, 0.9, 0.9]], atol=1e-6)


def test_training_keyframes_have_one_box_per_person():
    gt = rows(["a"] * 4 + ["b"], [902, 902, 902, 903, 902],
              [[0, 0, .5, .5], [0, 0, .5, .5], [.5, .5, 1, 1], [0, 0, .2, .2], [0, 0, 1, 1]],
              action_id=[1, 2, 1, 1, 3], person_id=[0, 0, 1, 0, 0])
    kfs = training.training_keyframes(gt)
    assert [(k.video_id, k.timestamp, len(k.boxes)) for k in kfs] == [("a", 902, 2), ("a", 903, 1), ("b", 902, 1)]


def test_fit_uses_the_optimizer_and_weight_decay_of_the_params(monkeypatch):
    seen = {}

    def fake_optimizer(name, parameters, lr, weight_decay):
        seen.update(name=name, lr=lr, weight_decay=weight_decay)
        raise StopIteration

    monkeypatch.setattr(training, "make_optimizer", fake_optimizer)
    settings = TrainSettings(epochs=1, lr=0.02, batch_size=1, weight_decay=0.03, optimizer="adamw")
    with pytest.raises(StopIteration):
        training.fit(build_detector(SMALL, pretrained=False), [], settings, seed=0, frozen_norm=False)
    assert seen == {"name": "adamw", "lr": 0.02, "weight_decay": 0.03}


def test_max_size_of_the_params_or_torchvision_ratio():
    assert max_image_size(SMALL) == 160 and build_detector(SMALL, pretrained=False).transform.max_size == 160
    assert build_detector(small(max_size=200), pretrained=False).transform.max_size == 200


def test_keyframe_images_take_frame_store_files(tmp_path):
    write_frame_store(tmp_path / "a.h5", np.zeros((1, 8, 8, 3), np.uint8), [902.0])
    with KeyframeImages([tmp_path / "a.h5"]) as images:
        assert images.read("a", np.array([902])).shape == (1, 8, 8, 3)
        copy = pickle.loads(pickle.dumps(images))   # what a spawned DataLoader worker gets: paths, no handles
        assert copy.read("a", np.array([902])).shape == (1, 8, 8, 3) and copy.store("a") is not images.store("a")
        with pytest.raises(InputError, match="no frame store for video 'b' among the 1 given"):
            images.read("b", np.array([902]))
    with pytest.raises(ValueError, match="two frame stores for video 'a'"):
        KeyframeImages([tmp_path / "a.h5", tmp_path / "x" / "a.h5"])


def write_training_set(folder: Path, n: int = 4) -> tuple[Path, Path, list[tuple[np.ndarray, np.ndarray]]]:
    """A frame store of ``n`` figure scenes at 900, 901, ... s and their ground truth: (store, gt CSV, scenes)."""
    rng = np.random.default_rng(1)
    scenes = [figure_scene(rng) for _ in range(n)]
    times = np.arange(900.0, 900.0 + n)
    store = folder / "-vid.h5"
    write_frame_store(store, np.stack([s[0] for s in scenes]), times)
    gt = AvaRows.concat([rows(["-vid"] * len(b), [int(t)] * len(b), b, action_id=[1] * len(b),
                              person_id=list(range(len(b)))) for t, (_, b) in zip(times, scenes)])
    write_ground_truth(folder / "gt.csv", gt)
    return store, folder / "gt.csv", scenes


def test_train_and_detect_command_lines(tmp_path):
    """Train for an epoch from frame stores, then detect on every keyframe: CSV format, threshold, cap."""
    store, _, scenes = write_training_set(tmp_path)
    checkpoint = tmp_path / "detector.pt"
    params = to_json(SMALL)
    assert detector_train.main(["--frames", str(store), "--ground-truth", str(tmp_path / "gt.csv"),
                                "--out", str(checkpoint), "--log-csv", str(tmp_path / "log.csv"),
                                "--params", params, "--threads", "1"]) == 0
    state = torch.load(checkpoint, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    side = json.loads(Path(f"{checkpoint}.provenance.json").read_text())
    assert json.loads(side["params"])["arch"] == "resnet18_fpn"
    assert (tmp_path / "log.csv").read_text().startswith("epoch,iterations,loss,")
    # the same seed gives the same detector, its random initialisation included
    assert detector_train.main(["--frames", str(store), "--ground-truth", str(tmp_path / "gt.csv"),
                                "--out", str(tmp_path / "again.pt"), "--params", params, "--threads", "1"]) == 0
    again = torch.load(tmp_path / "again.pt", weights_only=True)
    assert state.keys() == again.keys() and all(torch.equal(state[k], again[k]) for k in state)

    # A detector that fires: the operating threshold and the cap must hold on its output.
    loose = small(score_threshold=0.1)
    write_keyframes(tmp_path / "kf.csv", [("-vid", t) for t in (900, 901, 902, 903)])
    args = ["--checkpoint", str(checkpoint), "--frames", str(store), "--keyframes", str(tmp_path / "kf.csv"),
            "--out", str(tmp_path / "boxes.csv"), "--metrics", str(tmp_path / "m.json"), "--threads", "1"]
    torch.manual_seed(0)
    model = build_detector(loose, pretrained=False).eval()
    with torch.no_grad():  # random heads score about 1/2; the boxes below pass through the real path
        found = detect_images(model, np.stack([s[0] for s in scenes]))
    assert any(len(s) for _, s in found)
    torch.save(model.state_dict(), checkpoint)
    assert detect.main(args + ["--params", to_json(loose)]) == 0
    lines = (tmp_path / "boxes.csv").read_text().splitlines()
    assert lines
    for line in lines:
        fields = line.split(",")
        assert len(fields) == 8 and fields[0] == "-vid" and fields[6] == ""
        assert len(fields[1]) == 4 and 900 <= int(fields[1]) <= 903
        assert 0 <= float(fields[2]) <= float(fields[4]) <= 1 and 0 <= float(fields[3]) <= float(fields[5]) <= 1
    boxes = read_boxes(tmp_path / "boxes.csv")
    assert (boxes.score >= 0.1).all()
    assert np.bincount(boxes.timestamp - 900).max() <= SMALL.max_per_keyframe
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["recall"] is None and "no ground truth" in metrics["note"]
    assert metrics["n_detections"] == len(boxes)

    assert detect.main(args + ["--params", to_json(loose), "--ground-truth", str(tmp_path / "gt.csv")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n_gt_boxes"] == sum(len(b) for _, b in scenes)
    assert 0 <= metrics["recall"] <= 1 and 0 <= metrics["ap50"] <= 1

    with pytest.raises(InputError, match="min_size"):
        detect.main(args + ["--params", to_json(small(score_threshold=0.1, min_size=128))])
    write_keyframes(tmp_path / "late.csv", [("-vid", 905)])
    with pytest.raises(InputError, match="no frame within 0.5 s of keyframe 905"):
        detect.main([*args[:5], str(tmp_path / "late.csv"), *args[6:], "--params", to_json(loose)])
    Path(f"{checkpoint}.provenance.json").unlink()
    with pytest.raises(InputError, match="no frame store"):
        detect.main([*args[:3], str(tmp_path / "nowhere" / "-vid.h5"), *args[4:], "--params", to_json(loose)])
    with pytest.raises(SystemExit):   # --params that are not DetectorParams: the parser's usage error
        detect.main(args + ["--params", json.dumps({"arch": "resnet18_fpn"})])


# ------------------------------------------------------------------------------------------ workers, processes, resume

TWO_EPOCHS = small(train=TrainSettings(epochs=2, lr=0.01, batch_size=2, weight_decay=1e-4, optimizer="sgd"))


def with_workers(params: DetectorParams, workers: int) -> DetectorParams:
    return dataclasses.replace(params, compute=dataclasses.replace(params.compute, loader_workers=workers))


def train_args(folder: Path, out: Path, params: DetectorParams) -> list[str]:
    return ["--frames", str(folder / "-vid.h5"), "--ground-truth", str(folder / "gt.csv"), "--out", str(out),
            "--log-csv", f"{out}.log.csv", "--params", to_json(params), "--threads", "1"]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def epoch_rows(stderr: str) -> list[dict[str, float]]:
    """The log rows that the stage prints (JSON lines), wherever a progress bar left the line."""
    return [json.loads(line[line.index('{"epoch"'):]) for line in stderr.splitlines() if '{"epoch"' in line]


def identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A folder with 4 training images and the detector of a 2-epoch, one-process, no-worker
    training on them (batches of 2): ``reference.pt``, ``reference.pt.log.csv``."""
    folder = tmp_path_factory.mktemp("training")
    write_training_set(folder)
    assert detector_train.main(train_args(folder, folder / "reference.pt", TWO_EPOCHS)) == 0
    return folder


def test_global_batches_give_each_process_its_share_of_every_batch():
    one = GlobalBatchSampler(7, 4, seed=3, pad_last=True)
    one.set_epoch(1)
    order = epoch_order(3, 1, 7)
    assert list(one) == [[(1, int(i)) for i in order[:4]], [(1, int(i)) for i in order[4:]]]
    shares = []
    for rank in range(2):
        batches = GlobalBatchSampler(7, 4, seed=3, rank=rank, world_size=2, pad_last=True)
        batches.set_epoch(1)
        shares.append(list(batches))
    assert [len(s) for s in shares] == [2, 2] and all(len(b) == 2 for s in shares for b in s)
    assert shares[0][0] + shares[1][0] == list(one)[0]
    # the last batch (3 images) is topped up with the epoch's first image, as DistributedSampler pads
    assert shares[0][1] + shares[1][1] == list(one)[1] + [(1, int(order[0]))]
    with pytest.raises(ValueError, match="not divisible by the 2 training processes"):
        GlobalBatchSampler(7, 3, seed=3, rank=0, world_size=2, pad_last=True)


def test_augmentation_and_sampling_draws_belong_to_the_image_and_epoch():
    rng = np.random.default_rng(1)
    data = training.AugmentedSamples([figure_scene(rng) for _ in range(4)], seed=0)
    x, t, _ = data[(1, 2)]
    for key in [(0, 2), (1, 3), (1, 0)]:    # other items drawn in between change nothing
        data[key]
    x2, t2, _ = data[(1, 2)]
    assert torch.equal(x, x2) and torch.equal(t["boxes"], t2["boxes"])
    assert not torch.equal(x, data[(0, 2)][0])   # another epoch, other draws
    assert training.image_seed(0, (1, 2), training.RPN_DRAWS) != training.image_seed(0, (1, 2), training.ROI_DRAWS)


def test_loader_workers_do_not_change_the_detector(trained):
    out = trained / "workers.pt"
    assert detector_train.main(train_args(trained, out, with_workers(TWO_EPOCHS, 2))) == 0
    assert identical(weights(out), weights(trained / "reference.pt"))


def test_detections_do_not_depend_on_who_reads_the_images(tmp_path):
    """Worker processes that read ahead (each opening its own stores) give the boxes of reading in turn,
    in keyframe order, batches cut where the video changes."""
    store, _, scenes = write_training_set(tmp_path, 5)
    other = tmp_path / "other.h5"
    write_frame_store(other, np.stack([s[0] for s in scenes[:2]]), [900.0, 901.0])
    keyframes = keyframe_rows(["-vid", "-vid", "-vid", "other", "other", "-vid", "-vid"],
                              [900, 901, 902, 900, 901, 903, 904])
    torch.manual_seed(0)
    model = build_detector(small(score_threshold=0.1), pretrained=False).eval()
    with KeyframeImages([store, other]) as images:
        found = [detect_keyframes(model, images, keyframes, loader_workers=w) for w in (0, 2)]
        first_batch = detect_images(model, images.read("-vid", np.array([900, 901, 902])))   # then other 900
    assert len(found[0]) > 0
    for name in ("video_id", "timestamp", "box", "score"):
        assert np.array_equal(getattr(found[0], name), getattr(found[1], name))
    at_902 = (found[0].video_id == "-vid") & (found[0].timestamp == 902)
    assert np.array_equal(found[0].box[at_902], first_batch[2][0])
    assert np.array_equal(found[0].score[at_902], first_batch[2][1])


class Killed(Exception):
    """Stands for the job being killed right after its first epoch's state is saved."""


def test_a_killed_training_resumes_and_ends_bit_identical(trained, monkeypatch, capsys):
    out = trained / "killed.pt"
    real_save = detector_train.save_state

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise Killed

    monkeypatch.setattr(detector_train, "save_state", save_then_die)
    with pytest.raises(Killed):
        detector_train.main(train_args(trained, out, TWO_EPOCHS))
    assert resume_path(out).exists() and not out.exists()
    monkeypatch.setattr(detector_train, "save_state", real_save)
    capsys.readouterr()
    assert detector_train.main(train_args(trained, out, TWO_EPOCHS)) == 0
    err = capsys.readouterr().err
    assert "resuming after epoch 1" in err
    assert [r["epoch"] for r in epoch_rows(err)] == [2]                # only the second epoch ran again
    assert identical(weights(out), weights(trained / "reference.pt"))
    log = Path(f"{out}.log.csv").read_text().splitlines()
    reference = (trained / "reference.pt.log.csv").read_text().splitlines()
    assert len(log) == 3 and [r.rsplit(",", 1)[0] for r in log] == [r.rsplit(",", 1)[0] for r in reference]
    assert not resume_path(out).exists()


def test_two_cpu_processes_through_torchrun_train_as_one(trained):
    """2 gloo processes launched as the rule launches them (each takes 1 image of every batch of 2)
    write one detector, close to the one-process training's.

    Tolerance: each image's draws (augmentation, anchor and proposal sampling) are its own, whatever
    process it lands on, every loss is a mean over a fixed number of samples per image, and the light
    resnet18_fpn has GroupNorm (no batch statistics), so the averaged gradient of the two processes is
    the one-process gradient up to float32 summation order (about 1e-7 relative). SGD passes that on
    linearly: measured, the weights differ by at most 2.5e-6, 1.7e-4 of the largest change that
    training makes (0.015) over 4 steps. The test allows 1e-3 of it; a training whose processes do
    not share gradients (no DDP: 0.14 of it), or that samples anchors and proposals from torch's
    global generator (torchvision's sampler: 0.084 of it), is off by 80 times that and more.
    """
    out = trained / "ddp.pt"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "pipeline.stages.detector_train", *train_args(trained, out, TWO_EPOCHS)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    rows_printed = epoch_rows(done.stderr)
    assert [r["epoch"] for r in rows_printed] == [1, 2]             # rank 0 alone reports
    assert done.stderr.count("2 epochs on cpu (2 process(es))") == 1
    assert json.loads(json.loads(Path(f"{out}.provenance.json").read_text())["params"])["processes"] == 2
    assert rows_printed[1]["loss"] < rows_printed[0]["loss"]
    assert not resume_path(out).exists() and len(Path(f"{out}.log.csv").read_text().splitlines()) == 3
    torch.manual_seed(SMALL.seed)
    initial = build_detector(SMALL, pretrained=False).state_dict()
    one, two = weights(trained / "reference.pt"), weights(out)
    change = max((one[k] - initial[k]).abs().max().item() for k in one if one[k].is_floating_point())
    gap = max((one[k] - two[k]).abs().max().item() for k in one)
    assert 0 < change and gap <= 1e-3 * change, (gap, change)


# ------------------------------------------------------------------------------------------ precomputed

SLOWFAST_ROWS = """\
vid_a,0902,0.100,0.200,0.300,0.900,12,0.950
vid_a,0902,0.100,0.200,0.300,0.900,17,0.950
vid_a,0902,0.500,0.100,0.700,0.800,,0.300
vid_a,0903,0.400,0.100,0.600,0.800,,0.700
vid_a,0903,0.400,0.100,0.600,0.800,80,0.650
vid_b,0902,0.000,0.000,0.500,1.000,,0.990
vid_a,0904,0.200,0.200,0.400,0.900,,0.600
"""


def test_precomputed_boxes_in_slowfast_format(tmp_path, capsys):
    (tmp_path / "ava_detection_val_boxes_and_labels.csv").write_text(SLOWFAST_ROWS)
    write_keyframes(tmp_path / "kf.csv", [("vid_a", t) for t in (902, 903, 904, 905)])
    write_ground_truth(tmp_path / "gt.csv", rows(["vid_a", "vid_a", "vid_a"], [902, 902, 905],
                                                 [[.1, .2, .3, .9], [.5, .1, .7, .8], [.1, .1, .2, .2]],
                                                 action_id=[12, 12, 12], person_id=[0, 1, 0]))
    out, metrics_path = tmp_path / "val.boxes.csv", tmp_path / "val.metrics.json"
    assert detect_precomputed.main(["--boxes", str(tmp_path / "ava_detection_val_boxes_and_labels.csv"),
                                    "--keyframes", str(tmp_path / "kf.csv"), "--out", str(out),
                                    "--metrics", str(metrics_path), "--params", to_json(SMALL),
                                    "--ground-truth", str(tmp_path / "gt.csv")]) == 0
    assert out.read_text().splitlines() == [
        "vid_a,0902,0.1,0.2,0.3,0.9,,0.95",
        "vid_a,0903,0.4,0.1,0.6,0.8,,0.7",
        "vid_a,0904,0.2,0.2,0.4,0.9,,0.6",
    ]
    log = capsys.readouterr().err
    assert "1 boxes on 1 keyframes not in" in log and "1 boxes under score 0.5" in log
    assert "1 of 4 keyframes have no box" in log
    metrics = json.loads(metrics_path.read_text())
    assert metrics["n_file_rows"] == 7 and metrics["n_file_boxes"] == 5
    assert metrics["n_file_boxes_outside_keyframes"] == 1
    # 3 persons; at 0.5 one true positive (0902) and two false positives (0903, 0904).
    assert metrics["recall"] == pytest.approx(1 / 3) and metrics["precision"] == pytest.approx(1 / 3)
    # All scores: 0.95 TP, 0.7 FP, 0.6 FP, 0.3 TP -> AP = 1/3 * 1 + 1/3 * 2/4.
    assert metrics["ap50"] == pytest.approx(1 / 3 + 1 / 6)


def test_precomputed_include_negative_rows(tmp_path):
    """LFB's ``include_negative`` file marks boxes without a label with action -1."""
    (tmp_path / "neg.csv").write_text("vid_a,0902,0.100,0.200,0.300,0.900,-1,0.742486\n"
                                      "vid_a,0902,0.100,0.200,0.300,0.900,12,0.742486\n"
                                      "vid_a,0902,0.500,0.200,0.700,0.900,-1,0.400000\n")
    write_keyframes(tmp_path / "kf.csv", [("vid_a", 902)])
    out = tmp_path / "boxes.csv"
    assert detect_precomputed.main(["--boxes", str(tmp_path / "neg.csv"), "--keyframes", str(tmp_path / "kf.csv"),
                                    "--out", str(out), "--metrics", str(tmp_path / "m.json"),
                                    "--params", to_json(SMALL)]) == 0
    assert out.read_text().splitlines() == ["vid_a,0902,0.1,0.2,0.3,0.9,,0.742486"]


def test_distinct_boxes_keep_the_highest_score():
    r = rows(["a", "a", "a", "b"], [1, 1, 1, 1], [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, .5, .5], [0, 0, 1, 1]],
             action_id=[3, 4, -1, 3], score=[0.2, 0.9, 0.4, 0.1])
    d = distinct_boxes(r)
    assert d.video_id.tolist() == ["a", "a", "b"]
    np.testing.assert_allclose(d.score, [0.9, 0.4, 0.1])
    assert (d.action_id == -1).all()


# ------------------------------------------------------------------------------------------ metrics

def test_matching_is_greedy_in_descending_score():
    gt = np.array([[0, 0, 1, 1], [0, 0, .5, 1]], np.float32)
    det = np.array([[0, 0, .5, 1], [0, 0, 1, 1], [0, 0, .5, 1], [.6, .6, .9, .9]], np.float32)
    # det 2 (score .95) takes gt 1; det 0 (.9) finds gt 1 taken (its best) -> FP even though IoU(gt 0) = .5
    tp = match_keyframe(gt, det, np.array([0.9, 0.8, 0.95, 0.99]), 0.5)
    assert tp.tolist() == [False, True, True, False]


def test_detector_metrics_on_a_hand_made_case():
    gt = rows(["v", "v", "v", "v", "w"], [1, 1, 1, 2, 1],
              [[0, 0, .5, .5], [0, 0, .5, .5], [.5, .5, 1, 1], [0, 0, 1, 1], [0, 0, .2, .2]],
              action_id=[1, 2, 1, 1, 1], person_id=[0, 0, 1, 0, 0])
    det = rows(["v", "v", "v", "v", "v", "w", "x"], [1, 1, 1, 2, 3, 1, 1],
               [[0, 0, .5, .5], [0, 0, .5, .52], [.5, .5, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, .2, .2],
                [0, 0, 1, 1]],
               score=[0.9, 0.8, 0.3, 0.7, 0.6, 0.95, 0.99])
    keyframes = [("v", 1), ("v", 2), ("v", 3), ("w", 1)]          # x,1 is not asked for
    m = detector_metrics(det, keyframes, gt, score_threshold=0.5)
    # 4 persons (v1 has two rows for person 0). At >= 0.5: v1 TP + duplicate FP, v2 TP, v3 FP (no GT), w1 TP.
    assert m["n_gt_boxes"] == 4 and m["n_detections"] == 5 and m["n_true_positives"] == 3
    assert m["recall"] == pytest.approx(3 / 4) and m["precision"] == pytest.approx(3 / 5)
    assert m["n_detections_on_keyframes_without_gt"] == 1 and m["n_detections_all_scores"] == 6
    # By score: .95 TP, .9 TP, .8 FP, .7 TP, .6 FP, .3 TP -> AP = (1 + 1 + 3/4 + 4/6) / 4
    assert m["ap50"] == pytest.approx((1 + 1 + 3 / 4 + 4 / 6) / 4)
    none = detector_metrics(det, keyframes, None, 0.5)
    assert none["recall"] is None and none["precision"] is None and none["ap50"] is None and none["note"]


def test_average_precision_edge_cases():
    assert detector_ap(np.array([]), np.array([], bool), 3) == 0.0
    assert detector_ap(np.array([.9, .1]), np.array([True, True]), 2) == pytest.approx(1.0)
    assert detector_ap(np.array([.9, .1]), np.array([False, True]), 1) == pytest.approx(0.5)
    # equal scores keep the order given (a stable ranking): TP first, then FP
    assert detector_ap(np.array([.5, .5]), np.array([True, False]), 1) == 1.0
    assert detector_ap(np.array([.5, .5]), np.array([False, True]), 1) == 0.5
    with pytest.raises(ValueError, match="without ground truth"):
        detector_ap(np.array([.5]), np.array([True]), 0)


def previous_detector_ap(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """The detector metrics' own VOC AP before they used the evaluator's (recall closed at its last value)."""
    order = np.argsort(-scores, kind="stable")
    cum_tp = np.cumsum(tp[order].astype(np.float64))
    precision = np.concatenate([[0.0], cum_tp / np.arange(1, len(order) + 1), [0.0]])
    recall = cum_tp / n_gt
    recall = np.concatenate([[0.0], recall, [recall[-1] if len(recall) else 0.0]])
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * envelope[steps]))


@pytest.mark.parametrize("tied", [False, True])
def test_detector_ap_is_the_previous_arithmetic(tied):
    """The evaluator's AP closes the recall at 1 with precision 0: the same terms plus a last term of 0,
    so the same AP; np.sum's pairwise grouping of that one more term can move the last bits (a few ulp)."""
    rng = np.random.default_rng(0)
    exact = 0
    for _ in range(300):
        n = int(rng.integers(0, 300))
        scores = rng.random(n).astype(np.float32)
        if tied:
            scores = np.round(scores * 4) / 4
        tp = rng.random(n) < rng.random()
        n_gt = int(tp.sum()) + int(rng.integers(0 if tp.any() else 1, 20))
        old, new = previous_detector_ap(scores, tp, n_gt), detector_ap(scores, tp, n_gt)
        assert abs(old - new) <= 4 * np.spacing(max(old, new))
        steps = len(np.unique(np.cumsum(tp[np.argsort(-scores, kind="stable")])))   # distinct recalls + 0
        if tp.sum() == n_gt or steps < 8:                # the same sum, term for term: bit-identical
            assert old == new
            exact += 1
    assert exact > 20


# ------------------------------------------------------------------------------------------ training boxes

def test_training_boxes_on_a_hand_made_case():
    label_map = LabelMap((3, 7, 11), ("stand", "carry", "talk"), (None, None, None))
    gt = rows(["v", "v", "v", "v"], [1, 1, 1, 2], [[0, 0, .5, .5], [0, 0, .5, .5], [.5, .5, 1, 1], [0, 0, 1, 1]],
              action_id=[3, 11, 7, 3], person_id=[0, 0, 1, 0])
    det = rows(["v", "v", "v", "v", "w"], [1, 1, 1, 3, 1],
               [[0, 0, .5, .55], [.5, .5, .8, .8], [.52, .5, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]],
               score=[0.9, 0.8, 0.7, 0.9, 0.9])
    boxes, labels, source = training_boxes(gt, det, label_map, 0.5)
    # v1: GT persons 0 and 1, detection 0 (IoU .91 with person 0) and 2 (IoU .96 with person 1);
    # detection 1 (IoU .36) and the detections on keyframes without ground truth are not training boxes.
    assert source.tolist() == [GROUND_TRUTH, GROUND_TRUTH, DETECTION, DETECTION, GROUND_TRUTH]
    assert boxes.timestamp.tolist() == [1, 1, 1, 1, 2]
    assert labels.tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 1], [0, 1, 0], [1, 0, 0]]
    assert labels.dtype == np.uint8 and source.dtype == np.uint8
    np.testing.assert_allclose(boxes.box[2], [0, 0, .5, .55])
    np.testing.assert_allclose(boxes.score[:3], [1.0, 1.0, 0.9])
    assert boxes.person_id.tolist() == [0, 1, 0, 1, 0] and (boxes.action_id == -1).all()
    _, _, strict = training_boxes(gt, det, label_map, 0.95)
    assert strict.tolist() == [GROUND_TRUTH, GROUND_TRUTH, DETECTION, GROUND_TRUTH]


def test_training_boxes_reject_actions_outside_the_label_map():
    label_map = LabelMap((3,), ("stand",), (None,))
    gt = rows(["v"], [1], [[0, 0, 1, 1]], action_id=[5], person_id=[0])
    with pytest.raises(ValueError, match=r"\[5\]"):
        training_boxes(gt, AvaRows.empty(), label_map, 0.5)
    empty, labels, source = training_boxes(AvaRows.empty(), AvaRows.empty(), label_map, 0.5)
    assert len(empty) == 0 and labels.shape == (0, 1) and source.shape == (0,)


def test_distinct_persons_without_person_ids_use_the_box():
    gt = rows(["v", "v", "v"], [1, 1, 1], [[0, 0, .5, .5], [0, 0, .5, .5], [0, 0, .6, .5]], action_id=[1, 2, 1])
    assert len(distinct_persons(gt)) == 2
