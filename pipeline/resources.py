"""Where the files that ship beside the package live: ``mkdocs.yml``, ``site/`` (the
hand-written pages and theme overrides) and ``data/demo`` (the demo model).

In a checkout or an editable install they are in the repository. A wheel installs them as
data files under ``<prefix>/share/vit-feature-atlas`` (see ``pyproject.toml``).
"""

from __future__ import annotations

import site
import sys
import sysconfig
from functools import cache
from pathlib import Path

SHARE = Path("share") / "vit-feature-atlas"


def _candidates() -> list[Path]:
    prefixes = [sysconfig.get_path("data"), sys.prefix, getattr(site, "USER_BASE", None)]
    return [Path(__file__).resolve().parent.parent,
            *(Path(p) / SHARE for p in prefixes if p)]


@cache
def resource_root() -> Path:
    """The directory holding ``mkdocs.yml``, ``site/`` and ``data/``; the repository if any."""
    for root in _candidates():
        if (root / "mkdocs.yml").is_file():
            return root
    return _candidates()[0]  # callers report what is missing, with this path


def mkdocs_yml() -> Path:
    return resource_root() / "mkdocs.yml"


def handbook_dir() -> Path:
    """The hand-written pages (the mkdocs ``docs_dir``)."""
    return resource_root() / "site"


def bundled_model_dir(name: str) -> Path:
    """``data/<name>``: a bundled model (``demo``; ``second``, for checking recipes)."""
    return resource_root() / "data" / name


def demo_dir() -> Path:
    return bundled_model_dir("demo")
