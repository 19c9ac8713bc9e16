"""`python -m pipeline.plan`: jobs from Snakemake's DAG, and costs that follow the config and agree with
what a run measures.

On configs/ava_v2.2.yaml (no AVA here: placeholders of AVA's size) the jobs per rule are what the
config implies, and the costs move as the config does; on the tiny config the plan's CPU hours and
disk per stage are within a factor of what the tiny run (conftest.py's ``tiny_run``) measured.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest

from pipeline import plan
from pipeline.config import load_config
from tiny import ROOT, planned_jobs, snakemake

AVA = ROOT / "configs" / "ava_v2.2.yaml"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ava():
    config = load_config(AVA)
    shape, present = plan.dataset_shape(config, None, None, 16 / 9, 3.0)
    return config, shape, plan.job_counts(AVA, shape, present)


def by_stage(plans: list[plan.StagePlan]) -> dict[str, plan.StagePlan]:
    return {p.stage: p for p in plans}


def test_the_ava_plan_has_the_jobs_that_the_config_implies(ava):
    config, shape, counts = ava
    assert shape.videos == {"train": 235, "val": 64} and shape.duration_s == 901
    videos, backbones, models = 299, len(config["backbones"]), len(config["models"])
    fusions, evals = len(config["fusions"]), len(config["dataset"]["eval_splits"])
    assert counts == {
        "dataset": 1, "prepare": videos, "frames": videos, "flow": 2 * videos, "audio": videos,
        "detector_train": 1, "detect": 2, "finetune": backbones, "features": backbones * videos,
        "head": models, "predict": models * evals, "baseline": evals, "fuse": fusions * evals,
        "evaluate": (models + fusions + 1) * evals, "report": 1,
    }


def test_the_ava_plan_prices_gpu_stages_in_gpu_hours_and_media_in_cpu_hours(ava):
    config, shape, counts = ava
    costs = plan.load_costs(plan.COSTS)
    rows = by_stage(plan.stage_plans(config, shape, counts, costs, 50.0))
    for name in ("detector_train", "detect", "finetune (i3d_nl_rgb)", "features (p3d_flow)"):
        assert rows[name].gpu_hours > 0 and rows[name].gpus_per_job >= 1, name
    assert rows["finetune (i3d_nl_rgb)"].gpus_per_job == 8
    for name in ("prepare", "frames", "flow (tvl1)", "flow (farneback)", "audio"):
        assert rows[name].cpu_hours > 0 and rows[name].gpu_hours == 0 and rows[name].disk_bytes > 0, name
    # TV-L1 at 0.5 CPU-s per 427x240 pair: 22 pairs around each of 898 keyframes, at 455x256 (README: 1.4
    # CPU-hours per movie for 10,000 pairs): about 3 CPU-hours per movie
    assert 2.5 < rows["flow (tvl1)"].cpu_hours / 299 < 3.5
    # an I3D feature file: 898 keyframes of 2048 x 14 x 25 float16 context maps, 1.3 GB per movie
    assert 1.2e9 < rows["features (i3d_nl_rgb)"].disk_bytes / 299 < 1.4e9
    # twice the GPU rate, half the GPU hours
    faster = by_stage(plan.stage_plans(config, shape, counts, costs, 100.0))
    assert faster["finetune (p3d_rgb)"].gpu_hours == pytest.approx(rows["finetune (p3d_rgb)"].gpu_hours / 2)


def test_the_ava_costs_follow_the_config(ava):
    config, shape, counts = ava
    costs = plan.load_costs(plan.COSTS)
    base = by_stage(plan.stage_plans(config, shape, counts, costs, 50.0))

    longer = copy.deepcopy(config)
    recipe = longer["backbones"]["artnet"]["finetune"]     # a YAML anchor that the other backbones share
    longer["backbones"]["artnet"]["finetune"] = {**recipe, "epochs": 2 * recipe["epochs"]}
    rows = by_stage(plan.stage_plans(longer, shape, counts, costs, 50.0))
    assert rows["finetune (artnet)"].gpu_hours == pytest.approx(2 * base["finetune (artnet)"].gpu_hours)
    assert rows["finetune (tsn_r152)"].gpu_hours == pytest.approx(base["finetune (tsn_r152)"].gpu_hours)

    on_cpu = copy.deepcopy(config)
    on_cpu["compute"]["gpus"]["features"] = 0
    rows = by_stage(plan.stage_plans(on_cpu, shape, counts, costs, 50.0))
    assert rows["features (artnet)"].gpu_hours == 0
    assert rows["features (artnet)"].cpu_hours > 10 * base["features (artnet)"].cpu_hours

    every_frame = copy.deepcopy(config)
    every_frame["frames"]["window"] = "all"
    rows = by_stage(plan.stage_plans(every_frame, shape, counts, costs, 50.0))
    kept = plan.kept_fraction(config, "flow/tvl1")
    assert kept < 1
    assert rows["flow (tvl1)"].cpu_hours == pytest.approx(base["flow (tvl1)"].cpu_hours / kept)

    bigger = dataclasses.replace(shape, videos={"train": 470, "val": 128})
    rows = by_stage(plan.stage_plans(config, bigger, counts, costs, 50.0))
    assert rows["frames"].disk_bytes == pytest.approx(2 * base["frames"].disk_bytes)


def test_main_prints_the_table(capsys):
    # a small AVA-like run (the same config, fewer movies) keeps the dry run short
    assert plan.main(["--configfile", str(AVA), "--videos", "train=4", "val=2"]) == 0
    out = capsys.readouterr().out
    assert "| stage | jobs | GPUs per job | wall per job | disk | CPU hours | GPU hours |" in out
    assert "| frames | 6 |" in out and "| finetune (i3d_nl_rgb) | 1 | 8 |" in out and "| **total** |" in out
    assert "4 train, 2 val (given by --videos)" in out


def test_the_tiny_plan_counts_the_jobs_and_the_disk_of_the_tiny_run(tiny_run):
    """The plan's job counts equal Snakemake's, and its disk is within a factor of what the run wrote.
    CPU hours are not compared here: CPU time depends on the machine and its load (a loaded machine
    spins its OpenMP threads), so planned against measured CPU time is bench/plan_costs.py's figure."""
    config = load_config(tiny_run / "config.yaml")
    shape, present = plan.dataset_shape(config, None, None, 16 / 9, 3.0)
    assert present and sum(shape.videos.values()) == len(list((tiny_run / "results/frames").glob("*.h5")))
    counts = plan.job_counts(tiny_run / "config.yaml", shape, present)
    dag = planned_jobs(snakemake(tiny_run, "-n", "--forceall"))
    dag.pop("all", None)
    assert counts == dag
    rows = plan.stage_plans(config, shape, counts, plan.load_costs(plan.COSTS), 50.0)
    disk = {p.stage: p.disk_bytes for p in rows}
    written = {"frames": sum(f.stat().st_size for f in (tiny_run / "results/frames").glob("*.h5")),
               "flow (farneback)": sum(f.stat().st_size for f in (tiny_run / "results/flow/farneback").glob("*.h5"))}
    assert all(1 / FACTOR < disk[s] / written[s] < FACTOR for s in written), (disk, written)


FACTOR = 3.0
