"""Feature pages without mkdocs' per-page work: one shell per layer, filled in every process.

mkdocs renders a page at a time on one core, through Markdown, YAML and Material's whole
template: some 4 ms a feature page, at 100,000 pages the stage's bulk. But every feature page
of one layer is the same page around its own parts: Material's header, nav, scripts and asset
paths (all the layer's pages lie at the same depth) around its title, canonical address,
description and content. So, once mkdocs' environment is ready (``on_env``), this plugin
renders each layer's *shell* through mkdocs and the theme as any page (``feature.html``, plugin
events, ``lean_html``), with markers where the parts go; the worker processes then render each
page's parts from its data (``FeatureWriter.meta``) with the very macros ``feature.html``
renders them with (``partials/atlas-feature.html``), and put them in the shell.

A page comes out byte for byte as mkdocs renders it from its Markdown source
(``FeatureWriter.markdown``): checked on every build for the last unit of every layer (its
shell is the first unit's; ``CHECKED``), for every page by the tests. Feature pages are
outside the nav and the search index, and nothing links to them by Markdown, so mkdocs needs
no source for them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import jinja2
from markupsafe import escape
from mkdocs.plugins import BasePlugin

from pipeline.errors import AtlasError
from pipeline.site import urls

PLUGIN_NAME = "atlas-feature-pages"
PARTIAL = "partials/atlas-feature.html"  # the macros description() and content()
# where a page's own parts go in its shell (no white space: lean_html keeps them apart)
TITLE, CANONICAL, DESCRIPTION, CONTENT = (f"\x00atlas:{n}\x00" for n in
                                          ("title", "canonical", "description", "content"))
_SLOT = re.compile("(\x00atlas:[a-z]+\x00)")
CHECKED = 1  # pages per layer rendered both ways and compared on every build: the last ones


@dataclass(frozen=True)
class Shell:
    """A feature page of one layer less its own parts: ``pieces`` of HTML (lean) with a part
    between each two, named by ``slots``; and what rendering those parts needs, all plain
    data (it goes to other processes): the theme's template folders, the page's ``base_url``,
    the site's URL and ``config.extra`` (``feature.html`` reads ``config.extra.atlas``)."""

    pieces: tuple[str, ...]
    slots: tuple[str, ...]
    dirs: tuple[str, ...]
    base_url: str
    site_url: str
    extra: dict[str, Any] = field(repr=False)

    @classmethod
    def split(cls, page: str, **how: Any) -> Shell:
        """The shell of ``page`` (HTML with the slot markers) and ``how`` (the other fields).

        >>> s = Shell.split(f"<title>{TITLE}</title>", dirs=(), base_url="..", site_url="",
        ...                 extra={})
        >>> s.pieces, s.slots
        (('<title>', '</title>'), ('\\x00atlas:title\\x00',))
        """
        parts = _SLOT.split(page)
        return cls(tuple(parts[0::2]), tuple(parts[1::2]), **how)


def page_source(feature_dir: str) -> str:
    """The Markdown source path mkdocs would give the page (``feature_dir/index.md``): the
    page's URL and the sitemap go by it.

    >>> page_source("vit/key/3/17")
    'vit/key/3/17/index.md'
    """
    return f"{feature_dir}/index.md"


_ENVS: dict[tuple[str, ...], Any] = {}


def _template(dirs: tuple[str, ...]):
    """The compiled partial, once per process: the theme's Jinja environment as mkdocs makes
    it (``Theme.get_env``: no autoescape, its filters), minus the translations (the partial
    has no text to translate), ``|e`` as ``_escape``, and a dict's keys found as its
    attributes at once (``_Environment``)."""
    if dirs not in _ENVS:
        from mkdocs.utils import templates

        env = _Environment(loader=jinja2.FileSystemLoader(list(dirs)), auto_reload=False)
        env.filters["url"] = templates.url_filter
        env.filters["script_tag"] = templates.script_tag_filter
        env.filters["e"] = env.filters["escape"] = _escape
        _ENVS.clear()
        _ENVS[dirs] = env.get_template(PARTIAL)
    return _ENVS[dirs]


def theme_dirs(config) -> tuple[str, ...]:
    """The template folders of ``config``'s theme (a ``Shell``'s ``dirs``)."""
    return tuple(str(d) for d in config.theme.dirs)


def prepare(config) -> None:
    """Compile the partial for ``config``'s theme in this process now: worker processes
    forked from it afterwards have it (some 60 ms of CPU each, not spent again)."""
    _template(theme_dirs(config))


