"""Which per-video store a modality reads: the one place of that mapping.

``rgb`` reads the frame store (``results/frames/{video}.h5``), ``flow/<method>`` the flow store of
that method (``results/flow/{method}/{video}.h5``), ``audio`` the audio store
(``results/audio/{video}.h5``). Snakemake's input functions and the data loaders both ask here.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.media.audio import AudioStore
from pipeline.media.flow import FlowStore
from pipeline.media.frames import FrameStore

STORE_KINDS = ("frames", "flow", "audio")
Store = FrameStore | FlowStore | AudioStore


def store_kind(modality: str) -> tuple[str, str | None]:
    """(kind, flow method) of the store that ``modality`` reads: ("frames", None), ("flow", method) or
    ("audio", None)."""
    if modality == "rgb":
        return "frames", None
    if modality == "audio":
        return "audio", None
    if modality.startswith("flow/") and modality.count("/") == 1:
        return "flow", modality.split("/", 1)[1]
    raise ValueError(f"unknown modality {modality!r}: expected rgb, flow/<method> or audio")


def open_store(path: str | Path, modality: str) -> Store:
    """The reader of the store of ``modality`` at ``path`` (use as a context manager)."""
    kind, _ = store_kind(modality)
    if kind == "frames":
        return FrameStore(path)
    return FlowStore(path) if kind == "flow" else AudioStore(path)
