"""Resumable training: the state a training saves after every epoch, and reading it back.

``{out}.resume.pt`` beside a training's output holds the model's and optimizer's state, the epochs
done, the epoch log, every random generator's state and the parameters' JSON. A training that is
killed starts again from its last epoch (when its parameters are the same) and ends where an
uninterrupted one ends: bit-identical on the CPU. The file goes when the training has written its
output. It is read with ``torch.load(weights_only=True)``: no code in it runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.store import atomic_path, load_torch_file


def resume_path(out: str | Path) -> Path:
    """Where the training of ``out`` keeps its state between epochs."""
    return Path(f"{out}.resume.pt")


def random_state(generator: np.random.Generator | None = None) -> dict[str, Any]:
    """The states of torch's CPU and CUDA generators (and ``generator``'s)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["numpy"] = generator.bit_generator.state
    return state


def set_random_state(state: dict[str, Any], generator: np.random.Generator | None = None) -> None:
    """Put back what :func:`random_state` took."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None:
        generator.bit_generator.state = state["numpy"]


def save_state(out: str | Path, params_json: str, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
               log: list[dict[str, float]], generator: np.random.Generator | None = None,
               extra: dict[str, Any] | None = None) -> None:
    """Write the state after ``epoch`` epochs beside ``out``, atomically (``model``: unwrapped from DDP)."""
    with atomic_path(resume_path(out)) as tmp:
        torch.save({"params": params_json, "epoch": epoch, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "log": log, "random": random_state(generator),
                    **(extra or {})}, tmp)


def load_state(out: str | Path, params_json: str) -> dict[str, Any] | None:
    """The saved state of the training of ``out`` with parameters ``params_json``; None when there is
    none, or when it was made with other parameters (then it says so and the training starts over)."""
    path = resume_path(out)
    if not path.exists():
        return None
    state = load_torch_file(path, "training state")
    if state.get("params") != params_json:
        print(f"{path}: made with other parameters, not resumed; training starts over", file=sys.stderr)
        return None
    print(f"{path}: resuming after epoch {state['epoch']}", file=sys.stderr)
    return state


def restore(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
            generator: np.random.Generator | None = None) -> tuple[int, list[dict[str, float]]]:
    """Load ``state`` into ``model``, ``optimizer`` and the random generators; returns (epochs done, log)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    set_random_state(state["random"], generator)
    return int(state["epoch"]), list(state["log"])


def remove_state(out: str | Path) -> None:
    """Drop the state once the training's output is written."""
    resume_path(out).unlink(missing_ok=True)
