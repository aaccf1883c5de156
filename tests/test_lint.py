"""ruff is part of the suite: the code base stays lint-clean."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def test_ruff_clean():
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists() and shutil.which("ruff") is None:
        pytest.skip("ruff not installed (pip install -e '.[dev]')")
    out = subprocess.run([str(ruff) if ruff.exists() else "ruff", "check", "src", "tests",
                          "bench", "scripts"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
