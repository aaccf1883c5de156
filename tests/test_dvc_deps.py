"""dvc.yaml's code deps are exactly what each stage imports, so DVC reruns a stage when, and
only when, code it runs has changed (the end-to-end check is in test_pipeline.py)."""

import ast

import pytest
import yaml

from conftest import REPO

SRC = REPO / "src"
# The dispatcher, the settings schema and the error base class: every stage imports them, and
# their values are tracked as params; a change to them alone must not rerun the pipeline.
NOT_DEPS = {"colorize.cli", "colorize.config", "colorize.errors", "colorize"}
ENTRY = {
    "fetch": ["colorize.data.fetch"],
    "prepare": ["colorize.data.prepare"],
    "preprocess": ["colorize.preprocess.run"],
    "prior": ["colorize.preprocess.prior"],
    "train": ["colorize.train.stage"],
    # evaluate measures, then colorize.track logs and registers the model, whose pyfunc is
    # predict/service.py (logged from code)
    "evaluate": ["colorize.evaluate.run", "colorize.track.models", "colorize.predict.service"],
}
# A stage may not import another stage's entry module (shared helpers live below them).
STAGE_MODULES = {m for roots in ENTRY.values() for m in roots} - {"colorize.track.models",
                                                                 "colorize.predict.service"}


def _file(module: str):
    p = SRC.joinpath(*module.split("."))
    if (p / "__init__.py").exists():
        return p / "__init__.py"
    return p.with_suffix(".py") if p.with_suffix(".py").exists() else None


def _imports(module: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(_file(module).read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("colorize") and _file(m)}


def closure(roots: list[str]) -> set[str]:
    seen, todo = set(), list(roots)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += _imports(m)
    return seen


def _code_deps(stage: dict) -> set[str]:
    return {d.split(" ")[0] for d in stage.get("deps", []) if str(d).startswith("src/")}


@pytest.mark.parametrize("stage", sorted(ENTRY))
def test_code_deps_are_the_stage_imports(stage):
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    modules = closure(ENTRY[stage]) - NOT_DEPS
    expected = {str(_file(m).relative_to(REPO)) for m in modules
                if _file(m).name != "__init__.py"}
    assert _code_deps(stages[stage]) == expected


@pytest.mark.parametrize("stage", sorted(ENTRY))
def test_no_stage_imports_another_stage(stage):
    own = set(ENTRY[stage])
    borrowed = (closure(ENTRY[stage]) & STAGE_MODULES) - own
    assert not borrowed, f"{stage} imports the stage module(s) {borrowed}"
