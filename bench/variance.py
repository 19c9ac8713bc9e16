"""How much the demo's figures vary between machines, and what makes them vary.

Runs the whole DAG from scratch under each setting, in the same run, on the tiny synthetic dataset
(``pipeline.synth.configs.tiny_config``: minutes a run) or with ``--size demo`` on the demo's
(``config.yaml`` on ``data/demo``, which ``make demo`` writes: about seven minutes a run):

- ``again`` (with ``--again``): the reference setting a second time (a run is identical to itself:
  ``tests/test_pipeline_e2e.py`` checks it byte for byte, so it is left out by default);
- ``avx2``: torch's and oneDNN's CPU kernels limited to AVX2 (``ATEN_CPU_CAPABILITY=avx2``,
  ``ONEDNN_MAX_CPU_ISA=AVX2``), as on a CPU without AVX-512;
- ``one_core``: ``--cores 1``, so every job runs its torch and OpenCV work on one thread;
- ``seed``: the pipeline's seed 1 instead of 0: the spread that the arithmetic's differences are
  measured against (the ratio printed).

The synthetic data are generated once (the generator is bit-exact: one encoder thread, fixed
seeds), so what differs is only the arithmetic. Prints each model's val mAP and the detector's
recall per setting, and the largest difference to the reference; the last line is one JSON object.

    .venv/bin/python bench/variance.py [--size tiny|demo] [--settings NAME ...] [--again] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.synth.configs import tiny_config  # noqa: E402

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SETTINGS = {  # name: (environment, cores, pipeline seed)
    "reference": ({}, 2, 0),
    "avx2": ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, 2, 0),
    "one_core": ({}, 1, 0),
    "seed": ({}, 2, 1),
}


def dag_config(size: str, data: Path) -> dict:
    """The pipeline config of a run: the demo's ``config.yaml``, scaled to the tiny dataset or not."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    if size == "tiny":
        return tiny_config(config, data)
    config["dataset"]["root"] = str(data)
    return config


def run_dag(work: Path, config: dict, env: dict[str, str], cores: int, seed: int) -> dict[str, float]:
    """Run the DAG in ``work``; returns ``{model: val mAP %}`` and the detector's val recall %."""
    work.mkdir(parents=True)
    config = {**config, "seed": seed}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    with open(work / "snakemake.log", "w") as log:
        done = subprocess.run([SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
                               "--configfile", str(work / "config.yaml"), "--cores", str(cores), "--quiet"],
                              cwd=work, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"the DAG failed in {work} (rc {done.returncode}): see {work / 'snakemake.log'}"
                         " (kept only with --keep DIR)")
    figures = {path.parent.name: round(100 * json.loads(path.read_text())["mAP"], 4)
               for path in sorted((work / "results/eval").glob("*/val.json"))}
    figures["detector recall"] = round(100 * json.loads((work / "results/detect/val.metrics.json").read_text())["recall"], 4)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    parser.add_argument("--again", action="store_true", help="also run the reference setting a second time")
    parser.add_argument("--size", choices=["tiny", "demo"], default="tiny",
                        help="tiny: generated here; demo: data/demo of make demo, the demo's config")
    parser.add_argument("--settings", nargs="+", choices=[s for s in SETTINGS if s != "reference"],
                        default=[s for s in SETTINGS if s != "reference"],
                        help="the settings run beside the reference (default: all; seed is the yardstick)")
    args = parser.parse_args()
    names = ["reference", *args.settings, *(["again"] if args.again else [])]
    settings = {name: SETTINGS.get(name, SETTINGS["reference"]) for name in names}
    with tempfile.TemporaryDirectory(prefix="variance") as tmp:
        base = args.keep or Path(tmp)
        if args.size == "demo":
            data = ROOT / "data" / "demo"
            if not (data / ".complete").exists():
                raise SystemExit(f"{data}: no demo dataset; make demo writes it")
        else:
            data = base / "data"
            subprocess.run([sys.executable, "-m", "pipeline.synth", "--out", str(data), "--size", "tiny", "--seed",
                            "3"], check=True, capture_output=True)
        config = dag_config(args.size, data)
        results, seconds = {}, {}
        for name, (env, cores, seed) in settings.items():
            start = time.perf_counter()
            results[name] = run_dag(base / name, config, env, cores, seed)
            seconds[name] = round(time.perf_counter() - start, 1)
            print(f"{name:10s} {seconds[name]:7.1f} s  " + "  ".join(f"{k} {v:.2f}" for k, v in results[name].items()),
                  flush=True)
    reference = results["reference"]
    spread = {name: round(max(abs(figures[k] - reference[k]) for k in reference), 4)
              for name, figures in results.items() if name != "reference"}
    print("largest difference to the reference, in mAP or recall points:",
          ", ".join(f"{k} {v:.2f}" for k, v in spread.items()))
    ratios = {name: round(spread[name] / spread["seed"], 4) if spread.get("seed") else None
              for name in spread if name != "seed"}
    print(json.dumps({"size": args.size, "figures": results, "max_abs_difference": spread, "ratio_to_seed_spread": ratios,
                      "seconds": seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
