"""Keyframe images for the detector, read from the per-video frame stores (``results/frames``)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import TracebackType

import numpy as np

from pipeline.errors import InputError
from pipeline.media.frames import FrameStore

MAX_GAP_S = 0.5   # farthest a stored frame may be from the keyframe it stands for


class KeyframeImages:
    """The stored frame nearest each keyframe, for any video of ``frames_dir``.

    Use as a context manager; the stores of the videos asked for stay open until it exits.
    """

    def __init__(self, frames_dir: str | Path):
        self.frames_dir = Path(frames_dir)
        self._stores: dict[str, FrameStore] = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "KeyframeImages":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()
        self._stores.clear()

    def store(self, video_id: str) -> FrameStore:
        """The open frame store of ``video_id``; a missing file is an :class:`InputError`."""
        if video_id not in self._stores:
            path = self.frames_dir / f"{video_id}.h5"
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
