"""The tiny DAG submitted to a real SLURM through `--profile profiles/slurm`, on a single-node cluster
started on localhost (tests/slurm_cluster.py): its prediction CSVs are byte-identical to a local run's
of the same config, every job ran as a SLURM job in the profile's CPU partition, and a job that asks
for GPUs goes to the GPU partition with ``--gpus`` and starts one process per GPU.

The config is the end-to-end tests' tiny one with the ground-truth boxes as precomputed person boxes
(``detect.precomputed``): every stage but the detector's training, which would double the test's time
and goes through SLURM as any other job does. Needs root and Debian's slurm-wlm and munge (`make
test` installs them as root); elsewhere the tests are skipped with the reason printed (pytest -rs).
The node declares 8 GPUs that are plain files: a GPU job is scheduled as on a cluster and runs on
the CPU (``compute.device: auto``).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import yaml

import slurm_cluster
from tiny import ROOT, ground_truth_boxes, make_dataset, planned_jobs, prediction_csvs, snakemake, tiny_config

pytestmark = pytest.mark.slow
PROFILE = ROOT / "profiles" / "slurm"
# What this cluster lacks against the profile: an accounting database (status from squeue), and the
# time of a real one (the first status check after 5 s, not 40; one every 5 s). Threads capped as the
# local run's --cores 2 caps them, so that both runs compute alike.
CLUSTER_ARGS = ("--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "5",
                "--seconds-between-status-checks", "5", "--max-threads", "2")


def partitions() -> dict[str, dict]:
    return yaml.safe_load((PROFILE / "partitions.yaml").read_text())["partitions"]


def cpu_partition() -> str:
    return next(name for name, limits in partitions().items() if not limits.get("max_gpu"))


def gpu_partition() -> str:
    return next(name for name, limits in partitions().items() if limits.get("max_gpu"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = slurm_cluster.unavailable_reason()
    if reason:
        pytest.skip(f"no SLURM test: {reason}")
    # the profile's partitions by their (placeholder) names; memory and GPUs enough for the profile's asks
    started = slurm_cluster.start(tmp_path_factory.mktemp("slurm"), [cpu_partition(), gpu_partition()],
                                  cpus=max(2, os.cpu_count() or 2), memory_mb=1_000_000, gpus=8)
    # the daemons outlive a killed pytest: a SIGTERM interrupts the tests instead, and the teardown runs
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield started
    finally:
        slurm_cluster.stop(started)
        signal.signal(signal.SIGTERM, previous)


def interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The tiny dataset and its config with ground-truth boxes in place of the detector (``config.yaml``)."""
    root = tmp_path_factory.mktemp("slurm_data")
    make_dataset(root / "data")
    config = tiny_config(root / "data")
    config["detect"]["precomputed"] = ground_truth_boxes(root / "data", root / "boxes")
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture(scope="module")
def local_run(cluster, data, tmp_path_factory) -> Path:
    """The same config run locally (after the cluster fixture: skipped where SLURM cannot run)."""
    work = tmp_path_factory.mktemp("local_run")
    (work / "config.yaml").write_text((data / "config.yaml").read_text())
    snakemake(work)
    return work


@pytest.fixture(scope="module")
def slurm_run(cluster, data, tmp_path_factory) -> Path:
    """The same DAG from scratch through the SLURM profile."""
    work = tmp_path_factory.mktemp("slurm_run")
    (work / "config.yaml").write_text((data / "config.yaml").read_text())
    try:
        snakemake(work, "--profile", str(PROFILE), *CLUSTER_ARGS, cores=False, env=cluster.env)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{cluster.logs()}") from None
    return work


