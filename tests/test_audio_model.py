"""The audio stream: a VGG on each keyframe's log-mel window learns a sound-marked action, and its
features give every box of a keyframe the same vector."""

from __future__ import annotations


import h5py
import numpy as np
import pytest
import torch

from pipeline.ava.formats import AvaRows, LabelMap, write_boxes, write_ground_truth, write_label_map
from pipeline.data.clips import ClipSpec, load_clip
from pipeline.media.stores import open_store
from pipeline.models.registry import build_action_model
from pipeline.params import BackboneParams, ComputeParams, FinetuneRecipe, to_json
from pipeline.stages.features import main as features_main
from pipeline.stages.finetune import main as finetune_main

torch.set_num_threads(1)

LABEL_MAP = LabelMap(ids=(3, 12), names=("stand", "talk"), label_types=("PERSON_MOVEMENT", "PERSON_INTERACTION"))
KEYFRAMES = tuple(range(901, 921))
N_MELS, FRAMES = 16, 20
BACKBONE = BackboneParams(
    arch="vgg_tiny", modality="audio", clip_frames=None, clip_stride=None, input_size=None, roi_size=None,
    roi_pool="max", roi_op="align", context_frames=1, weights_layout="torchvision", weights=None,
    finetune=FinetuneRecipe(epochs=6, lr=0.01, batch_size=4, weight_decay=0.01, optimizer="adamw", momentum=0.9, nesterov=False, schedule="constant", warmup_epochs=0.0, lr_steps=[], lr_step_factor=0.1, freeze_bn=False, head="linear"), seed=0,
    train_box_iou=0.5,
    dropout=0.3, compute=ComputeParams("cpu", "off", 0))
STANDING = np.array([0.05, 0.2, 0.35, 0.9], np.float32)
TALKING = np.array([0.55, 0.1, 0.9, 0.95], np.float32)


def speech(video_seed: int) -> dict[int, bool]:
    """Which keyframes of a video have speech on the audio track (a random half)."""
    rng = np.random.default_rng(100 + video_seed)
    return {t: bool(on) for t, on in zip(KEYFRAMES, rng.permutation([0, 1] * (len(KEYFRAMES) // 2)))}


def write_audio_store(path, video_seed: int) -> None:
    """Quiet noise windows; speech adds energy in mel bands 4-6."""
    rng = np.random.default_rng(video_seed)
    times = np.arange(900, 922, dtype=np.float64)
    logmel = rng.normal(-8.0, 1.0, size=(len(times), N_MELS, FRAMES)).astype(np.float32)
    for k, t in enumerate(times):
        if speech(video_seed).get(int(t), False):
            logmel[k, 4:7] += 4.0
    with h5py.File(path, "w") as h5:
        h5.create_dataset("logmel", data=logmel.astype(np.float16))
        h5.create_dataset("t", data=times)
        h5.attrs.update({"sr": 16000, "n_mels": N_MELS, "has_audio": True})


def rows(video_ids: list[str], seeds: list[int], with_actions: bool) -> AvaRows:
    """Per keyframe a standing person, and a person who talks when there is speech and stands otherwise."""
    out = []
    for vid, seed in zip(video_ids, seeds):
        talks = speech(seed)
        for t in KEYFRAMES:
            out.append((vid, t, STANDING, 3, 0))
            if talks[t] or not with_actions:
                out.append((vid, t, TALKING, 12 if with_actions else 3, 1))
            else:
                out.append((vid, t, TALKING, 3, 1))
    columns = dict(video_id=[r[0] for r in out], timestamp=[r[1] for r in out], box=np.stack([r[2] for r in out]))
    if with_actions:
        return AvaRows(**columns, action_id=[r[3] for r in out], person_id=[r[4] for r in out])
    return AvaRows(**columns, score=np.full(len(out), 0.9))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    write_label_map(root / "label_map.pbtxt", LABEL_MAP)
    stores = {}
    for seed, vid in enumerate(("trainA", "trainB", "valA")):
        stores[vid] = root / f"{vid}.h5"
        write_audio_store(stores[vid], seed)
    write_ground_truth(root / "train.gt.csv", rows(["trainA", "trainB"], [0, 1], with_actions=True))
    write_boxes(root / "train.boxes.csv", rows(["trainA", "trainB"], [0, 1], with_actions=False))
    write_boxes(root / "val.boxes.csv", rows(["valA"], [2], with_actions=False))
    (root / "val.keyframes.csv").write_text("".join(f"valA,{t}\n" for t in KEYFRAMES))
    weights = root / "audio_vgg" / "backbone.pt"
    assert finetune_main([
        "--label-map", str(root / "label_map.pbtxt"), "--ground-truth", str(root / "train.gt.csv"),
        "--boxes", str(root / "train.boxes.csv"), "--stores", str(stores["trainA"]), str(stores["trainB"]),
        "--out", str(weights), "--log-csv", str(root / "finetune_log.csv"), "--params", to_json(BACKBONE),
        "--threads", "1",
    ]) == 0
    return root, stores, weights


def test_audio_model_hears_who_may_talk_on_an_unseen_video(trained):
    root, stores, weights = trained
    model = build_action_model(BACKBONE.arch, BACKBONE.modality, len(LABEL_MAP), BACKBONE.roi_size, BACKBONE.roi_pool)
    state = torch.load(weights, weights_only=True)
    model.backbone.load_state_dict(state["backbone"])
    model.head.load_state_dict(state["head"])
    model.eval()
    spec = ClipSpec.from_params(BACKBONE)
    with open_store(stores["valA"], spec.modality) as store:
        windows = torch.stack([load_clip(store, float(t), spec) for t in KEYFRAMES])
    rois = torch.tensor([[k, 0, 0, 1, 1] for k in range(len(KEYFRAMES))], dtype=torch.float32)
    with torch.no_grad():
        probability = torch.sigmoid(model(windows, rois)).numpy()
    stand, talk = probability[:, LABEL_MAP.ids.index(3)], probability[:, LABEL_MAP.ids.index(12)]
    heard = np.array([speech(2)[t] for t in KEYFRAMES])
    # in speech one of the two persons talks and the other stands (p = 1/2 per box); in silence both stand
    assert talk[heard].min() > talk[~heard].max()
    assert talk[~heard].max() < 0.2 and 0.25 < talk[heard].mean() < 0.75
    assert stand[~heard].min() > 0.8 and 0.25 < stand[heard].mean() < 0.75


def test_audio_features_contract(trained):
    root, stores, weights = trained
    out = root / "features" / "valA.h5"
    assert features_main([
        "--weights", str(weights), "--store", str(stores["valA"]), "--video-id=valA",
        "--keyframes", str(root / "val.keyframes.csv"), "--boxes", str(root / "val.boxes.csv"),
        "--label-map", str(root / "label_map.pbtxt"), "--out", str(out), "--params", to_json(BACKBONE),
    ]) == 0
    with h5py.File(out) as h5:
        roi, box_t, context = h5["roi"][:], h5["box_t"][:], h5["context"][:]
        assert (h5.attrs["input_height"], h5.attrs["input_width"]) == (N_MELS, FRAMES)
    assert roi.shape == (2 * len(KEYFRAMES), context.shape[1])
    assert context.shape == (len(KEYFRAMES), roi.shape[1], 1, 1)
    for t in KEYFRAMES:
        at_t = roi[box_t == t]
        np.testing.assert_array_equal(at_t[0], at_t[1])   # both persons hear the same second
        np.testing.assert_array_equal(at_t[0], context[KEYFRAMES.index(t), :, 0, 0])