try:  # markupsafe's own C escaper, without the Markup it wraps the result in
    from markupsafe._speedups import _escape_inner
except ImportError:  # pragma: no cover - markupsafe without its speedups
    _escape_inner = None


def _escape(value: Any) -> str:
    """``markupsafe.escape(value)``'s text (``|e``): the partial prints what it escapes, so
    the page is the same, some 300 ``Markup`` objects a page fewer.

    >>> _escape('<a href="x">') == str(escape('<a href="x">')), _escape(3)
    (True, Markup('3'))
    """
    if type(value) is str and _escape_inner is not None:
        return _escape_inner(value)
    return escape(value)


_DICT_NAMES = frozenset(dir(dict))  # what jinja2 finds as a dict's attribute before its keys


class _Environment(jinja2.Environment):
    """jinja2's environment, but ``m.top`` on a dict finds the key at once: jinja2 tries the
    attribute first (``getattr``: an ``AttributeError`` raised and caught, some 130 times a
    page) and then the key; for a dict whose key is not one of a dict's attributes that is
    the key (or, without it, undefined), as here.

    >>> env = _Environment()
    >>> env.from_string("{{ m.top }} {{ m.items is defined }} {{ m.nope is defined }}").render(
    ...     m={"top": 1, "items": 2})
    '1 True False'
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_NAMES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


class _Page:
    """What the partial reads of a page (``page.meta``, ``page.title``)."""

    __slots__ = ("meta", "title", "url", "canonical_url")

    def __init__(self, meta: dict[str, Any], url: str, canonical_url: str | None):
        self.meta, self.title, self.url, self.canonical_url = meta, meta["title"], url, \
            canonical_url


class PageRenderer:
    """Renders the feature pages of one layer from its ``Shell``."""

    def __init__(self, shell: Shell):
        self.shell = shell
        self.template = _template(shell.dirs)
        self.config = {"extra": shell.extra}
        base = shell.site_url
        self.base = base if not base or base.endswith("/") else base + "/"

    def render(self, source: str, meta: dict[str, Any]) -> str:
        """The page of Markdown source path ``source`` (``page_source``) from its data."""
        url = quote(source[: -len("index.md")])  # mkdocs' File.url (use_directory_urls)
        canonical = urljoin(self.base, url) if self.base else None
        module = self.template.make_module({"page": _Page(meta, url, canonical),
                                            "config": self.config,
                                            "base_url": self.shell.base_url})
        parts = {TITLE: str(escape(meta["title"])), CANONICAL: str(escape(canonical or "")),
                 DESCRIPTION: str(module.description()), CONTENT: str(module.content())}
        pieces, out = self.shell.pieces, [self.shell.pieces[0]]
        for i, slot in enumerate(self.shell.slots):
            part = parts[slot]
            if not part or part[0].isspace() or part[-1].isspace():
                # white space at a seam: lean_html must see the whole page
                return lean_html(_fill(pieces, self.shell.slots, parts))
            out.append(lean_html(part) if "\n" in part else part)
            out.append(pieces[i + 1])
        return "".join(out)


def _fill(pieces: Sequence[str], slots: Sequence[str], parts: dict[str, str]) -> str:
    out = [pieces[0]]
    for slot, piece in zip(slots, pieces[1:], strict=True):
        out += [parts[slot], piece]
    return "".join(out)


def encode(page: str) -> bytes:
    """The page's bytes as mkdocs writes them (``_build_page``)."""
    return page.encode("utf-8", errors="xmlcharrefreplace")


@dataclass
class LayerRequest:
    """One layer whose feature pages are to be rendered from a shell: ``key`` names it to
    whoever asked; ``samples``: ``(source, Markdown, meta)`` of some of its pages: the
    shell's, then those to check against mkdocs (which may be the shell's again)."""

    key: Any
    samples: list[tuple[str, str, dict[str, Any]]]


