"""dvc.yaml's code deps are exactly what each stage imports, so DVC reruns a stage when, and
only when, code it runs has changed (the end-to-end check is in test_pipeline.py); stage
modules follow one naming rule; no stage borrows from another stage's module."""

import pytest
import yaml

from colorize.code import imports, module_file, stage_code
from conftest import REPO

SRC = REPO / "src" / "colorize"
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _stage_module(stage: str) -> str:
    """The naming rule: the stage function `<stage>` in a module `<package>/<stage>.py`."""
    found = sorted(SRC.glob(f"*/{stage}.py"))
    assert len(found) == 1, f"{stage}: expected one <package>/{stage}.py, found {found}"
    return "colorize." + ".".join(found[0].relative_to(SRC).with_suffix("").parts)


# Besides its stage module, evaluate runs colorize.track.models (logging and registering the
# model) and registers predict/service.py, the served model logged from code: its file is the
# registered model's code, though tracking names it by path and never imports it.
EXTRA = {"evaluate": ["colorize.track.models", "colorize.predict.service"]}


def _code_deps(stage: dict) -> set[str]:
    return {d.split(" ")[0] for d in stage.get("deps", []) if str(d).startswith("src/")}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_module_is_named_after_its_stage_and_defines_it(stage):
    module = _stage_module(stage)
    assert f"\ndef {stage}(" in module_file(module).read_text(), module


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_code_deps_are_the_stage_imports(stage):
    modules = stage_code([_stage_module(stage), *EXTRA.get(stage, [])])
    expected = {str(module_file(m).relative_to(REPO)) for m in modules
                if module_file(m).name != "__init__.py"}
    assert _code_deps(STAGES[stage]) == expected


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_no_stage_imports_another_stage(stage):
    others = {_stage_module(s) for s in STAGES} - {_stage_module(stage)}
    borrowed = stage_code([_stage_module(stage), *EXTRA.get(stage, [])]) & others
    assert not borrowed, f"{stage} imports the stage module(s) {borrowed}"


def test_tracking_never_imports_serving():
    tracking = {m for m in stage_code(["colorize.track.models"])}
    assert not {m for m in tracking if m.startswith("colorize.predict")}, tracking
    assert "colorize.predict.service" not in imports("colorize.track.models")