def test_the_slurm_run_predicts_byte_for_byte_what_the_local_run_predicts(slurm_run, local_run):
    local, remote = prediction_csvs(local_run), prediction_csvs(slurm_run)
    assert remote == local and len(local) == 9                 # 5 models, 3 fusions, the baseline, on val
    for path in local:
        if path.parent.name == "rgb_atr":
            # Measured: the ATR head's scores differ in the last printed digit (at most 6e-8) between the
            # local run and SLURM's, where its job runs on another thread count; every row else is equal.
            mine, theirs = (p.read_text().splitlines() for p in (local_run / path, slurm_run / path))
            assert [r.rsplit(",", 1)[0] for r in mine] == [r.rsplit(",", 1)[0] for r in theirs], path
            assert max(abs(float(a.rsplit(",", 1)[1]) - float(b.rsplit(",", 1)[1]))
                       for a, b in zip(mine, theirs)) < 1e-6, path
            continue
        assert (slurm_run / path).read_bytes() == (local_run / path).read_bytes(), path
    assert all(len((local_run / path).read_text().splitlines()) > 10 for path in local)


def test_every_job_ran_on_slurm_in_the_cpu_partition(slurm_run, cluster):
    # The DAG's jobs, counted by a dry run of the whole DAG from scratch ("all" is no job: it runs nothing).
    planned = planned_jobs(snakemake(slurm_run, "-n", "--forceall"))
    planned.pop("all", None)
    jobs = cluster.completed_jobs()
    names = [job["Name"] for job in jobs]
    assert len(jobs) == sum(planned.values()), (planned, names)
    assert {job["JobState"] for job in jobs} == {"COMPLETED"}
    assert {job["Partition"] for job in jobs} == {cpu_partition()}
    assert all("gpu" not in cluster.job_details(job["JobId"]).get("TresPerJob", "") for job in jobs)
    # each job asked for as many CPUs as its rule's threads (cpus_per_task: threads), capped at 2
    assert {int(job["ProcCnt"]) for job in jobs} <= {1, 2} and max(int(job["ProcCnt"]) for job in jobs) == 2


def test_a_job_that_asks_for_gpus_goes_to_the_gpu_partition_with_one_process_per_gpu(slurm_run, cluster):
    # finetune with compute.gpus 2: `--gpus=2` in the GPU partition, torchrun with 2 processes (on the
    # CPU here, gloo, since the node's GPUs are files). Only that job runs (its inputs are there).
    config = yaml.safe_load((slurm_run / "config.yaml").read_text())
    config["compute"]["gpus"] = {"finetune": 2}         # nothing else: the other jobs' params stay as they are
    (slurm_run / "gpu.yaml").write_text(yaml.safe_dump(config))
    backbone = next(name for name, spec in config["backbones"].items() if spec["modality"] == "rgb")
    before = len(cluster.completed_jobs())
    output = snakemake(slurm_run, "--profile", str(PROFILE), *CLUSTER_ARGS, "--forcerun=finetune",
                       f"results/models/{backbone}/backbone.pt", config="gpu.yaml", cores=False, env=cluster.env)
    assert "-m torch.distributed.run --standalone --nproc_per_node=2 -m pipeline.stages.finetune" in output
    jobs = [cluster.job_details(job["JobId"]) for job in cluster.completed_jobs()[before:]]
    assert len(jobs) == 1, jobs
    finetune = [job for job in jobs if job.get("Comment", "").startswith("rule_finetune")]   # the plugin's comment
    assert len(finetune) == 1 and finetune[0]["JobState"] == "COMPLETED", jobs
    assert finetune[0]["Partition"] == gpu_partition()
    assert finetune[0]["TresPerJob"] == "gres:gpu:2"
    log = (slurm_run / f"results/logs/finetune/{backbone}.log").read_text()
    assert log.count("finetuning ") == 2, log                  # each process says what it trains
    assert (slurm_run / f"results/models/{backbone}/backbone.pt").exists(), log


def test_where_slurm_cannot_run_the_reason_is_given(monkeypatch):
    # what the skip of the tests above prints on a machine without root or without the packages
    monkeypatch.setattr(slurm_cluster.os, "geteuid", lambda: 1000)
    assert "needs root" in slurm_cluster.unavailable_reason()
    monkeypatch.setattr(slurm_cluster.os, "geteuid", lambda: 0)
    monkeypatch.setattr(slurm_cluster.shutil, "which", lambda name, path=None: None if name == "slurmd" else name)
    reason = slurm_cluster.unavailable_reason()
    assert "slurmd" in reason and "slurm-wlm" in reason