class FeaturePageShells(BasePlugin):
    """mkdocs plugin: once mkdocs' environment is ready (``on_env``), renders the shell of
    each of ``layers`` and checks it, then calls ``ready(request, shell)``. Pages whose
    source matches ``pattern`` (any rendered through mkdocs: the samples) lose the theme's
    indentation (``lean_html``)."""

    def __init__(self, pattern: re.Pattern[str], layers: Iterable[LayerRequest],
                 ready: Callable[[LayerRequest, Shell], None]):
        super().__init__()
        self.pattern, self.layers, self.ready = pattern, list(layers), ready
        self.nav = None

    def on_nav(self, nav, config, files):
        self.nav = nav
        return nav

    def on_post_page(self, output: str, page, config) -> str:
        return lean_html(output) if self.pattern.match(page.file.src_uri) else output

    def on_env(self, env, config, files):
        assert self.nav is not None, "on_nav runs before on_env"
        if self.layers:  # the feature pages' shared settings file (feature.html's config)
            from pipeline.store import atomic_write_bytes

            page = _page(config, files, CONFIG_SOURCE, CONFIG_MARKDOWN)
            home = _render(env, config, files, self.nav, page)[0]
            atomic_write_bytes(Path(config.site_dir, CONFIG_SCRIPT),
                               config_script(home).encode("utf-8"))
        for request in self.layers:
            shell = layer_shell(env, config, files, self.nav, request.samples[0])
            renderer = PageRenderer(shell)
            for source, markdown, meta in request.samples[1:]:
                mine = renderer.render(source, meta)
                theirs = mkdocs_page(env, config, files, self.nav, source, markdown)
                if mine != theirs:
                    at = next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=False))
                               if a != b), min(len(mine), len(theirs)))
                    raise AtlasError(
                        f"site: the feature page {source} from its layer's shell differs from "
                        f"mkdocs' at character {at}: {theirs[max(0, at - 80):at + 80]!r} "
                        f"(mkdocs) against {mine[max(0, at - 80):at + 80]!r}")
            self.ready(request, shell)
        self.layers = []
        return env


CONFIG_SCRIPT = "assets/atlas-config.js"  # feature.html's config block loads it
CONFIG_SOURCE = "atlas-config.md"  # a page rendered (not written, not searched) for it
CONFIG_MARKDOWN = "---\nsearch:\n  exclude: true\n---\n"
_CONFIG = re.compile(r'<script id="__config" type="application/json">(.*?)</script>', re.S)


