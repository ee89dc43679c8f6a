"""The site stage: an atlas directory → a static, citable mkdocs-material site.

``build_site(store)`` writes ``DIR/site``; ``serve(site_dir)`` serves it on localhost.
(Imported lazily: serving needs neither mkdocs nor the model registry.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.site.serve import make_server, serve, serving

if TYPE_CHECKING:
    from pipeline.store import AtlasStore


def build_site(store: AtlasStore, site_dir: Path | None = None, *,
               workers: int | None = None, site_url: str | None = None) -> Path:
    """Build the static atlas of ``store`` into ``site_dir`` (default ``DIR/site``).

    ``workers``: processes to use (default: every CPU); ``site_url``: the absolute URL the
    site will be served at (default: the one the atlas was built with; "" for none). The
    previous site stays in place until the new one is complete.
    """
    from pipeline.site.build import build_site as build

    return build(store, site_dir, workers=workers, site_url=site_url)


__all__ = ["build_site", "make_server", "serve", "serving"]
