"""Which of colorize's modules a stage runs, and a fingerprint of that code.

`stage_code` follows `import` statements (read with ast, nothing is imported) from a stage's
modules: dvc.yaml's code deps of each stage are exactly those files (tests/test_dvc_deps.py),
and a training checkpoint records the `fingerprint` of the train stage's code, so a
checkpoint written by other code is never resumed silently. The dispatcher, the settings schema
and the error base class are not stage code: every stage imports them and their values are
tracked as params, so a change to them alone does not rerun the pipeline. The fingerprint
hashes the parsed code, not the text: comments and formatting do not change it, any change to
what runs does.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # .../colorize
NOT_STAGE_CODE = frozenset({"colorize", "colorize.cli", "colorize.config", "colorize.errors"})


def module_file(module: str, root: Path = PACKAGE) -> Path | None:
    """colorize.a.b -> <root>/a/b.py (or its __init__.py); None if it is not a module there."""
    parts = module.split(".")
    if parts[0] != "colorize":
        return None
    p = root.joinpath(*parts[1:])
    if (p / "__init__.py").is_file():
        return p / "__init__.py"
    return p.with_suffix(".py") if p.with_suffix(".py").is_file() else None


def imports(module: str, root: Path = PACKAGE) -> set[str]:
    """The colorize modules that `module` imports (at any depth of its code)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(module_file(module, root).read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if module_file(m, root) is not None}


def stage_code(roots: list[str], root: Path = PACKAGE) -> set[str]:
    """The roots and every colorize module they import, directly or not, except (and not
    through) NOT_STAGE_CODE."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        m = todo.pop()
        if m not in seen and m not in NOT_STAGE_CODE:
            seen.add(m)
            todo += imports(m, root)
    return seen


def fingerprint(roots: list[str], root: Path = PACKAGE) -> str:
    """SHA-256 (16 hex digits) of the parsed code of `stage_code(roots)`."""
    h = hashlib.sha256()
    for m in sorted(stage_code(roots, root)):
        h.update(m.encode())
        h.update(ast.dump(ast.parse(module_file(m, root).read_text())).encode())
    return h.hexdigest()[:16]
