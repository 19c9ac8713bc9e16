"""A single-node SLURM cluster on localhost, for tests: munged, slurmctld and slurmd in a private folder.

Everything lives under one folder (config, munge key and socket, state, spool, logs, pid files) and
the daemons listen on free ports, so that the cluster neither reads nor disturbs a system SLURM or
munge. Clients find it through ``SLURM_CONF`` (``Cluster.env``). Needs root (slurmd starts job
processes as their user) and Debian's ``slurm-wlm`` and ``munge`` (envs/debian-packages.txt).

Facts of slurm 22.05 in a container: ``proctrack/linuxproc`` and ``task/none`` (no cgroups), no
``cgroup.conf`` at all (22.05 refuses ``CgroupPlugin=disabled``), no accounting database (``sacct``
answers nothing: status comes from ``squeue``, which keeps finished jobs for ``MinJobAge``). Each
finished job is a line of ``jobcomp/filetxt`` (``Cluster.completed_jobs``), with its partition.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "srun")


def unavailable_reason() -> str | None:
    """Why this machine cannot run the cluster (None when it can)."""
    if os.geteuid() != 0:
        return "needs root (slurmd starts jobs as their user); run `make test` as root"
    missing = [b for b in DAEMONS + CLIENTS if shutil.which(b, path=f"/usr/sbin:/sbin:{os.environ.get('PATH', '')}") is None]
    if missing:
        return (f"SLURM/munge binaries missing: {', '.join(missing)} (Debian packages slurm-wlm and munge, "
                "envs/debian-packages.txt; `make test` installs them as root)")
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary(name: str) -> str:
    found = shutil.which(name, path=f"/usr/sbin:/sbin:{os.environ.get('PATH', '')}")
    if found is None:
        raise FileNotFoundError(name)
    return found


def slurm_conf(root: Path, node: str, cpus: int, memory_mb: int, gpus: int, partitions: list[str],
               ports: tuple[int, int]) -> str:
    """slurm.conf of one node holding every partition (the first the default). The node declares ``cpus``,
    ``memory_mb`` and ``gpus`` whatever the machine has (``config_overrides``): the GPUs are GRES without
    devices, so that jobs that ask for GPUs are scheduled as on a cluster (and run on the CPU)."""
    lines = [
        "ClusterName=avatest",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root}/munge/munge.socket",
        f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log",
        f"SlurmdLogFile={root}/log/slurmd.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "SchedulerType=sched/builtin",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={root}/log/jobcomp.txt",
        "MpiDefault=none",
        "SlurmdParameters=config_overrides",
        "GresTypes=gpu",
        "ReturnToService=2",
        "MinJobAge=3600",                  # squeue (and scontrol) know a finished job for an hour
        "SlurmctldTimeout=30",
        "SlurmdTimeout=60",
        "InactiveLimit=0",
        "KillWait=5",
        "Waittime=0",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} Gres=gpu:{gpus} State=UNKNOWN",
    ]
    for i, name in enumerate(partitions):
        lines.append(f"PartitionName={name} Nodes={node} Default={'YES' if i == 0 else 'NO'} MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


@dataclass
class Cluster:
    root: Path
    node: str
    processes: dict[str, int]

    @property
    def env(self) -> dict[str, str]:
        """The environment of a client of this cluster (sbatch, squeue, Snakemake's SLURM executor)."""
        return {**os.environ, "SLURM_CONF": str(self.root / "slurm.conf"),
                "PATH": f"{self.root / 'bin'}:{os.environ.get('PATH', '')}:/usr/sbin:/sbin"}

    def completed_jobs(self) -> list[dict[str, str]]:
        """One dict per finished job (jobcomp/filetxt's KEY=VALUE fields: JobId, Partition, JobState, ...)."""
        path = self.root / "log" / "jobcomp.txt"
        if not path.exists():
            return []
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in path.read_text().splitlines() if line.strip()]

    def job_details(self, job_id: str) -> dict[str, str]:
        """``scontrol show job``'s fields of a job (finished ones too, for MinJobAge): Partition,
        NumCPUs, TresPerJob (``gres:gpu:N`` for ``--gpus=N``), ..."""
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True,
                             env=self.env).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def logs(self) -> str:
        return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted((self.root / "log").glob("*")))


def start(root: Path, partitions: list[str], cpus: int, memory_mb: int, gpus: int, timeout_s: float = 60.0) -> Cluster:
    """Start munged, slurmctld and slurmd under ``root`` and wait until the node is idle."""
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    os.chmod(root / "munge", 0o700)
    node = socket.gethostname().split(".")[0]
    (root / "slurm.conf").write_text(slurm_conf(root, node, cpus, memory_mb, gpus, partitions, (free_port(), free_port())))
    # slurmd counts a GPU by its device file: plain files stand in for /dev/nvidia*
    (root / "dev").mkdir(exist_ok=True)
    for i in range(gpus):
        (root / "dev" / f"gpu{i}").touch()
    (root / "gres.conf").write_text(f"NodeName={node} Name=gpu File={root}/dev/gpu[0-{gpus - 1}]\n" if gpus else "")
    cluster = Cluster(root, node, {})
    # Snakemake's SLURM jobstep runs each job's command with `srun` in an environment stripped of every
    # SLURM_* variable but the job's ids (snakemake-executor-plugin-slurm-jobstep 0.6.1), SLURM_CONF too:
    # on a cluster srun finds /etc/slurm/slurm.conf; here a wrapper first on PATH gives it this cluster's.
    (root / "bin").mkdir(exist_ok=True)
    wrapper = root / "bin" / "srun"
    wrapper.write_text(f"#!/bin/sh\nSLURM_CONF={root}/slurm.conf exec {binary('srun')} \"$@\"\n")
    wrapper.chmod(0o755)
    env = cluster.env
    try:
        key = root / "munge" / "munge.key"
        run([binary("mungekey"), "--create", f"--keyfile={key}"], env)
        os.chmod(key, 0o400)
        run([binary("munged"), "--force", f"--key-file={key}", f"--socket={root}/munge/munge.socket",
             f"--pid-file={root}/munge/munged.pid", f"--log-file={root}/log/munged.log",
             f"--seed-file={root}/munge/munged.seed"], env)
        cluster.processes["munged"] = read_pid(root / "munge" / "munged.pid")
        run([binary("slurmctld"), "-i"], env)                       # -i: ignore (there is no) saved state
        cluster.processes["slurmctld"] = read_pid(root / "slurmctld.pid")
        run([binary("slurmd"), "-N", node], env)
        cluster.processes["slurmd"] = read_pid(root / "slurmd.pid")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=env).stdout.split()
            if state and all(s == "idle" for s in state):
                return cluster
            dead = [name for name, pid in cluster.processes.items() if not alive(pid)]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} stopped\n{cluster.logs()}")
            time.sleep(1)
    except BaseException:
        stop(cluster)
        raise
    stop(cluster)
    raise RuntimeError(f"the SLURM node did not become idle in {timeout_s:.0f} s\n{cluster.logs()}")


def run(cmd: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def read_pid(path: Path, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text().split()[0])
        time.sleep(0.1)
    raise RuntimeError(f"no pid file {path}")


def stop(cluster: Cluster, timeout_s: float = 20.0) -> None:
    """Cancel every job, then stop the daemons that ``start`` started (by their pids), slurmd first."""
    subprocess.run(["scancel", "--full", "--user", "root"], capture_output=True, env=cluster.env)
    for name in ("slurmd", "slurmctld", "munged"):
        pid = cluster.processes.get(name)
        if pid is None:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.2)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of ours would still answer; the daemons fork away from us, so this is their real state
    return True
