"""Errors that name the file, the line and what is wrong."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input: carries the file and, where known, the 1-based line number."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")
