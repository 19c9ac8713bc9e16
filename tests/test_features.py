"""A tiny end-to-end run of finetune -> features -> head -> predict, checking every artifact's contract."""

from __future__ import annotations

import csv
import dataclasses
import json

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.ava.formats import (AvaRows, LabelMap, read_detections, read_label_map, write_boxes, write_ground_truth,
                                  write_label_map)
from pipeline.data.clips import ClipSpec
from pipeline.errors import InputError
from pipeline.feature_store import FeatureRows, combine_features, read_features, read_model_features, write_features
from pipeline.media.frames import encode_jpeg
from pipeline.models.registry import build_action_model
from pipeline.params import BackboneParams, ComputeParams, ModelParams, FinetuneRecipe, TrainRecipe, to_json
from pipeline.scores import sigmoid
from pipeline.stages import features as features_stage
from pipeline.stages.features import main as features_main
from pipeline.stages.finetune import main as finetune_main
from pipeline.stages.head import main as head_main
from pipeline.stages.predict import main as predict_main

torch.set_num_threads(1)

FPS = 10.0
HEIGHT, WIDTH = 48, 64
LABEL_MAP = LabelMap(ids=(3, 7, 12), names=("stand", "carry", "talk"),
                     label_types=("PERSON_MOVEMENT", "OBJECT_MANIPULATION", "PERSON_INTERACTION"))
KEYFRAMES = (901, 902, 903)
CPU = ComputeParams(device="cpu", precision="off", loader_workers=0)
BACKBONE_PARAMS = BackboneParams(
    arch="r3d_tiny", modality="rgb", clip_frames=4, clip_stride=1, input_size=32, roi_size=3, roi_pool="max",
    roi_op="align", context_frames=1, weights_layout="torchvision",
    weights=None, finetune=FinetuneRecipe(epochs=2, lr=0.01, batch_size=2, weight_decay=0.01, optimizer="adamw", momentum=0.9, nesterov=False, schedule="constant", warmup_epochs=0.0, lr_steps=[], lr_step_factor=0.1, freeze_bn=False, head="linear"),
    seed=0, train_box_iou=0.5, dropout=0.3, compute=CPU)
BACKBONE = to_json(BACKBONE_PARAMS)


def model(head: str, backbones=("a",), combine: str = "concat", epochs: int = 5, weight_decay: float = 0.0001):
    """A model's parameters (one backbone unless told), for head and predict."""
    return ModelParams(backbones=list(backbones), combine=combine, head=head, seed=0, compute=CPU,
                       train=TrainRecipe(epochs=epochs, lr=0.01, batch_size=8, weight_decay=weight_decay,
                                           optimizer="adamw", momentum=0.9, nesterov=False, schedule="constant", warmup_epochs=0.0, lr_steps=[], lr_step_factor=0.1))
# two persons per keyframe: the left one stands (class 3), the right one carries (7) and talks (12)
PERSONS = [(np.array([0.05, 0.2, 0.35, 0.9], np.float32), (3,)),
           (np.array([0.55, 0.1, 0.9, 0.95], np.float32), (7, 12))]


