"""The conda environment files of the rules parse, pin the same versions as pyproject.toml, and hold what
the rules' modules import."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)$")


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        match = PIN.match(requirement)
        assert match, f"pyproject.toml: {requirement!r} is not pinned with =="
        pins[match.group(1).lower()] = match.group(2)
    return pins


def env_pins(path: Path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    assert set(env) >= {"channels", "dependencies"}, f"{path.name}: needs channels and dependencies"
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, f"{path.name}: expected one pip section"
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"]), f"{path.name}: python=3.11 not pinned"
    pins = {}
    for requirement in pip_sections[0]:
        match = PIN.match(requirement)
        assert match, f"{path.name}: {requirement!r} is not pinned with =="
        pins[match.group(1).lower()] = match.group(2)
    return pins


def test_every_env_agrees_with_pyproject():
    pins = pyproject_pins()
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert envs, "envs/ holds no environment file"
    for path in envs:
        for name, version in env_pins(path).items():
            assert name in pins, f"{path.name}: {name} is not a dependency in pyproject.toml"
            assert pins[name] == version, f"{path.name}: {name}=={version} but pyproject.toml pins {pins[name]}"


def test_every_rule_names_an_existing_env_and_a_log():
    rules_dir = ROOT / "workflow" / "rules"
    for smk in rules_dir.glob("*.smk"):
        text = smk.read_text()
        for block in re.split(r"\nrule ", "\n" + text)[1:]:
            name = block.split(":", 1)[0]
            assert "\n    log:" in block, f"{smk.name}: rule {name} has no log:"
            conda = re.search(r"\n    conda:\n\s+\"([^\"]+)\"", block)
            assert conda, f"{smk.name}: rule {name} names no conda env"
            assert (rules_dir / conda.group(1)).resolve().is_file(), f"{smk.name}: rule {name}: {conda.group(1)} missing"


def rule_modules() -> dict[str, set[str]]:
    """``{env file: the modules its rules run}``: each rule's ``conda:`` file, the ``python -m`` of its shell."""
    rules_dir = ROOT / "workflow" / "rules"
    modules: dict[str, set[str]] = {}
    for smk in sorted(rules_dir.glob("*.smk")):
        for block in re.split(r"\nrule ", "\n" + smk.read_text())[1:]:
            conda = re.search(r"\n    conda:\n\s+\"([^\"]+)\"", block)
            if conda:
                env = (rules_dir / conda.group(1)).resolve().name
                modules.setdefault(env, set()).update(re.findall(r"python -m ([\w.]+)", block))
    return modules


def test_every_env_holds_the_project_dependencies_its_rules_import():
    """A rule's job runs in its conda env: every pinned dependency of pyproject.toml that its module
    imports (at import time, directly or through the package) must be in that env."""
    pins = pyproject_pins()
    top_level = {name: {re.sub(r"[-_.]+", "-", d).lower() for d in dists}
                 for name, dists in importlib.metadata.packages_distributions().items()}
    for env, modules in rule_modules().items():
        code = ("import importlib, sys\n"
                f"for m in {sorted(modules)!r}: importlib.import_module(m)\n"
                "print(' '.join(sorted({n.split('.')[0] for n in sys.modules})))")
        loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
        assert loaded.returncode == 0, f"{env}: importing its rules' modules fails:\n{loaded.stderr[-2000:]}"
        used = {d for name in loaded.stdout.split() for d in top_level.get(name, ()) if d in pins}
        missing = sorted(used - set(env_pins(ROOT / "envs" / env)))
        assert not missing, f"{env}: its rules' modules {sorted(modules)} import {missing}, which it does not pin"
