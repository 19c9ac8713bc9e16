"""``results/dataset/problems.csv``: the videos the dataset stage left out, and why.

Kept apart from :mod:`pipeline.data.manifest` so that the stages that only read it (evaluate) do not
import the media libraries that probing needs.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, fields
from pathlib import Path

from pipeline.errors import InputError
from pipeline.store import write_text


@dataclass(frozen=True)
class VideoProblem:
    """A video of the annotations that is unusable, or whose annotations it does not cover, and
    the ground-truth rows that are left out because of it (``results/dataset/problems.csv``)."""

    video_id: str
    split: str
    usable: bool                 # False: the video is left out whole; True: only some of its rows are
    ground_truth_rows: int
    problem: str


PROBLEM_COLUMNS = [f.name for f in fields(VideoProblem)]


def write_problems(path: str | Path, problems: list[VideoProblem]) -> None:
    """``problems.csv``: a header and a row per :class:`VideoProblem`, atomically."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PROBLEM_COLUMNS)
    writer.writerows([getattr(p, c) for c in PROBLEM_COLUMNS] for p in problems)
    write_text(path, out.getvalue())


def read_problems(path: str | Path) -> list[VideoProblem]:
    """The rows of a ``problems.csv`` (:func:`write_problems`)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != PROBLEM_COLUMNS:
            raise InputError(path, f"header {reader.fieldnames} is not {PROBLEM_COLUMNS}", 1)
        return [VideoProblem(video_id=r["video_id"], split=r["split"], usable=r["usable"] == "True",
                             ground_truth_rows=int(r["ground_truth_rows"]), problem=r["problem"]) for r in reader]
