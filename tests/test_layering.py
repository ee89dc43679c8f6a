"""The module graph of ``pipeline/`` has no cycle (``scripts/check_imports.py``, run as CI
runs it), and the checker finds one when there is one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "check_imports.py"


def _check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True,
                          text=True, timeout=120)


def test_pipeline_has_no_import_cycle():
    done = _check(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no import cycle" in done.stdout


def test_the_checker_finds_a_cycle_through_the_package_face(tmp_path):
    pkg = tmp_path / "pipeline"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("def f():\n    from pipeline import store\n")
    (pkg / "store.py").write_text("from pipeline import VERSION\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from typing import TYPE_CHECKING\n"
                                      "if TYPE_CHECKING:\n    from pipeline import store\n")
    done = _check(tmp_path)
    assert done.returncode == 1
    assert "pipeline -> pipeline.store -> pipeline" in done.stdout
    assert "pipeline.sub.a" not in done.stdout  # TYPE_CHECKING imports never run
