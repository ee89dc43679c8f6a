"""Sitemaps of a built site (when its absolute URL is known: sitemaps need absolute URLs).

A sitemap holds at most 50,000 URLs (sitemaps.org), and an atlas has a page per feature: a
ViT-B has 36,864. So the pages go in ``sitemap-<n>.xml`` files of ``MAX_URLS`` each and
``sitemap.xml`` is their index; a publishing root's ``sitemap.xml`` indexes every version's.

>>> import tempfile, pathlib
>>> site = pathlib.Path(tempfile.mkdtemp())
>>> write(site, "https://example.org/atlas/1.0/", ["index.md", "m/0/3/index.md", "method.md"])
>>> "https://example.org/atlas/1.0/m/0/3/" in (site / "sitemap-0.xml").read_text()
True
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from xml.sax.saxutils import escape

from pipeline.store import atomic_write_text

MAX_URLS = 50_000
_NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def page_url(source: str) -> str:
    """The directory URL of a Markdown source (``use_directory_urls``): ``a/index.md`` →
    ``a/``, ``method.md`` → ``method/``, ``index.md`` → ``""``."""
    if not source.endswith(".md"):
        raise ValueError(f"not a page source: {source}")
    stem = source[:-3]
    if stem == "index" or stem.endswith("/index"):
        return stem[: -len("index")]
    return stem + "/"


def write(site: Path, base_url: str, sources: Iterable[str]) -> None:
    """``sitemap.xml`` (an index) and its ``sitemap-<n>.xml`` parts for the pages built from
    ``sources`` (Markdown paths relative to the docs folder, in the order to list them), under
    ``base_url``. A part is written once its ``MAX_URLS`` have come: a site of any size is
    held a part at a time."""
    base = base_url.rstrip("/") + "/"
    locs = (base + page_url(s) for s in sources if s.endswith(".md"))
    parts = 0
    while True:
        part = list(itertools.islice(locs, MAX_URLS))
        if parts and not part:
            break
        atomic_write_text(site / f"sitemap-{parts}.xml", _urlset(part))
        parts += 1
        if len(part) < MAX_URLS:
            break
    write_index(site / "sitemap.xml", [f"{base}sitemap-{n}.xml" for n in range(parts)])


def write_index(path: Path, sitemaps: list[str]) -> None:
    """A sitemap index listing the sitemaps at the absolute URLs ``sitemaps``."""
    body = "".join(f"<sitemap><loc>{escape(u)}</loc></sitemap>\n" for u in sitemaps)
    atomic_write_text(path, f'<?xml version="1.0" encoding="UTF-8"?>\n'
                            f"<sitemapindex {_NS}>\n{body}</sitemapindex>\n")


def _urlset(locs: list[str]) -> str:
    body = "".join(f"<url><loc>{escape(u)}</loc></url>\n" for u in locs)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset {_NS}>\n{body}</urlset>\n'
