"""The code runs one way: stages (``pipeline/stages/``, one per Snakemake rule) use libraries, never
another stage; libraries never use a stage; every rule runs its own stage module.

Imports are read with ``ast`` (every ``import``/``from ... import``, also inside functions), so the
check needs nothing to be importable.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pipeline"
STAGES = "pipeline.stages"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every ``pipeline`` module that ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m == "pipeline" or m.startswith("pipeline.")}


def is_stage(module: str) -> bool:
    return module.startswith(STAGES + ".")


def layer_problems(modules: dict[str, set[str]]) -> list[str]:
    """What breaks the layers in ``{module: imported modules}``: a stage importing another stage, or a
    library importing a stage (or the stages package)."""
    problems = []
    for module, imports in sorted(modules.items()):
        for target in sorted(imports):
            if target == STAGES or is_stage(target):
                if is_stage(module) and target != module:
                    problems.append(f"stage {module} imports stage {target}")
                elif not is_stage(module) and module != STAGES:
                    problems.append(f"library {module} imports stage {target}")
    return problems


def package_modules() -> dict[str, set[str]]:
    return {module_name(p): imported_modules(p) for p in PACKAGE.rglob("*.py")}


def test_stages_import_libraries_only_and_libraries_never_import_stages():
    assert layer_problems(package_modules()) == []


def test_the_check_catches_the_imports_that_made_stages_depend_on_each_other():
    # The imports issue 9 found, as they would read in today's layout.
    before = {
        "pipeline.stages.features": {"pipeline.stages.finetune"},        # build_detector from finetune
        "pipeline.stages.head": {"pipeline.stages.features"},            # Features from the features stage
        "pipeline.stages.predict": {"pipeline.stages.head"},             # head_logits from head
        "pipeline.stages.detect": {"pipeline.stages.detector_train"},    # image_tensor from detector training
        "pipeline.stages.detect_precomputed": {"pipeline.stages.detect"},  # write_outputs from detect
        "pipeline.data.clips": {"pipeline.stages.dataset"},              # read_keyframes from the dataset stage
        "pipeline.feature_store": {"pipeline.stages.finetune"},
    }
    problems = layer_problems(before)
    assert len(problems) == len(before), problems
    assert "stage pipeline.stages.predict imports stage pipeline.stages.head" in problems
    assert "library pipeline.data.clips imports stage pipeline.stages.dataset" in problems


def test_imports_are_read_from_function_bodies_and_relative_imports(tmp_path, monkeypatch):
    fake = tmp_path / "pipeline" / "stages"
    fake.mkdir(parents=True)
    (tmp_path / "pipeline" / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "a.py").write_text("def main():\n    from .b import run\n    import pipeline.stages.c\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = imported_modules(fake / "a.py")
    assert {"pipeline.stages.b", "pipeline.stages.c"} <= found


def test_every_stage_has_a_main_and_libraries_have_none():
    for path in PACKAGE.rglob("*.py"):
        module = module_name(path)
        tree = ast.parse(path.read_text())
        has_main = any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)
        if is_stage(module):
            assert has_main, f"{module} is a stage without main()"
        elif module.startswith("pipeline.synth"):
            continue  # the synthetic-dataset tool (python -m pipeline.synth), used by make demo, not by a rule
        elif module == "pipeline.models.convert_caffe2":
            continue  # a one-time command a user runs on a downloaded Caffe2 pickle before the pipeline, not a rule
        elif module == "pipeline.plan":
            continue  # the cost planner (python -m pipeline.plan), run before a run, not by a rule
        else:
            assert not has_main, f"{module} is a library with a main(): move it to pipeline/stages/"


def rules_and_commands() -> dict[str, str]:
    """``{rule name: the pipeline module its shell command runs}`` over every rule file."""
    found = {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        rule_texts = r"^(?:rule|checkpoint) (\w+):(.*?)(?=^(?:rule|checkpoint) |\Z)"
        for match in re.finditer(rule_texts, smk.read_text(), re.S | re.M):
            command = re.search(r"\bpython\b[^\n]*? -m (pipeline[\w.]*)", match.group(2))
            if command:
                found[match.group(1)] = command.group(1)
    return found


def test_each_rule_runs_the_stage_module_of_its_own_name():
    rules = rules_and_commands()
    assert len(rules) >= 14
    for rule, module in rules.items():
        assert module == f"{STAGES}.{rule}", f"rule {rule} runs {module}"
        assert (PACKAGE / "stages" / f"{rule}.py").exists()


@pytest.mark.parametrize("smk", sorted(p.name for p in (ROOT / "workflow" / "rules").glob("*.smk")))
def test_rule_files_are_named_after_the_stages_they_hold(smk):
    if smk == "common.smk":
        return
    rules = re.findall(r"^(?:rule|checkpoint) (\w+):", (ROOT / "workflow" / "rules" / smk).read_text(), re.M)
    stem = smk.removesuffix(".smk")
    assert rules, f"{smk} holds no rule"
    assert all(stem in rule for rule in rules), f"{smk} holds {rules}"


def test_every_stage_runs_its_main_through_run_stage():
    """``python -m pipeline.stages.<stage>`` ends bad input and storage failures with one line
    (:func:`pipeline.cli.run_stage`): each stage's ``__main__`` block calls it, with the import in place."""
    for path in sorted((PACKAGE / "stages").glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                    and node.module == "pipeline.cli" for alias in node.names}
        assert "run_stage" in imported, f"{path.name} does not import run_stage"
        assert "raise SystemExit(run_stage(main))" in path.read_text(), f"{path.name} does not run main through run_stage"
