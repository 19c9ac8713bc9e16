"""The tiny synthetic dataset and its config, and Snakemake run on them: shared by the end-to-end tests
(tests/test_pipeline_e2e.py) and the SLURM test (tests/test_slurm.py), whose runs must be comparable."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.synth import configs as synth_configs

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SEED = 3


def make_dataset(out: Path) -> Path:
    """The tiny synthetic AVA-like dataset (seed 3) under ``out``."""
    subprocess.run([sys.executable, "-m", "pipeline.synth", "--out", str(out), "--size", "tiny", "--seed", str(SEED)],
                   check=True, capture_output=True)
    return out


def tiny_config(data_dir: Path) -> dict:
    """The demo's config.yaml, scaled down to the tiny dataset: same keys, same code paths."""
    return synth_configs.tiny_config(yaml.safe_load((ROOT / "config.yaml").read_text()), data_dir)


def ground_truth_boxes(data_dir: Path, out_dir: Path) -> dict[str, str]:
    """Each split's ground-truth person boxes as a precomputed box file (SlowFast's format, score 0.9) under
    ``out_dir``: ``detect.precomputed`` for runs that need boxes but not the detector's training."""
    config = tiny_config(data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, spec in config["dataset"]["splits"].items():
        boxes = dict.fromkeys(",".join(line.split(",")[:6]) for line in
                              (data_dir / spec["ground_truth"]).read_text().splitlines() if line.strip())
        files[split] = str(out_dir / f"{split}.boxes.csv")
        Path(files[split]).write_text("".join(f"{box},,0.9\n" for box in boxes))
    return files


def snakemake(workdir: Path, *args: str, config: str = "config.yaml", cores: bool = True,
              env: dict[str, str] | None = None) -> str:
    """Run Snakemake on the pipeline in ``workdir`` (``--cores 2`` unless ``cores`` is false); its output,
    or an AssertionError with the output and every job log when it fails."""
    cmd = [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / config), *(["--cores", "2"] if cores else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=env)
    if done.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((workdir / "results" / "logs").rglob("*.log")))
        raise AssertionError(f"{' '.join(cmd)} failed:\n{done.stdout[-5000:]}\n{done.stderr[-5000:]}\n{logs}")
    return done.stdout + done.stderr


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run (empty when nothing is to be done)."""
    counts: dict[str, int] = {}
    in_table = False
    for line in dry_run_output.splitlines():
        if line.startswith("Job stats:"):
            in_table = True
            continue
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if in_table and match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
        elif in_table and line.strip() == "" and counts:
            break
    return counts


def prediction_csvs(workdir: Path) -> list[Path]:
    """Every prediction CSV of a run, relative to its folder, sorted."""
    return sorted(p.relative_to(workdir) for p in (workdir / "results/predictions").rglob("*.csv"))