def write_frame_store(path, seed: int) -> None:
    """Four seconds of noise frames with a bright left person and a dark right person."""
    rng = np.random.default_rng(seed)
    n = int(4 * FPS)
    with h5py.File(path, "w") as h5:
        jpeg = h5.create_dataset("jpeg", shape=(n,), dtype=h5py.vlen_dtype(np.uint8))
        for i in range(n):
            frame = rng.integers(80, 160, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
            frame[10:43, 3:22] = 250
            frame[5:45, 35:58] = 10
            jpeg[i] = encode_jpeg(frame, 90)
        h5.create_dataset("t", data=900.0 + np.arange(n) / FPS)
        h5.attrs.update({"fps": FPS, "height": HEIGHT, "width": WIDTH})


def ground_truth(video_ids) -> AvaRows:
    rows = [(vid, t, box, action, person) for vid in video_ids for t in KEYFRAMES
            for person, (box, actions) in enumerate(PERSONS) for action in actions]
    return AvaRows(video_id=[r[0] for r in rows], timestamp=[r[1] for r in rows], box=np.stack([r[2] for r in rows]),
                   action_id=[r[3] for r in rows], person_id=[r[4] for r in rows])


def detections(video_ids, skip_keyframe: int | None = None) -> AvaRows:
    """A slightly shifted box per person and a false positive in the middle, at each keyframe."""
    rows = []
    for vid in video_ids:
        for t in KEYFRAMES:
            if t == skip_keyframe:
                continue
            for box, _ in PERSONS:
                rows.append((vid, t, box + np.float32(0.02), 0.9))
            rows.append((vid, t, np.array([0.3, 0.0, 0.45, 0.2], np.float32), 0.6))
    return AvaRows(video_id=[r[0] for r in rows], timestamp=[r[1] for r in rows], box=np.stack([r[2] for r in rows]),
                   score=[r[3] for r in rows])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_label_map(root / "label_map.pbtxt", LABEL_MAP)
    stores = {}
    for seed, vid in enumerate(("trainA", "-trainB", "valA")):
        stores[vid] = root / f"{vid}.h5"
        write_frame_store(stores[vid], seed)
    write_ground_truth(root / "train.gt.csv", ground_truth(["trainA", "-trainB"]))
    write_ground_truth(root / "val.gt.csv", ground_truth(["valA"]))
    write_boxes(root / "train.boxes.csv", detections(["trainA", "-trainB"]))
    write_boxes(root / "val.boxes.csv", detections(["valA"], skip_keyframe=902))
    for split, vids in (("train", ["trainA", "-trainB"]), ("val", ["valA"])):
        (root / f"{split}.keyframes.csv").write_text("".join(f"{v},{t}\n" for v in vids for t in KEYFRAMES))
    return root, stores


@pytest.fixture(scope="module")
def finetuned(dataset):
    root, stores = dataset
    out = root / "models" / "rgb_tiny" / "backbone.pt"
    assert finetune_main([
        "--label-map", str(root / "label_map.pbtxt"), "--ground-truth", str(root / "train.gt.csv"),
        "--boxes", str(root / "train.boxes.csv"), "--stores", str(stores["trainA"]), str(stores["-trainB"]),
        "--out", str(out), "--params", BACKBONE, "--threads", "1",
        "--log-csv", str(out.parent / "finetune_log.csv"),
    ]) == 0
    return out


def run_features(root, stores, weights, split: str, vid: str, with_gt: bool = True):
    """The features CLI; a video id that starts with '-' is left to default to the store's stem."""
    out = root / "features" / split / f"{vid}.h5"
    argv = ["--weights", str(weights), "--store", str(stores[vid]),
            "--keyframes", str(root / f"{split}.keyframes.csv"), "--boxes", str(root / f"{split}.boxes.csv"),
            "--label-map", str(root / "label_map.pbtxt"), "--out", str(out), "--params", BACKBONE,
            "--threads", "1"]
    if not vid.startswith("-"):
        argv.append(f"--video-id={vid}")
    if with_gt:
        argv += ["--ground-truth", str(root / f"{split}.gt.csv")]
    assert features_main(argv) == 0
    return out


@pytest.fixture(scope="module")
def features(dataset, finetuned):
    root, stores = dataset
    return {
        "train": [run_features(root, stores, finetuned, "train", v) for v in ("trainA", "-trainB")],
        "val": [run_features(root, stores, finetuned, "val", "valA")],
    }


def test_finetune_writes_weights_sidecar_and_log(finetuned):
    state = torch.load(finetuned, weights_only=True)
    assert set(state) == {"backbone", "head"}
    assert state["head"]["fc.weight"].shape[0] == len(LABEL_MAP)
    assert json.loads(finetuned.with_name("backbone.pt.provenance.json").read_text())["stage"] == "finetune"
    with open(finetuned.parent / "finetune_log.csv") as f:
        log = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in log] == [1, 2]
    assert all(np.isfinite(float(r["loss"])) and float(r["seconds"]) >= 0 for r in log)


