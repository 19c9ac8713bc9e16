"""What every stage's command line shares: its parser, its typed ``--params`` and its thread count."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import Callable, TypeVar

from pipeline.errors import InputError
from pipeline.params import ParamsError, parse_params

P = TypeVar("P")


def stage_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of ``python -m <module>``, described by the first line of the module's docstring."""
    return argparse.ArgumentParser(prog=f"python -m {module}", description=(doc or "").strip().splitlines()[0])


def add_params_argument(parser: argparse.ArgumentParser, cls: type) -> None:
    """``--params``: the stage's :mod:`pipeline.params` object as JSON (``pipeline.config`` builds it)."""
    parser.add_argument("--params", required=True, help=f"{cls.__name__} as JSON (pipeline.config builds it)")


def read_params(parser: argparse.ArgumentParser, cls: type[P], text: str) -> P:
    """The ``cls`` object of ``--params``; a bad one ends the program with the parser's usage error."""
    try:
        return parse_params(cls, text)
    except ParamsError as err:
        parser.error(str(err))
        raise  # unreachable: parser.error exits


def add_features_argument(parser: argparse.ArgumentParser, files: str) -> None:
    """``--features``: a model's ``files`` (feature stores), one backbone's per use of the flag."""
    parser.add_argument("--features", nargs="+", action="append", required=True,
                        help=f"{files}, one backbone's; repeat the flag for each backbone of the model")


def add_person_box_outputs(parser: argparse.ArgumentParser) -> None:
    """What every source of person boxes (the detector, a precomputed file) takes and writes."""
    parser.add_argument("--keyframes", type=Path, required=True, help="video_id,timestamp CSV of the split")
    parser.add_argument("--out", type=Path, required=True, help="person boxes CSV")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics JSON")
    parser.add_argument("--ground-truth", type=Path, default=None)
    parser.add_argument("--excluded", type=Path, default=None, help="keyframes left out of the metrics")


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads in torch and OpenCV (the job's ``threads:``)."""
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


#: Storage failures that end a stage with one line instead of a traceback: the outputs are written
#: through temporary files (:func:`pipeline.store.atomic_path`), so nothing half-written is left.
STORAGE_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                  errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                  errno.EFBIG: "file too large for this file system or limit"}


def storage_errno(err: OSError) -> int | None:
    """The :data:`STORAGE_ERRORS` code of ``err``, also when a library (h5py) put it only in its message."""
    if err.errno in STORAGE_ERRORS:
        return err.errno
    text = str(err)
    return next((code for code in STORAGE_ERRORS if f"errno = {code}," in text or f"errno = {code} " in text), None)


def run_stage(main: Callable[[], int]) -> int:
    """Run a stage's ``main`` from ``python -m``: bad input (:class:`InputError`, naming the file and
    line) and a full, read-only or forbidden disk end the stage with one line on stderr and exit
    status 1; anything else keeps its traceback."""
    try:
        return main()
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        code = storage_errno(err)
        if code is None:
            raise
        where = err.filename or "an output file"
        print(f"error: {where}: {STORAGE_ERRORS[code]} ({err}); no output was left half-written", file=sys.stderr)
        return 1
