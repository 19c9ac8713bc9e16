"""Loading torchvision's own checkpoint files (local files only: nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from pipeline.store import load_torch_file


def load_torchvision_weights(net: nn.Module, weights: str | Path, arch: str, classifier_prefix: str) -> None:
    """Load torchvision's checkpoint file ``weights`` of ``arch`` into ``net`` (torchvision's model).

    The classifier's parameters (keys starting with ``classifier_prefix``) may be missing; every
    other parameter must be there and no unknown one, else ValueError naming the file.
    """
    state = load_torch_file(weights, f"torchvision {arch} checkpoint")
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(classifier_prefix)]
    if missing or unexpected:
        raise ValueError(f"{weights}: not a torchvision {arch} checkpoint "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
