"""A wheel installed into a fresh virtual environment carries the site templates and the demo
model: ``vit-atlas site`` and the demo preset work away from the repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ["pyproject.toml", "README.md", "mkdocs.yml", "pipeline", "site", "data"]


def _run(cmd: list, cwd: Path) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_wheel_installs_templates_and_demo_model(tmp_path):
    source = tmp_path / "src"  # a copy, so building leaves no build/ or egg-info in the repo
    source.mkdir()
    for name in SHIPPED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, source / name)
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
          "-q", "-w", tmp_path / "dist"], source)
    wheel = next((tmp_path / "dist").glob("*.whl"))

    # a bare environment; its dependencies come from this one's site-packages (a plain path,
    # so this environment's editable install of the package is not picked up)
    env = tmp_path / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", env], tmp_path)
    python = env / "bin" / "python"
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                        tmp_path).strip())
    (purelib / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run([python, "-m", "pip", "install", "--no-deps", "-q", wheel], tmp_path)

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([python, "-c", "import pipeline, pipeline.config as c; "
                  "print(pipeline.__file__); print(c.demo_config().model.weights)"], work).split()
    assert where[0].startswith(str(env)) and where[1].startswith(str(env))
    assert Path(where[1]).is_file()
    _run([python, "-c", "from pipeline.testing.fake import make_fake_atlas, tiny_spec; "
          "make_fake_atlas('atlas', tiny_spec(img_size=32, patch_size=8, depth=1, "
          "embed_dim=16, num_heads=1), workers=1)"], work)
    _run([env / "bin" / "vit-atlas", "site", "--out", "atlas"], work)
    assert (work / "atlas" / "site" / "index.html").is_file()
    assert (work / "atlas" / "site" / "how-to-read" / "index.html").is_file()
