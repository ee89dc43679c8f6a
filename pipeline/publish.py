"""Publishing: many atlases → one versioned site whose published versions never change.

The layout is mike's (mkdocs-material's versioning):

- ``SITE/versions.json``: ``[{"version", "title", "aliases"}]``, newest first;
- ``SITE/<version>/``: one site built from every atlas given (``pages.build.build_site``),
  its feature pages' permalinks and Cite blocks naming the version, and a Parquet export per
  model (``<version>/<slug>/features.parquet``);
- ``SITE/<alias>`` (``latest``): in one of mike's three forms (``alias_type``, see
  ``pipeline.aliases``): a relative symlink to its version's folder (the default), a copy of
  it, or a folder of redirect pages to it; moved by the next publish that names it, in
  whichever form that publish asks for;
- ``SITE/index.html``: a redirect to the default (the newest version's first alias, or the
  newest version; the version itself when that alias is a redirect); ``SITE/404.html``;
  ``SITE/sitemap.xml`` indexing every version's sitemap when the site's URL is known;
  ``SITE/.nojekyll`` (as mike writes it) so that GitHub Pages serves the files as they are.

Publishing writes only the new version's folder and these root files, so every file of an
earlier version stays byte-identical; republishing a version is refused unless ``force``.

>>> import tempfile, pathlib
>>> from pipeline.testing.fake import make_fake_atlas, tiny_spec
>>> spec = tiny_spec(img_size=32, patch_size=8, depth=1, embed_dim=8, num_heads=1)
>>> atlas = make_fake_atlas(tempfile.mkdtemp(), spec)
>>> site = pathlib.Path(tempfile.mkdtemp()) / "site"
>>> _ = publish([atlas.root], site, "1.0", aliases=["latest"], workers=1)
>>> read_versions(site)
[{'version': '1.0', 'title': '1.0', 'aliases': ['latest']}]
>>> (site / "latest").resolve() == (site / "1.0").resolve()
True
>>> _ = publish([atlas.root], site, "1.1", aliases=["latest"], alias_type="redirect",
...             workers=1)
>>> from pipeline.aliases import redirect_target
>>> read_alias_type(site / "latest"), redirect_target(site / "latest" / "index.html")
('redirect', '../1.1/')
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline.aliases import DEFAULT_ALIAS_TYPE, check_alias_type, write_alias
from pipeline.aliases import alias_type as read_alias_type
from pipeline.errors import AtlasError
from pipeline.site import notfound, sitemap, urls
from pipeline.store import AtlasStore, atomic_write_json, atomic_write_text

VERSIONS_JSON = "versions.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def read_versions(site: str | Path) -> list[dict[str, Any]]:
    """The site's ``versions.json`` (mike's format), ``[]`` before the first publish."""
    path = Path(site) / VERSIONS_JSON
    if not path.is_file():
        return []
    try:
        versions = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        versions = None
    return check_versions(versions, path)


def check_versions(versions: Any, where: str | Path) -> list[dict[str, Any]]:
    """``versions`` (a parsed ``versions.json``, read from ``where``) if it is of mike's
    format, else an ``AtlasError``.

    >>> check_versions([{"version": "1.0", "title": "1.0", "aliases": []}], "versions.json")
    [{'version': '1.0', 'title': '1.0', 'aliases': []}]
    """
    if not (isinstance(versions, list)
            and all(isinstance(v, dict) and "version" in v for v in versions)):
        raise AtlasError(f"{where} is not a versions.json of mike's format (a list of "
                         "{\"version\", \"title\", \"aliases\"}): fix or remove it")
    return versions


def resolve_version(versions: list[dict[str, Any]], name: str) -> str | None:
    """The version that ``name`` (a version or an alias) names in ``versions`` (mike's
    ``versions.json``), ``None`` if none: how a program reaches the data behind an alias
    whose folder holds only redirect pages.

    >>> resolve_version([{"version": "1.1", "aliases": ["latest"]}, {"version": "1.0"}],
    ...                 "latest")
    '1.1'
    """
    for entry in versions:
        if name == entry["version"] or name in entry.get("aliases", []):
            return entry["version"]
    return None


def _check_name(name: str, what: str) -> None:
    if not _NAME.match(name) or name.lower() in urls.RESERVED or name in (".", ".."):
        raise AtlasError(f"bad {what} {name!r}: use letters, digits, '.', '_' and '-' "
                         "(e.g. 1.0, latest), not a name the site uses itself")


def _order_key(version: str) -> tuple:
    """Newest first: numeric parts compared as numbers (``1.10`` after ``1.9``)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                 for p in re.split(r"[._-]", version))


def _relate(stores: list[AtlasStore]) -> None:
    """Relate every pair of atlases that share a probe set (their pages then link similar
    units across models); pairs that do not are reported and left unrelated."""
    from pipeline.relations.stage import check_same_probe, relate_atlases

    for i, a in enumerate(stores):
        for b in stores[i + 1:]:
            try:
                check_same_probe(a, b)
            except AtlasError as exc:
                print(f"publish: no similar units across {a.root} and {b.root}: {exc}",
                      file=sys.stderr)
                continue
            relate_atlases(a, b)


