"""Fixtures shared by test modules: the tiny DAG run once locally, for the end-to-end tests and as the
reference of the SLURM test."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tiny import make_dataset, snakemake, tiny_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A folder with ``data/`` (the tiny dataset), ``config.yaml`` (tiny_config) and the local run's ``results/``."""
    work = tmp_path_factory.mktemp("e2e")
    make_dataset(work / "data")
    (work / "config.yaml").write_text(yaml.safe_dump(tiny_config(work / "data")))
    snakemake(work)
    return work