def test_finetune_needs_a_store_for_every_video(dataset, tmp_path):
    root, stores = dataset
    with pytest.raises(InputError, match="no store"):
        finetune_main(["--label-map", str(root / "label_map.pbtxt"), "--ground-truth", str(root / "train.gt.csv"),
                       "--boxes", str(root / "train.boxes.csv"), "--stores", str(stores["trainA"]),
                       "--out", str(tmp_path / "b.pt"), "--log-csv", str(tmp_path / "log.csv"), "--params", BACKBONE])


def test_features_contract(features):
    with h5py.File(features["train"][0], "r") as h5:
        n_gt, n_det, k = 2 * len(KEYFRAMES), 3 * len(KEYFRAMES), len(KEYFRAMES)
        n = n_gt + n_det
        assert h5["t"].dtype == np.int64 and list(h5["t"][:]) == list(KEYFRAMES)
        assert h5["box"].dtype == np.float32 and h5["box"].shape == (n, 4)
        assert h5["box_t"].dtype == np.int64 and h5["box_t"].shape == (n,)
        assert h5["box_score"].dtype == np.float32
        assert h5["box_source"].dtype == np.uint8
        assert h5["train_mask"].dtype == bool
        assert h5["label"].dtype == np.uint8 and h5["label"].shape == (n, len(LABEL_MAP))
        assert h5["roi"].dtype == np.float16 and h5["roi"].shape[0] == n
        d = h5["roi"].shape[1]
        assert h5["context"].dtype == np.float16 and h5["context"].shape[:2] == (k, d)
        assert h5["context"].shape[2:] == (2, 3)                      # 32 x 43 input at stride 16
        source, mask, label = h5["box_source"][:], h5["train_mask"][:], h5["label"][:]
        assert (source == 0).sum() == n_gt and (source == 1).sum() == n_det
        # ground truth and the two shifted detections per keyframe are labelled; the false positive is not
        assert mask.sum() == n_gt + 2 * k
        assert not label[~mask].any()
        assert (label[mask].sum(axis=1) >= 1).all()
        assert np.all(np.diff(h5["box_t"][:]) >= 0)
        assert np.isfinite(h5["roi"][:].astype(np.float32)).all()
        assert list(h5.attrs["label_ids"]) == list(LABEL_MAP.ids)
        assert h5.attrs["video_id"] == "trainA"
        assert h5.attrs["provenance_stage"] == "features"
    with h5py.File(features["train"][1], "r") as h5:
        assert h5.attrs["video_id"] == "-trainB"                        # from the store's stem
    with h5py.File(features["val"][0], "r") as h5:
        assert list(h5["t"][:]) == list(KEYFRAMES)                      # 902 has no detection, still there
        assert h5["context"].shape[0] == len(KEYFRAMES)
        assert 902 not in h5["box_t"][:][h5["box_source"][:] == 1]


def test_features_do_not_depend_on_the_loader_workers(dataset, finetuned, monkeypatch):
    # one keyframe per batch: three batches, so that two workers decode ahead of the model
    root, stores = dataset
    monkeypatch.setattr(features_stage, "KEYFRAME_BATCH", 1)
    model = build_action_model("r3d_tiny", "rgb", len(LABEL_MAP), 3, "max")
    state = torch.load(finetuned, weights_only=True)
    model.backbone.load_state_dict(state["backbone"])
    model.head.load_state_dict(state["head"])
    times = np.array(KEYFRAMES)
    box_t = np.repeat(times, 2)
    boxes = np.concatenate([np.stack([box for box, _ in PERSONS])] * len(times))
    spec = ClipSpec.from_params(BACKBONE_PARAMS)
    roi, context, shape = features_stage.extract(model, stores["trainA"], spec, times, box_t, boxes, workers=0)
    roi2, context2, shape2 = features_stage.extract(model, stores["trainA"], spec, times, box_t, boxes, workers=2)
    assert np.array_equal(roi, roi2) and np.array_equal(context, context2) and shape == shape2 == (32, 43)
    assert roi.shape == (2 * len(times), 128) and context.shape[:2] == (len(times), 128)


