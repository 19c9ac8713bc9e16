"""The workflow as the Snakemake catalog keeps it: lint-clean and formatted on a fresh clone (before any
data exists), a user's config file in place of the demo's, and config mistakes told in one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory) -> Path:
    """The committed tree plus the working changes, without data/ or results/ (as `git clone` gives)."""
    clone = tmp_path_factory.mktemp("clone")
    for name in ("Snakefile", "config.yaml", "pyproject.toml", "workflow", "pipeline", "envs"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, clone / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, clone / name)
    return clone


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "snakemake"), *args], cwd=workdir, capture_output=True, text=True, timeout=300)


def test_lint_is_clean_on_a_fresh_clone_without_data(fresh_clone):
    assert not (fresh_clone / "data").exists()
    done = snakemake(fresh_clone, "--lint")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Lints for" not in output, output
    assert "Congratulations, your workflow is in a good condition!" in output


def test_rule_files_are_formatted_with_snakefmt():
    done = subprocess.run([str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_missing_dataset_is_one_clear_line_not_a_traceback(fresh_clone):
    done = snakemake(fresh_clone, "-n")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "config.yaml: dataset.root 'data/demo' is not a folder" in output
    assert "Traceback" not in output and "pipeline/" not in output


def test_config_errors_name_the_users_file_and_key(fresh_clone):
    config = yaml.safe_load((fresh_clone / "config.yaml").read_text())
    config["models"]["rgb"]["head"] = "deep"
    (fresh_clone / "mine.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(fresh_clone, "-n", "--configfile", "mine.yaml")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "mine.yaml does not match config.schema.yaml" in output
    assert "models.rgb.head: 'deep' is not one of ['linear', 'atr']" in output
    assert "pipeline/config.py" not in output                  # the message, not a traceback into the package
