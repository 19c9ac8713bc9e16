"""Each stage's cost from Snakemake's benchmark files (``results/benchmarks/<stage>/...tsv``, one row of
``s  h:m:s  max_rss  max_vms  max_uss  max_pss  io_in  io_out  mean_load  cpu_time`` per run of a job)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError
from pipeline.reporting.tables import Table


@dataclass
class StageCost:
    """The jobs of one stage: their count, summed and largest wall time (s), summed CPU time (s) and
    largest peak resident memory (MB)."""

    jobs: int = 0
    wall_s: float = 0.0
    max_wall_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_mb: float = 0.0


def stage_of(path: Path, root: Path) -> str:
    """``root/frames/{video}.tsv`` -> frames; ``root/detector_train.tsv`` -> detector_train."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else path.stem


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "", "NA", "-") else 0.0
    except ValueError:
        return 0.0


def read_benchmark(path: Path) -> list[dict[str, str]]:
    """The rows of one benchmark file; an :class:`InputError` naming it when it has no ``s`` column."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if rows and "s" not in rows[0]:
        raise InputError(path, f"not a Snakemake benchmark file (no 's' column in {list(rows[0])})", line=1)
    return rows


def stage_costs(paths: list[Path], root: Path) -> dict[str, StageCost]:
    """``{stage: StageCost}`` over the benchmark files, stages in the order first met."""
    costs: dict[str, StageCost] = {}
    for path in paths:
        cost = costs.setdefault(stage_of(Path(path), Path(root)), StageCost())
        for row in read_benchmark(Path(path)):
            wall = _number(row.get("s"))
            cost.jobs += 1
            cost.wall_s += wall
            cost.max_wall_s = max(cost.max_wall_s, wall)
            cost.cpu_s += _number(row.get("cpu_time"))
            cost.max_rss_mb = max(cost.max_rss_mb, _number(row.get("max_rss")))
    return costs


def cost_table(costs: dict[str, StageCost]) -> Table:
    """One row per stage and a total (wall and CPU times summed over jobs, memory the largest peak)."""
    table = Table(["stage", "jobs", "wall, all jobs (s)", "wall, longest job (s)", "CPU (s)", "peak RSS (MB)"])
    for stage, c in costs.items():
        table.add(stage, c.jobs, f"{c.wall_s:.1f}", f"{c.max_wall_s:.1f}", f"{c.cpu_s:.1f}", f"{c.max_rss_mb:.0f}")
    if costs:
        table.add("total", sum(c.jobs for c in costs.values()), f"{sum(c.wall_s for c in costs.values()):.1f}",
                  f"{max(c.max_wall_s for c in costs.values()):.1f}", f"{sum(c.cpu_s for c in costs.values()):.1f}",
                  f"{max(c.max_rss_mb for c in costs.values()):.0f}")
    return table
