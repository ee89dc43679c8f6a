"""The theme's files that no page of the site loads, left out of it (mkdocs plugin).

Material copies its whole ``assets`` folder into every site: source maps of its scripts and
stylesheets (``*.map``, some 1.3 MB; a browser asks for one only when its developer tools are
open) and lunr's word splitters and stemmers for some 30 languages (some 0.9 MB), of which its
search worker loads only those of the search's languages (``search_files``). In a demo-sized
atlas (1,536 features) these 2.2 MB were some 1.4 KiB per feature, more than the layer pages.
No page refers to them: a reader sees and uses the same site without them.
"""

from __future__ import annotations

from collections.abc import Iterable

from mkdocs.plugins import BasePlugin

PLUGIN_NAME = "atlas-theme-files"
LUNR = "assets/javascripts/lunr/"


def search_files(langs: Iterable[str]) -> set[str]:
    """The files under ``LUNR`` that Material's search worker loads for the search languages
    ``langs`` (its ``setupSearchLanguages``, mkdocs-material 9.x: a segmenter for Japanese,
    Hindi and Thai, a stemmer for each language but English, the multi-language glue for
    several, and the stemmers' support for any of these).

    >>> search_files(["en"])
    set()
    >>> sorted(search_files(["en", "ja"]))  # doctest: +NORMALIZE_WHITESPACE
    ['assets/javascripts/lunr/min/lunr.ja.min.js', 'assets/javascripts/lunr/min/lunr.multi.min.js',
     'assets/javascripts/lunr/min/lunr.stemmer.support.min.js',
     'assets/javascripts/lunr/tinyseg.js']
    """
    langs = list(langs)
    out = set()
    for lang in langs:
        if lang == "ja":
            out.add(LUNR + "tinyseg.js")
        elif lang in ("hi", "th"):
            out.add(LUNR + "wordcut.js")
        if lang != "en":
            out.add(f"{LUNR}min/lunr.{lang}.min.js")
    if len(langs) > 1:
        out.add(LUNR + "min/lunr.multi.min.js")
    if out:
        out.add(LUNR + "min/lunr.stemmer.support.min.js")
    return out


def unused(src_uri: str, langs: Iterable[str]) -> bool:
    """Whether the theme's file ``src_uri`` is one no page loads: a source map, or a lunr
    language file of none of ``langs`` (``search_files``).

    >>> [unused(p, ["en"]) for p in ("assets/javascripts/bundle.1.min.js.map",
    ...  "assets/javascripts/lunr/wordcut.js", "assets/javascripts/bundle.1.min.js",
    ...  "assets/javascripts/workers/search.1.min.js")]
    [True, True, False, False]
    """
    if src_uri.endswith(".map"):
        return True
    return src_uri.startswith(LUNR) and src_uri not in search_files(langs)


def search_langs(config) -> list[str] | None:
    """The languages of the site's search plugin (Material's ``search``: its ``lang``, which
    defaults to the theme's language), or None without one."""
    for plugin in config.plugins.values():
        lang = getattr(plugin, "config", {}).get("lang") if hasattr(plugin, "config") else None
        if lang:
            return [lang] if isinstance(lang, str) else list(lang)
    return None


class UnusedThemeFiles(BasePlugin):
    """mkdocs plugin: the theme's files that no page loads (``unused``) are not copied into
    the site. The site's own sources (the docs folder) are all kept."""

    def on_files(self, files, config):
        langs = search_langs(config) or []
        docs = str(config.docs_dir)
        for file in list(files):
            if file.src_dir is not None and str(file.src_dir) != docs and \
                    unused(file.src_uri, langs):
                files.remove(file)
        return files