def test_features_without_ground_truth_has_only_detections(dataset, finetuned):
    root, stores = dataset
    out = run_features(root, stores, finetuned, "val", "valA", with_gt=False)
    with h5py.File(out, "r") as h5:
        assert (h5["box_source"][:] == 1).all() and len(h5["box_source"]) == 3 * 2
        assert not h5["train_mask"][:].any() and not h5["label"][:].any()


@pytest.mark.parametrize("kind", ["linear", "atr"])
def test_head_and_predict_contract(dataset, features, kind, tmp_path):
    root, _ = dataset
    params = to_json(model(kind))
    head_pt, log_csv = tmp_path / "head.pt", tmp_path / "train_log.csv"
    assert head_main(["--features", *map(str, features["train"]), "--label-map", str(root / "label_map.pbtxt"),
                      "--out", str(head_pt), "--log-csv", str(log_csv), "--params", params]) == 0
    state = torch.load(head_pt, weights_only=True)
    assert state["kind"] == kind and list(state["label_ids"]) == list(LABEL_MAP.ids)
    with open(log_csv) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(1, 6))

    out, logits_path = tmp_path / "val.csv", tmp_path / "val.logits.parquet"
    assert predict_main(["--head", str(head_pt), "--features", *map(str, features["val"]),
                         "--label-map", str(root / "label_map.pbtxt"), "--out", str(out),
                         "--logits", str(logits_path), "--params", params]) == 0
    n_boxes = 3 * 2                                                       # detections of 901 and 903
    rows = read_detections(out)
    assert len(rows) == n_boxes * len(LABEL_MAP)
    assert set(rows.action_id.tolist()) == set(LABEL_MAP.ids)
    assert ((rows.score >= 0) & (rows.score <= 1)).all()
    assert (out.parent / "val.csv.provenance.json").exists()

    table = pq.read_table(logits_path)
    assert table.column_names == ["video_id", "timestamp", "x1", "y1", "x2", "y2", "box_score",
                                  "logit_3", "logit_7", "logit_12"]
    assert str(table.schema.field("video_id").type) == "string"
    assert str(table.schema.field("timestamp").type) == "int64"
    assert all(str(table.schema.field(c).type) == "float" for c in table.column_names[2:])
    assert table.num_rows == n_boxes
    keys = list(zip(*(table.column(c).to_pylist() for c in ("video_id", "timestamp", "x1", "y1", "x2", "y2"))))
    assert keys == sorted(keys)
    assert json.loads(table.schema.metadata[b"params"])["head"] == kind
    # the CSV's scores are the sigmoid of the parquet's logits
    logits = np.stack([table.column(f"logit_{i}").to_numpy() for i in LABEL_MAP.ids], axis=1)
    by_key = {(v, t, *box, a): s for v, t, box, a, s in
              zip(rows.video_id.tolist(), rows.timestamp.tolist(), rows.box.tolist(), rows.action_id.tolist(), rows.score)}
    for r, key in enumerate(keys):
        for j, action in enumerate(LABEL_MAP.ids):
            assert by_key[(*key, action)] == pytest.approx(sigmoid(logits[r, j]), abs=1e-6)


