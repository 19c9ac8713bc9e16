"""Table I as the paper reads: each model's input shape, modality and operation, its mAP, and the
difference to the row it extends, with the paper's own figures for the same rows beside them.

The row a prediction extends comes from the config, not from names:

- a model with the ``atr`` head extends the model on the same backbones with the ``linear`` head;
- a model on several backbones (features added or concatenated) extends the model on its first
  backbone alone (with the same head, else the linear one);
- a fusion extends its best member (the highest mAP on the split);
- anything else (one backbone, linear head; the baseline) extends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline import paper
from pipeline.params import BackboneParams, ModelParams, ReportParams
from pipeline.reporting.tables import Table

Evaluations = dict[str, dict[str, dict[str, Any]]]   # {prediction: {split: evaluation JSON}}

STRATEGIES = {"mean_prob": "mean of probabilities", "mean_logit": "mean of logits",
              "topk_logit": "per class, the top-k models' logits (k = n//2)",
              "topk_box_logit": "per box, the top-k logits (k = n//2)"}
FLOW_METHODS = {"tvl1": "TV-L1", "farneback": "Farneback"}


@dataclass(frozen=True)
class Description:
    """What a row of Table I is made of."""

    network: str
    input: str
    modality: str
    operation: str


def modality_name(modality: str) -> str:
    """``rgb`` -> RGB, ``flow/tvl1`` -> Flow (TV-L1), ``audio`` -> Audio."""
    if modality.startswith("flow/"):
        method = modality.split("/", 1)[1]
        return f"Flow ({FLOW_METHODS.get(method, method)})"
    return {"rgb": "RGB", "audio": "Audio"}.get(modality, modality)


def input_shape(backbones: list[BackboneParams]) -> str:
    """The paper's notation: ``(3, 20, 224, 224)``, ``(3, 20(RGB)+20(Flow), 224, 224)``; audio reads the
    keyframe's 1 s log-mel window."""
    clips = [b for b in backbones if b.modality != "audio"]
    parts = []
    if clips:
        sizes = {b.input_size for b in clips}
        if len(clips) == 1:
            b = clips[0]
            parts.append(f"(3, {b.clip_frames}, {b.input_size}, {b.input_size})")
        elif len(sizes) == 1:
            frames = "+".join(f"{b.clip_frames}({modality_name(b.modality).split(' ')[0]})" for b in clips)
            size = sizes.pop()
            parts.append(f"(3, {frames}, {size}, {size})")
        else:
            parts += [f"(3, {b.clip_frames}, {b.input_size}, {b.input_size})" for b in clips]
    if len(clips) < len(backbones):
        parts.append("log-mel, 1 s")
    return " + ".join(parts)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def describe(name: str, params: ReportParams) -> Description:
    """Network, input, modality and operation of a model, fusion or the baseline."""
    if name == params.baseline:
        return Description("–", "–", "–", "class prior (train frequency)")
    if name.startswith("fusion-"):
        fusion = params.fusions[name[len("fusion-"):]]
        modalities = _unique([describe(m, params).modality for m in fusion.models])
        return Description(f"ensemble of {len(fusion.models)}", "–", " + ".join(modalities),
                           STRATEGIES.get(fusion.strategy, fusion.strategy))
    spec = params.models[name]
    backbones = [params.backbones[b] for b in spec.backbones]
    operation = []
    if any(b.arch.startswith("tsn_") for b in backbones):
        operation.append("TSN")
    if len(backbones) > 1:
        operation.append(spec.combine)
    if spec.head == "atr":
        operation.append("ATR")
    return Description(" + ".join(_unique([b.arch for b in backbones])), input_shape(backbones),
                       " + ".join(_unique([modality_name(b.modality) for b in backbones])),
                       ", ".join(operation) or "-")


def _find_model(params: ReportParams, backbones: list[str], heads: tuple[str, ...], combine: str | None) -> str | None:
    for head in heads:
        for name, spec in params.models.items():
            if spec.backbones == backbones and spec.head == head and (combine is None or spec.combine == combine):
                return name
    return None


def extends(name: str, params: ReportParams, evals: Evaluations, split: str) -> str | None:
    """The prediction whose row ``name``'s row adds one thing to (module docstring), or None."""
    if name == params.baseline:
        return None
    if name.startswith("fusion-"):
        members = [m for m in params.fusions[name[len("fusion-"):]].models if _map(evals, m, split) is not None]
        return max(members, key=lambda m: _map(evals, m, split)) if members else None
    spec: ModelParams = params.models[name]
    if spec.head == "atr":
        twin = _find_model(params, spec.backbones, ("linear",), spec.combine if len(spec.backbones) > 1 else None)
        if twin is not None:
            return twin
    if len(spec.backbones) > 1:
        return _find_model(params, spec.backbones[:1], _unique([spec.head, "linear"]), None)
    return None


def _map(evals: Evaluations, name: str, split: str) -> float | None:
    return evals.get(name, {}).get(split, {}).get("mAP")


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def diff(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None else f"{a - b:+.2f}"


def paper_label(row: paper.PaperRow) -> str:
    return row.model if row.operation in ("", "-") else f"{row.model}, {row.operation}"


def table1(evals: Evaluations, split: str, params: ReportParams) -> Table:
    """Table I for the predictions that ran on ``split``, with the paper's figures where a row is named."""
    table = Table(["Model", "Network", "Input", "Modality", "Operation", "mAP (%)", "Extends", "Δ mAP",
                   "Paper row", "Paper mAP (%)", "Paper Δ"])
    for name in evals:
        d = describe(name, params)
        measured = _map(evals, name, split)
        base = extends(name, params, evals, split)
        row = paper.TABLE1.get(params.paper_rows.get(name, ""))
        base_row = paper.TABLE1.get(params.paper_rows.get(base or "", ""))
        table.add(name, d.network, d.input, d.modality, d.operation, pct(measured), base or "–",
                  diff(None if measured is None else 100 * measured,
                       None if base is None or _map(evals, base, split) is None else 100 * _map(evals, base, split)),
                  paper_label(row) if row else "–", f"{row.mAP:.2f}" if row else "–",
                  diff(row.mAP if row else None, base_row.mAP if row and base_row else None))
    return table


def paper_rows_not_run(params: ReportParams) -> Table:
    """The rows of the paper's Table I that no prediction of this run names."""
    named = set(params.paper_rows.values())
    table = Table(["Paper row", "Model", "Input", "Modality", "Operation", "mAP (%)"])
    for key, row in paper.TABLE1.items():
        if key not in named:
            table.add(key, row.model, row.input or "–", row.modality or "–", row.operation or "–", f"{row.mAP:.2f}")
    return table
