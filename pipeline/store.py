"""Atomic writes and provenance for every artifact under ``results/``.

Every stage writes to a temporary name beside the target and renames it at the end,
so that an interrupted job never leaves a file that looks finished. Every artifact
carries provenance: the parameters that made it and the code version.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pipeline
from pipeline.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary keeps the suffix of ``path`` so that libraries which look at it still work.
    On error the temporary is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_torch_file(path: str | Path, what: str) -> Any:
    """Read a torch file of tensors and plain containers (``torch.load(weights_only=True)``): no
    code in it runs. A missing file, a file that is not a torch file, and one that holds anything
    else (a pickle that would build other objects or run code) are an :class:`InputError` naming
    ``path`` and ``what`` it should be."""
    import torch  # here: the stages that only write text and JSON need not import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(path, f"no such {what} file") from None
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or others for files it refuses
        if "Weights only load failed" in str(err):
            raise InputError(path, f"refused: this {what} file holds more than tensors, and only weights files "
                                   f"are read (torch: {str(err).splitlines()[0]} Weights only load failed)") from None
        raise InputError(path, f"cannot read it as a {what} file: {err}") from None


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def code_version() -> str:
    """The package version plus the git commit of the checkout (``+dirty`` when modified)."""
    root = Path(pipeline.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return f"{pipeline.__version__}+{commit}"


def provenance(stage: str, params: dict[str, Any]) -> dict[str, str]:
    """Provenance of an artifact: stage, parameters (JSON), their hash and the code version."""
    blob = json.dumps(params, sort_keys=True, default=_json_default)
    return {
        "stage": stage,
        "params": blob,
        "params_sha1": hashlib.sha1(blob.encode()).hexdigest(),
        "code_version": code_version(),
    }


def set_h5_provenance(h5file: Any, stage: str, params: dict[str, Any]) -> None:
    """Store :func:`provenance` in the root attributes of an open ``h5py.File``."""
    for key, value in provenance(stage, params).items():
        h5file.attrs[f"provenance_{key}"] = value


def write_sidecar(path: str | Path, stage: str, params: dict[str, Any]) -> Path:
    """Write provenance beside ``path`` as ``<path>.provenance.json``; return the sidecar's path."""
    side = Path(f"{path}.provenance.json")
    write_json(side, provenance(stage, params))
    return side


def write_log_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write a training log (a row per epoch, the keys of the first row as header) as CSV, atomically."""
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_text(path, out.getvalue())
