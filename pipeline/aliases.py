"""Aliases of a published site (``SITE/latest``): the three forms of mike's ``alias_type``.

- ``symlink`` (the default, as mike's): a relative symlink to the version's folder. Costs
  nothing; needs a host that serves symlinks (a web server, ``python -m http.server``).
- ``copy``: a full copy of the version's folder, byte for byte. Its pages are the version's
  pages, so their permalinks, canonical links and Cite blocks name the version, never the
  alias; it doubles the version's size. For hosts without symlinks that must also serve the
  data files (``feature.json``, Parquet, images) under the alias.
- ``redirect``: for every HTML page of the version, a small page at the same path under the
  alias that sends the reader to the version's page (``<meta http-equiv="refresh">`` for
  readers without JavaScript, ``location.replace`` keeping the query and the hash, a canonical
  link to the version's page). Like mike, it writes no other file: a static host cannot
  redirect a JSON file, so a program reading data follows ``versions.json`` (alias → version,
  ``pipeline.publish.resolve_version``).

Each form is written under a temporary name beside the alias and renamed into place, then the
previous alias (of any form) is removed; the version folders themselves are never touched.
The form is not recorded in ``versions.json`` (mike's format keeps it out too): it is read
back from disk (``alias_type``).

>>> import pathlib, tempfile
>>> site = pathlib.Path(tempfile.mkdtemp())
>>> (site / "1.0" / "method").mkdir(parents=True)
>>> _ = (site / "1.0" / "index.html").write_text("<p>home</p>")
>>> _ = (site / "1.0" / "method" / "index.html").write_text("<p>method</p>")
>>> _ = write_alias(site, "latest", "1.0", "redirect")
>>> alias_type(site / "latest"), redirect_target(site / "latest" / "method" / "index.html")
('redirect', '../../1.0/method/')
>>> _ = write_alias(site, "latest", "1.0", "copy")
>>> alias_type(site / "latest"), (site / "latest" / "method" / "index.html").read_text()
('copy', '<p>method</p>')
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from html import escape
from pathlib import Path
from urllib.parse import quote

from pipeline.errors import AtlasError

DEFAULT_ALIAS_TYPE = "symlink"
# The mark that tells a redirect alias from a copy on disk (``alias_type``).
REDIRECT_GENERATOR = "vit-atlas publish --alias-type redirect"

# alias type -> writer(site, version, new alias path, site URL or None)
Writer = Callable[[Path, str, Path, str | None], None]
_WRITERS: dict[str, Writer] = {}


def _alias_writer(name: str) -> Callable[[Writer], Writer]:
    """Register a writer of the alias type ``name`` (the order of registration is the order
    ``alias_types`` lists)."""
    def register(fn: Writer) -> Writer:
        _WRITERS[name] = fn
        return fn
    return register


def alias_types() -> list[str]:
    """The alias types ``publish --alias-type`` takes (mike's three).

    >>> alias_types()
    ['symlink', 'copy', 'redirect']
    """
    return list(_WRITERS)


def check_alias_type(name: str) -> str:
    """``name`` if it is an alias type, else an ``AtlasError`` naming the choices.

    >>> check_alias_type("copy")
    'copy'
    >>> check_alias_type("hardlink")
    Traceback (most recent call last):
    ...
    pipeline.errors.AtlasError: unknown alias type 'hardlink': use symlink, copy or redirect
    """
    if name not in _WRITERS:
        *head, last = alias_types()
        raise AtlasError(f"unknown alias type {name!r}: use {', '.join(head)} or {last}")
    return name


@_alias_writer("symlink")
def _write_symlink(site: Path, version: str, new: Path, site_url: str | None) -> None:
    os.symlink(version, new, target_is_directory=True)


@_alias_writer("copy")
def _write_copy(site: Path, version: str, new: Path, site_url: str | None) -> None:
    shutil.copytree(site / version, new, symlinks=True)  # copy2: bytes and mtimes


@_alias_writer("redirect")
def _write_redirects(site: Path, version: str, new: Path, site_url: str | None) -> None:
    source = site / version
    new.mkdir()
    for page in sorted(source.rglob("*.html")):
        rel = page.relative_to(source)
        # directory URLs, as mkdocs writes them: a/b/index.html is served as a/b/
        path = rel.parent.as_posix() + "/" if rel.name == "index.html" else rel.as_posix()
        path = quote("" if path == "./" else path, safe="/")
        href = "../" * len(rel.parts) + f"{quote(version)}/{path}"
        canonical = f"{site_url.rstrip('/')}/{quote(version)}/{path}" if site_url else href
        out = new / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(redirect_page(href, canonical), encoding="utf-8")


def redirect_page(href: str, canonical: str) -> str:
    """A page that sends its reader to ``href`` (relative to the page), keeping the query and
    the hash; ``canonical`` names the target for search engines.

    >>> page = redirect_page("../1.0/", "https://example.org/atlas/1.0/")
    >>> 'content="0; url=../1.0/"' in page, '"../1.0/" + location.search' in page
    (True, True)
    """
    attr = escape(href, quote=True)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<title>Redirecting</title><meta name="generator" content="{REDIRECT_GENERATOR}">'
        '<meta name="robots" content="noindex"><link rel="icon" href="data:,">'
        f'<link rel="canonical" href="{escape(canonical, quote=True)}">'
        f'<noscript><meta http-equiv="refresh" content="0; url={attr}"></noscript>'
        f"<script>location.replace({json.dumps(href)} + location.search + location.hash)"
        "</script></head>"
        f'<body><a href="{attr}">Redirecting to {escape(href)}</a></body></html>\n')


_REFRESH = re.compile(r'http-equiv="refresh" content="0; url=([^"]*)"')


def redirect_target(page: str | Path) -> str | None:
    """The address a redirect page (``redirect_page``) sends to, as written in it (relative
    to the page); ``None`` for any other page.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "index.html"
    >>> _ = path.write_text(redirect_page("../1.0/", "../1.0/"))
    >>> redirect_target(path)
    '../1.0/'
    """
    text = Path(page).read_text(encoding="utf-8", errors="replace")
    if REDIRECT_GENERATOR not in text:
        return None
    match = _REFRESH.search(text)
    return None if match is None else match.group(1).replace("&amp;", "&")


def alias_type(path: str | Path) -> str | None:
    """Which form the alias at ``path`` has, read from disk: ``symlink``, ``redirect`` (its
    home page is a redirect page), ``copy`` (any other folder), ``None`` if nothing is there.

    >>> import tempfile, pathlib
    >>> alias_type(pathlib.Path(tempfile.mkdtemp()) / "latest") is None
    True
    """
    path = Path(path)
    if path.is_symlink():
        return "symlink"
    if not path.is_dir():
        return None
    home = path / "index.html"
    return "redirect" if home.is_file() and redirect_target(home) is not None else "copy"


def _remove(path: Path) -> None:
    """Remove an alias or a leftover of one, of any form (a symlink is unlinked, never
    followed)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def write_alias(site: str | Path, alias: str, version: str, kind: str = DEFAULT_ALIAS_TYPE,
                *, site_url: str | None = None) -> Path:
    """Point the alias ``SITE/<alias>`` at ``SITE/<version>`` in the form ``kind``
    (``alias_types()``), replacing the alias that was there, whatever its form; returns the
    alias's path. ``site_url``: the site root's absolute URL, for redirect pages' canonical
    links. The caller checks that ``SITE/<alias>`` is an alias (``publish`` does).

    >>> import pathlib, tempfile
    >>> site = pathlib.Path(tempfile.mkdtemp())
    >>> (site / "1.0").mkdir()
    >>> write_alias(site, "latest", "1.0").resolve() == (site / "1.0").resolve()
    True
    """
    writer = _WRITERS[check_alias_type(kind)]
    site = Path(site)
    path = site / alias
    if not (site / version).is_dir():
        raise AtlasError(f"no version folder {site / version} to alias")
    leftover = re.compile(rf"\.{re.escape(alias)}\.(new|old|link)-\d+")
    for stale in site.iterdir():  # from a run that was killed
        if leftover.fullmatch(stale.name):
            _remove(stale)
    new = path.with_name(f".{alias}.new-{os.getpid()}")
    writer(site, version, new, site_url)
    if path.is_symlink() and new.is_symlink():
        os.replace(new, path)  # one atomic swap
    elif path.is_symlink() or path.exists():
        old = path.with_name(f".{alias}.old-{os.getpid()}")
        os.replace(path, old)  # a folder cannot be replaced by a rename: set it aside first
        os.replace(new, path)
        _remove(old)
    else:
        os.replace(new, path)
    return path

