"""Progress bars for long stages; they go to stderr, which the rules send to the job's log."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """Wrap ``items`` in a tqdm bar that updates at most every 2 s (log files stay short)."""
    return tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr,
                mininterval=2.0, dynamic_ncols=False, ncols=100)