def publish(atlas_dirs: Sequence[str | Path], site: str | Path, version: str, *,
            aliases: Sequence[str] = (), title: str | None = None, force: bool = False,
            site_url: str | None = None, relate: bool = True,
            workers: int | None = None, alias_type: str = DEFAULT_ALIAS_TYPE) -> Path:
    """Publish the atlases in ``atlas_dirs`` as ``version`` of the site in ``site``; returns
    the version's folder. ``aliases`` (e.g. ``latest``) move to this version, written as
    ``alias_type`` (``symlink``, ``copy`` or ``redirect``: ``pipeline.aliases``); ``site_url``:
    the site root's absolute URL (permalinks, sitemaps); ``relate``: link similar units
    across the atlases that share a probe set. Refuses to replace a published version unless
    ``force``; a replaced version keeps its aliases, and those that are copies or redirects
    are rewritten from it in their own form."""
    from pipeline.site.build import SiteVersion, build_site

    site = Path(site)
    kind = check_alias_type(alias_type)
    _check_name(version, "version")
    for alias in aliases:
        _check_name(alias, "alias")
        if alias == version:
            raise AtlasError(f"alias {alias!r} is the version's own name")
    versions = read_versions(site)
    names = [v["version"] for v in versions]
    if version in names and not force:
        raise AtlasError(f"version {version} is already published in {site}, and its pages "
                         "may be cited: publish a new version, or pass force to replace it")
    taken = {a for v in versions if v["version"] != version for a in v.get("aliases", [])}
    if version in taken:
        raise AtlasError(f"{version!r} is an alias of another version in {site}")
    listed = {a for v in versions for a in v.get("aliases", [])}
    for alias in aliases:
        path = site / alias
        if alias in names or (path.exists() and not path.is_symlink() and alias not in listed):
            raise AtlasError(f"alias {alias!r} would replace the folder {path}, which is not "
                             "an alias")
    stores = [AtlasStore(d) for d in atlas_dirs]
    for store in stores:
        if not store.exists():
            raise AtlasError(f"{store.root} holds no atlas (no atlas.json)")
    if relate and len(stores) > 1:
        _relate(stores)
    site.mkdir(parents=True, exist_ok=True)
    out = build_site(stores, site / version, workers=workers,
                     version=SiteVersion(version, site_url))
    own = next((v.get("aliases", []) for v in versions if v["version"] == version), [])
    refresh = [a for a in own if a not in aliases]  # a replaced version's other aliases
    entry = {"version": version, "title": title or version, "aliases": [*aliases, *refresh]}
    kept = [{**v, "aliases": [a for a in v.get("aliases", []) if a not in aliases]}
            for v in versions if v["version"] != version]
    versions = sorted([entry, *kept], key=lambda v: _order_key(v["version"]), reverse=True)
    for alias in aliases:
        write_alias(site, alias, version, kind, site_url=site_url)
    for alias in refresh:  # a copy or redirects of the replaced build would be stale
        write_alias(site, alias, version, read_alias_type(site / alias) or kind,
                    site_url=site_url)
    atomic_write_json(site / VERSIONS_JSON, versions, indent=2)
    _root_pages(site, versions, site_url)
    return out


def _root_pages(site: Path, versions: list[dict[str, Any]], site_url: str | None) -> None:
    """The root's redirect to the default version, its 404 page and sitemap index."""
    newest = versions[0]
    default = (newest["aliases"] or [newest["version"]])[0]
    if read_alias_type(site / default) == "redirect":  # one hop, not two
        default = newest["version"]
    if not (site / ".nojekyll").exists():
        atomic_write_text(site / ".nojekyll", "")
    target = escape(f"{default}/", quote=True)
    atomic_write_text(site / "index.html", (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<title>Redirecting</title><link rel="icon" href="data:,">'  # no /favicon.ico 404
        f'<meta http-equiv="refresh" content="0; url={target}">'
        f'<link rel="canonical" href="{target}"></head>'
        f'<body><a href="{target}">ViT Feature Atlas, version {escape(newest["version"])}</a>'
        "</body></html>\n"))
    root = (urlsplit(site_url).path or "/") if site_url else "/"
    root += "" if root.endswith("/") else "/"
    home = escape(f"{root}{default}/", quote=True)  # made relative, as every link
    atomic_write_text(site / "404.html", notfound.relative_links((
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Not found – ViT Feature Atlas</title></head>"
        '<body style="font-family: system-ui, sans-serif; margin: 3rem">'
        "<h1>Page not found</h1><p>This page is not in the atlas. Published pages never "
        "move: check the version and the model in the address, or start from the "
        f'<a href="{home}">home page</a>.</p></body></html>\n'), root))
    if site_url:
        base = site_url.rstrip("/")
        sitemap.write_index(site / "sitemap.xml",
                            [f"{base}/{v['version']}/sitemap.xml" for v in versions])