def test_predict_refuses_a_head_of_another_kind(dataset, features, tmp_path):
    root, _ = dataset
    params = to_json(model("linear", epochs=1, weight_decay=0.0))
    head_pt = tmp_path / "head.pt"
    head_main(["--features", *map(str, features["train"]), "--label-map", str(root / "label_map.pbtxt"),
               "--out", str(head_pt), "--log-csv", str(tmp_path / "log.csv"), "--params", params])
    with pytest.raises(InputError, match="a linear head"):
        predict_main(["--head", str(head_pt), "--features", *map(str, features["val"]),
                      "--label-map", str(root / "label_map.pbtxt"), "--out", str(tmp_path / "p.csv"),
                      "--logits", str(tmp_path / "p.parquet"), "--params", to_json(model("atr", epochs=1, weight_decay=0.0))])


@pytest.mark.parametrize("combine, kind", [("concat", "linear"), ("add", "atr")])
def test_a_model_of_two_backbones_combines_their_features_row_by_row(dataset, features, combine, kind, tmp_path):
    # the same backbone's files twice stand for two backbones whose rows agree
    root, _ = dataset
    label_map = read_label_map(root / "label_map.pbtxt")
    one = read_model_features([features["val"]], label_map, model(kind))
    two = read_model_features([features["val"], features["val"]], label_map, model(kind, ("a", "b"), combine))
    factor = 2 if combine == "add" else 1
    assert two.roi.shape == (len(one), one.roi.shape[1] * (2 // factor))
    np.testing.assert_allclose(two.roi[:, : one.roi.shape[1]], factor * one.roi, rtol=1e-6)
    if kind == "atr":
        np.testing.assert_allclose(two.context, factor * one.context, rtol=1e-6)
    else:
        assert two.context.shape[1] == 0              # a linear head does not read the context
    params = to_json(model(kind, ("a", "b"), combine, epochs=2, weight_decay=0.0))
    head_pt = tmp_path / "head.pt"
    groups = lambda split: [flag for _ in range(2) for flag in ("--features", *map(str, features[split]))]  # noqa: E731
    assert head_main([*groups("train"), "--label-map", str(root / "label_map.pbtxt"), "--out", str(head_pt),
                      "--log-csv", str(tmp_path / "log.csv"), "--params", params]) == 0
    out = tmp_path / "val.csv"
    assert predict_main(["--head", str(head_pt), *groups("val"), "--label-map", str(root / "label_map.pbtxt"),
                         "--out", str(out), "--logits", str(tmp_path / "val.parquet"),
                         "--params", params]) == 0
    assert len(read_detections(out)) == 3 * 2 * len(LABEL_MAP)


def test_combining_features_of_different_rows_or_sizes_is_an_error(dataset, features):
    root, _ = dataset
    label_map = read_label_map(root / "label_map.pbtxt")
    val, train = (read_model_features([features[split]], label_map, model("linear")) for split in ("val", "train"))
    with pytest.raises(ValueError, match="do not hold the rows of backbone 1: video_id differs"):
        combine_features([val, train], "concat", with_context=True)
    narrow = dataclasses.replace(val, roi=val.roi[:, :5])
    with pytest.raises(ValueError, match="add needs ROI features of one shape"):
        combine_features([val, narrow], "add", with_context=False)
    assert combine_features([val, narrow], "concat", with_context=False).roi.shape[1] == val.roi.shape[1] + 5
    small = dataclasses.replace(val, context=val.context[:, :, :1, :1])
    with pytest.raises(ValueError, match="the atr head needs context maps of one size"):
        combine_features([val, small], "concat", with_context=True)


def test_read_features_attend_mask_of_a_non_square_input(tmp_path):
    """A 64 x 32 (width x height) input at stride 16 gives a 2 x 4 context map of 0.25-wide, 0.5-high cells;
    the attend mask marks the cells whose centre lies outside each row's box, x along the width."""
    boxes = np.array([[0.0, 0.0, 0.5, 0.5],       # columns 0-1 of row 0
                      [0.4, 0.2, 1.0, 1.0],       # columns 2-3 of rows 0-1
                      [0.0, 0.6, 0.2, 1.0]],      # column 0 of row 1
                     np.float32)
    rows = FeatureRows(AvaRows(["v"] * 3, [902, 902, 903], boxes, score=[1.0, 1.0, 0.5]),
                       np.zeros((3, len(LABEL_MAP)), np.uint8), np.array([0, 0, 1], np.uint8),
                       np.array([True, True, False]))
    context = np.arange(2 * 5 * 2 * 4, dtype=np.float32).reshape(2, 5, 2, 4)
    write_features(tmp_path / "v.h5", "v", np.array([902, 903]), rows, np.ones((3, 6), np.float32), context,
                   input_hw=(32, 64), spatial_stride=16, label_map=LABEL_MAP, params={})
    with h5py.File(tmp_path / "v.h5") as h5:
        assert (h5.attrs["input_height"], h5.attrs["input_width"]) == (32, 64)
    features = read_features([tmp_path / "v.h5"], LABEL_MAP)
    inside = np.zeros((3, 2, 4), bool)
    inside[0, 0, 0:2] = True
    inside[1, :, 2:4] = True
    inside[2, 1, 0] = True
    np.testing.assert_array_equal(features.attend, ~inside)
    np.testing.assert_array_equal(features.frame_index, [0, 0, 1])
    np.testing.assert_array_equal(features.context, context)


def test_an_atr_finetuned_end_to_end_gives_context_maps_through_time(dataset, tmp_path):
    """finetune.head atr with frozen batch norm and context_frames 2: the stage trains the relation with the
    backbone, the features keep two time bins of the map, and an atr head trains and predicts on them."""
    root, stores = dataset
    params = dataclasses.replace(BACKBONE_PARAMS, context_frames=2, finetune=dataclasses.replace(
        BACKBONE_PARAMS.finetune, head="atr", freeze_bn=True, optimizer="sgd", schedule="cosine", epochs=1))
    out = tmp_path / "backbone.pt"
    assert finetune_main([
        "--label-map", str(root / "label_map.pbtxt"), "--ground-truth", str(root / "train.gt.csv"),
        "--boxes", str(root / "train.boxes.csv"), "--stores", str(stores["trainA"]), str(stores["-trainB"]),
        "--out", str(out), "--params", to_json(params), "--threads", "1", "--log-csv", str(tmp_path / "log.csv"),
    ]) == 0
    state = torch.load(out, weights_only=True)
    assert any(name.startswith("key.") for name in state["head"])           # the relation was trained
    files = []
    for split, vid in (("train", "trainA"), ("val", "valA")):
        path = tmp_path / f"{vid}.h5"
        assert features_main(["--weights", str(out), "--store", str(stores[vid]), f"--video-id={vid}",
                              "--keyframes", str(root / f"{split}.keyframes.csv"),
                              "--boxes", str(root / f"{split}.boxes.csv"), "--ground-truth", str(root / f"{split}.gt.csv"),
                              "--label-map", str(root / "label_map.pbtxt"), "--out", str(path),
                              "--params", to_json(params)]) == 0
        files.append(path)
    with h5py.File(files[0]) as h5:
        assert h5["context"].ndim == 5 and h5["context"].shape[2] == 2     # [K, D, 2, h, w]
    head_params = to_json(model("atr"))
    assert head_main(["--features", str(files[0]), "--label-map", str(root / "label_map.pbtxt"),
                      "--out", str(tmp_path / "head.pt"), "--log-csv", str(tmp_path / "head.csv"),
                      "--params", head_params]) == 0
    assert predict_main(["--head", str(tmp_path / "head.pt"), "--features", str(files[1]),
                         "--label-map", str(root / "label_map.pbtxt"), "--out", str(tmp_path / "val.csv"),
                         "--logits", str(tmp_path / "val.parquet"), "--params", head_params]) == 0
