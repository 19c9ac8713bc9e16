"""The report's figures, made to be read on a page: 7.5 inches wide, full class names, labelled axes,
a colour and a marker of its own for each model (never more models than colours), and small
multiples where one panel would hold a dozen curves."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from pipeline.ava.formats import LabelMap  # noqa: E402
from pipeline.store import atomic_path  # noqa: E402

PAGE_WIDTH_IN = 7.5
DPI = 120
BASELINE_COLOR = "#7f7f7f"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "*")


def model_colors(models: list[str], baseline: str) -> dict[str, Any]:
    """A distinct colour per model (tab10 up to 10 models, tab20 up to 20, then evenly spaced hues);
    the baseline grey."""
    others = [m for m in models if m != baseline]
    n = len(others)
    if n <= 10:
        palette = [plt.get_cmap("tab10")(i) for i in range(10) if i != 7]  # 7 is tab10's grey
    elif n <= 19:
        palette = [plt.get_cmap("tab20")(i) for i in range(20) if i not in (14, 15)]
    else:
        palette = [plt.get_cmap("hsv")(i / n) for i in range(n)]
    colors = {m: palette[i % len(palette)] for i, m in enumerate(others)}
    if baseline in models:
        colors[baseline] = BASELINE_COLOR
    return colors


def plot_ap_per_class(evals: dict[str, dict[str, dict[str, Any]]], split: str, labels: LabelMap, baseline: str,
                      path: Path) -> None:
    """AP per class, a row per class (its full name and ground-truth count) and a marker per model."""
    models = [m for m in evals if split in evals[m]]
    colors = model_colors(models, baseline)
    n = len(labels)
    row_h = 0.3 if n <= 24 else 0.17
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, 1.6 + row_h * n + 0.22 * math.ceil(len(models) / 4)),
                           layout="constrained")
    first = evals[models[0]][split] if models else {}
    names = [f"{labels.name(a)} ({first.get('n_gt', {}).get(str(a), 0)})" for a in labels.ids]
    for k in range(0, n, 2):
        ax.axhspan(k - 0.5, k + 0.5, color="#f2f2f2", zorder=0)
    handles = []
    others = [m for m in models if m != baseline]
    for i, model in enumerate(models):
        per_class = evals[model][split].get("per_class", {})
        xs, ys = [], []
        for k, action_id in enumerate(labels.ids):
            value = per_class.get(str(action_id))
            if value is not None:
                xs.append(100 * value)
                ys.append(k)
        is_base = model == baseline
        marker = "|" if is_base else MARKERS[others.index(model) % len(MARKERS)]
        ax.scatter(xs, ys, color=colors[model], marker=marker, s=110 if is_base else 28, zorder=3 if is_base else 4,
                   linewidths=2.2 if is_base else 0.5, edgecolors=None if is_base else "white")
        mAP = evals[model][split].get("mAP")
        label = f"{model} ({100 * mAP:.1f})" if mAP is not None else model
        handles.append(Line2D([], [], color=colors[model], marker=marker, linestyle="", markersize=9 if is_base else 6,
                              markeredgewidth=2.2 if is_base else 0.5, label=label))
    ax.set_yticks(range(n))
    ax.set_yticklabels(names, fontsize=8 if n <= 24 else 6.5)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlim(-2, 102)
    ax.set_xlabel("AP at IoU 0.5 (%)")
    ax.set_ylabel("class (ground-truth boxes)")
    ax.grid(axis="x", color="#d0d0d0", linewidth=0.6, zorder=1)
    ax.set_axisbelow(True)
    fig.legend(handles=handles, loc="outside upper center", ncol=min(4, max(len(handles), 1)), fontsize=7.5,
               frameon=False, title=f"AP per class, {split} (each model with its mAP, %)", title_fontsize=9)
    save(fig, path)


def plot_pr_grid(evaluation: dict[str, Any], baseline_eval: dict[str, Any] | None, labels: LabelMap, model: str,
                 split: str, path: Path) -> None:
    """Precision-recall of one model, a small panel per class (the baseline's curve in grey dashes)."""
    n = len(labels)
    cols = 4 if n <= 24 else 6
    rows = max(1, math.ceil(n / cols))
    panel_h = 1.75 if cols == 4 else 1.3
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE_WIDTH_IN, 0.9 + panel_h * rows), sharex=True, sharey=True,
                             squeeze=False, layout="constrained")
    color = plt.get_cmap("tab10")(0)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.set_visible(False)
            continue
        key = str(labels.ids[k])
        ap = evaluation.get("per_class", {}).get(key)
        base_ap = (baseline_eval or {}).get("per_class", {}).get(key)
        for ev, style in (((baseline_eval or {}), dict(color=BASELINE_COLOR, linestyle="--", linewidth=0.9)),
                          (evaluation, dict(color=color, linewidth=1.3))):
            pr = ev.get("pr", {}).get(key)
            if pr and len(pr["recall"]):
                ax.plot(pr["recall"], pr["precision"], **style)
        title = "\n".join(textwrap.wrap(labels.name(labels.ids[k]), 26)[:2])
        ax.set_title(title, fontsize=7, pad=3)
        ax.text(0.97, 0.95, f"AP {pct(ap)}" + (f"\nprior {pct(base_ap)}" if base_ap is not None else ""),
                transform=ax.transAxes, ha="right", va="top", fontsize=6.5,
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=1))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.03)
        ax.tick_params(labelsize=6.5)
        ax.grid(color="#e0e0e0", linewidth=0.5)
        if k % cols == 0:
            ax.set_ylabel("precision", fontsize=7)
        if k >= n - cols:
            ax.set_xlabel("recall", fontsize=7)
            ax.xaxis.set_tick_params(labelbottom=True)
    handles = [Line2D([], [], color=color, linewidth=1.3, label=f"{model} (best mAP)")]
    if baseline_eval:
        handles.append(Line2D([], [], color=BASELINE_COLOR, linestyle="--", linewidth=0.9, label="class-prior baseline"))
    fig.legend(handles=handles, loc="outside upper center", ncol=2, fontsize=7.5, frameon=False,
               title=f"Precision-recall per class of the best model, {split}", title_fontsize=9)
    save(fig, path)


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI)
    plt.close(fig)
