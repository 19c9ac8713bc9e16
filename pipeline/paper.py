"""The paper's own figures: Table I of Jiang et al. (results on AVA v2.1's validation set, frame-mAP
at IoU 0.5, in %), the one place they are written down.

A model or fusion of a config names its row with ``paper_row: <key>`` (``configs/ava_v2.*.yaml``
do); the report puts the paper's mAP beside the measured one, and the paper's difference between the
same two rows beside the measured difference. ``extends`` is the row that the paper's row adds one
thing to (the ATR head, the flow stream), as the table reads.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "Jiang et al., Human Centric Spatio-Temporal Action Localization, Table I (AVA v2.1 validation set)"


@dataclass(frozen=True)
class PaperRow:
    """One row of Table I as printed: model, input shape, modality, operation, mAP (%)."""

    model: str
    input: str
    modality: str
    operation: str
    mAP: float
    extends: str | None = None


TABLE1: dict[str, PaperRow] = {
    "faster_rcnn": PaperRow("Faster-RCNN [4]", "(3, 40(RGB)+40(Flow), 360, 400)", "RGB + Flow", "-", 16.2),
    "i3d_nl": PaperRow("i3d resnet50 + NL", "(3, 20, 224, 224)", "RGB", "-", 19.33),
    "i3d_nl_atr": PaperRow("i3d resnet50 + NL", "(3, 20, 224, 224)", "RGB", "ATR", 20.01, extends="i3d_nl"),
    "i3d_nl_40_clips": PaperRow("i3d resnet50 + NL", "(3, 40, 224, 224)", "RGB", "40 clips", 19.37,
                                extends="i3d_nl"),
    "i3d_nl_360x400": PaperRow("i3d resnet50 + NL", "(3, 20, 360, 400)", "RGB", "(360,400) size", 19.86,
                               extends="i3d_nl"),
    "i3d_nl_rgb_flow": PaperRow("i3d resnet50 + NL", "(3, 20(RGB)+20(Flow), 224, 224)", "RGB + Flow", "add",
                                21.66, extends="i3d_nl"),
    "p3d199_rgb_flow": PaperRow("P3D199", "(3, 20(RGB)+20(Flow), 224, 224)", "RGB + Flow", "-", 17.87),
    "tsn_resnet152": PaperRow("resnet152", "(3, 20, 224, 224)", "RGB", "TSN", 14.68),
    "artnet18": PaperRow("artnet18", "(3, 20, 224, 224)", "RGB", "-", 16.67),
    "vgg16_audio": PaperRow("Vgg16", "-", "Audio", "-", 6.5),
    "ensemble_vision": PaperRow("Ensemble (Vision Only)", "", "", "", 25.63),
    "ensemble_full": PaperRow("Ensemble (Full)", "", "", "", 25.75),
}


def row_problem(key: str) -> str | None:
    """Why ``key`` names no row of Table I (with the keys that do), or None."""
    if key in TABLE1:
        return None
    return f"{key!r} is not a row of the paper's Table I; one of: {', '.join(TABLE1)}"