def config_script(page: str) -> str:
    """``CONFIG_SCRIPT``: Material's settings for its script (the JSON of its ``config``
    block, ``#__config``), as ``page``, a page at the site root rendered by mkdocs, holds
    them, written by a shared file where its tag stands, with ``base`` (and the search
    worker's URL under it) made relative to the page that loads it, as Material makes them:
    some 0.7 KiB less on every feature page. Material's bundle, whose tag follows, reads
    them.

    >>> js = config_script('<script id="__config" type="application/json">{"base": "..", '
    ...                    '"search": "../assets/w.js"}</script>')
    >>> '(function(s){var c={"base":".","search":"assets/w.js"},r=new URL(' in js
    True
    """
    found = _CONFIG.search(page)
    if found is None:
        raise AtlasError("site: Material's page holds no #__config: the feature pages' "
                         "settings cannot be written (a new mkdocs-material?)")
    settings = json.loads(found.group(1))
    base = settings["base"]
    if base != "." and str(settings.get("search", "")).startswith(base + "/"):
        settings["search"] = settings["search"][len(base) + 1:]  # from the site root
    settings["base"] = "."
    text = json.dumps(settings, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    return (
        "/* Material for MkDocs' settings for its script (base.html's config block, #__config) "
        "for the feature pages (site/overrides/feature.html), written by the site stage "
        "(pipeline/site/pages.py, config_script) from a page of this site: the same on every "
        "page but base, the path to the site root (this file's folder's parent), and the "
        "search worker's URL under it. */\n"
        "(function(s){var c=" + text + ",r=new URL(\"..\",s.src).pathname,"
        "d=location.pathname.slice(r.length).split(\"/\").length-1,"
        "b=d>0?Array(d).fill(\"..\").join(\"/\"):\".\",e=document.createElement(\"script\");"
        "c.base=b;c.search=b+\"/\"+c.search;e.id=\"__config\";e.type=\"application/json\";"
        "e.textContent=JSON.stringify(c);s.after(e)})(document.currentScript);\n")


def _page(config, files, source: str, markdown: str):
    """The feature page of ``source`` read by mkdocs from ``markdown`` (plugin events)."""
    from mkdocs.commands.build import _populate_page
    from mkdocs.structure.files import File
    from mkdocs.structure.pages import Page

    page = Page(None, File.generated(config, source, content=markdown), config)
    _populate_page(page, config, files)
    return page


def _render(env, config, files, nav, page) -> tuple[str, dict[str, Any]]:
    """mkdocs' ``_build_page`` up to the HTML, written nowhere (``mkdocs.commands.build``):
    the HTML and the template's context."""
    from mkdocs.commands.build import get_context

    config._current_page = page
    page.active = True
    try:
        context = get_context(nav, files.documentation_pages(), config, page)
        template = env.get_template(page.meta.get("template", "main.html"))
        context = config.plugins.on_page_context(context, page=page, config=config, nav=nav)
        output = template.render(context)
        return config.plugins.on_post_page(output, page=page, config=config), dict(context)
    finally:
        page.active = False
        config._current_page = None


def mkdocs_page(env, config, files, nav, source: str, markdown: str) -> str:
    """The feature page of ``source`` as mkdocs renders it from its Markdown source (as
    ``str``: ``encode`` gives the bytes mkdocs writes)."""
    return _render(env, config, files, nav, _page(config, files, source, markdown))[0]


def layer_shell(env, config, files, nav, sample: tuple[str, str, dict[str, Any]]) -> Shell:
    """The shell of the feature pages of ``sample``'s layer: ``sample``'s page rendered by
    mkdocs with markers for its title and canonical address, and the parts the partial
    renders (description, content) found in it and replaced by markers."""
    source, markdown, _ = sample
    page = _page(config, files, source, markdown)
    page.title = TITLE
    if page.canonical_url:
        page.canonical_url = CANONICAL
    whole, context = _render(env, config, files, nav, page)
    module = env.get_template(PARTIAL).make_module(context)
    for marker, part in ((DESCRIPTION, str(module.description())),
                         (CONTENT, str(module.content()))):
        part = lean_html(part)
        if not part or whole.count(part) != 1:
            raise AtlasError(f"site: the {marker.strip(chr(0))} of the feature page {source} "
                             "is not found once in it: the feature pages cannot be rendered "
                             "from a shell")
        whole = whole.replace(part, marker)
    shell = Shell.split(whole, dirs=theme_dirs(config),
                        base_url=context["base_url"], site_url=config.get("site_url") or "",
                        extra=dict(config["extra"]))
    if not set(shell.slots) <= {TITLE, CANONICAL, DESCRIPTION, CONTENT} or \
            shell.slots.count(DESCRIPTION) != 1 or shell.slots.count(CONTENT) != 1:
        raise AtlasError(f"site: the shell of the feature page {source} has its markers "
                         f"{shell.slots}: the feature pages cannot be rendered from a shell")
    return shell


def feature_page_pattern(slugs: Iterable[str]) -> re.Pattern[str]:
    """Source paths of the feature pages of the models ``slugs`` (``urls.feature_dir``, every
    kind: ``urls.feature_source_pattern``).

    >>> bool(feature_page_pattern(["vit"]).match("vit/3/17/index.md"))
    True
    >>> bool(feature_page_pattern(["vit"]).match("vit/words/index.md"))
    False
    """
    return urls.feature_source_pattern(slugs)


_KEEP = re.compile(r"(?is)(<(pre|textarea)\b.*?</\2>)")


def lean_html(html: str) -> str:
    r"""``html`` without the theme's indentation: every run of white space that holds a line
    break becomes one line break, and blank lines go, outside ``<pre>`` and ``<textarea>``
    (where white space is content). Elsewhere a line break is white space as any run of it
    is, so the page renders alike (a feature page: about 2 KiB less of some 30). As
    ``re.sub(r"[ \t]*\n\s*", "\n", text)`` outside those elements, line by line (faster).

    >>> lean_html("<p>\n    a\n\n    <b>b</b>  c\n</p><pre>\n  x\n</pre>")
    '<p>\na\n<b>b</b>  c\n</p><pre>\n  x\n</pre>'
    """
    parts = _KEEP.split(html)
    out = []
    for i in range(0, len(parts), 3):  # text, then a kept element and its tag name
        out.append(_lean_text(parts[i]))
        if i + 1 < len(parts):
            out.append(parts[i + 1])
    return "".join(out)


def _lean_text(text: str) -> str:
    if "\n" not in text:
        return text
    lines = text.split("\n")
    out = [lines[0].rstrip(" \t")]  # [ \t]* before a line break
    for line in lines[1:-1]:
        line = line.lstrip()  # \s* after it: a line of white space alone goes with it
        if line:
            out.append(line.rstrip(" \t"))
    out.append(lines[-1].lstrip())
    return "\n".join(out)
