"""Keyframe images for the detector, read from the per-video frame stores (``results/frames/{video}.h5``)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType
from typing import Iterable

import numpy as np

from pipeline.errors import InputError
from pipeline.media.frames import FrameStore

MAX_GAP_S = 0.5   # farthest a stored frame may be from the keyframe it stands for


def stores_by_video(frame_files: Iterable[str | Path]) -> dict[str, Path]:
    """The frame store of each video among ``frame_files``, the video id being the file's stem
    (``results/frames/{video}.h5``); two files of one video are a ValueError."""
    paths: dict[str, Path] = {}
    for path in map(Path, frame_files):
        if path.stem in paths:
            raise ValueError(f"two frame stores for video {path.stem!r}: {paths[path.stem]} and {path}")
        paths[path.stem] = path
    return paths


class KeyframeImages:
    """The stored frame nearest each keyframe, for any video of ``frame_files`` (video id = file stem).

    Use as a context manager; the stores of the videos asked for stay open until it exits. Each
    process opens its own: a DataLoader worker (forked, or given a pickled copy: the paths only)
    does not read through the files its parent opened.
    """

    def __init__(self, frame_files: Iterable[str | Path]):
        self.paths = stores_by_video(frame_files)
        self._open_here()

    def _open_here(self) -> None:
        self._pid = os.getpid()
        self._stores: dict[str, FrameStore] = {}
        self._stack = contextlib.ExitStack()

    def __getstate__(self) -> dict[str, dict[str, Path]]:
        return {"paths": self.paths}

    def __setstate__(self, state: dict[str, dict[str, Path]]) -> None:
        self.paths = state["paths"]
        self._open_here()

    def __enter__(self) -> "KeyframeImages":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()
        self._stores.clear()

    def store(self, video_id: str) -> FrameStore:
        """The open frame store of ``video_id``; a video without a store, or a missing file, is an InputError."""
        if self._pid != os.getpid():   # a forked copy: leave the parent's handles alone
            self._open_here()
        if video_id not in self._stores:
            if video_id not in self.paths:
                raise InputError(f"{video_id}.h5", f"no frame store for video {video_id!r} among the "
                                                   f"{len(self.paths)} given")
            path = self.paths[video_id]
            if not path.exists():
                raise InputError(path, f"no frame store for video {video_id!r}")
            self._stores[video_id] = self._stack.enter_context(FrameStore(path))
        return self._stores[video_id]

    def read(self, video_id: str, timestamps: np.ndarray) -> np.ndarray:
        """Images at ``timestamps`` ([n] AVA-timeline seconds): [n, H, W, 3] uint8 RGB.

        A keyframe with no stored frame within :data:`MAX_GAP_S` is an :class:`InputError`.
        """
        store = self.store(video_id)
        times = np.asarray(timestamps, dtype=np.float64)
        index = store.nearest(times)
        gap = np.abs(store.t[index] - times)
        if (gap > MAX_GAP_S).any():
            worst = int(np.argmax(gap))
            raise InputError(store.path, f"no frame within {MAX_GAP_S} s of keyframe {times[worst]:g} "
                                         f"(nearest at {store.t[index[worst]]:g} s)")
        return store.read(index)
