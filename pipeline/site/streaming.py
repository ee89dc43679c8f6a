"""Feature pages through mkdocs one at a time.

mkdocs reads and renders every page before it writes the first (``mkdocs.commands.build``):
at about 73 KiB held per feature page, a model of 100,000 units took 7.5 GiB. This plugin takes
the feature pages out of that first pass and, once the other pages are read and the theme's
environment is ready, reads, renders and writes each feature page in turn through mkdocs' own
steps (plugin events included), then lets it go. The pages come out byte for byte as before:
feature pages are outside the nav and the search index, and nothing links to them by Markdown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import BasePlugin
from mkdocs.structure.files import File, Files
from mkdocs.structure.nav import Navigation
from mkdocs.structure.pages import Page

from pipeline.site import urls

PLUGIN_NAME = "atlas-feature-stream"


def feature_page_pattern(slugs: Iterable[str]) -> re.Pattern[str]:
    """Source paths of the feature pages of the models ``slugs`` (``urls.feature_dir``, every
    kind: ``urls.feature_source_pattern``).

    >>> bool(feature_page_pattern(["vit"]).match("vit/3/17/index.md"))
    True
    >>> bool(feature_page_pattern(["vit"]).match("vit/key/3/17/index.md"))
    True
    >>> bool(feature_page_pattern(["vit"]).match("vit/words/index.md"))
    False
    """
    return urls.feature_source_pattern(slugs)


class FeaturePageStream(BasePlugin):
    """Holds back the pages whose source path matches ``pattern`` from mkdocs' first pass and
    builds them one by one (``on_env``); ``built`` counts them."""

    def __init__(self, pattern: re.Pattern[str]):
        super().__init__()
        self.pattern = pattern
        self.held: list[File] = []
        self.nav: Navigation | None = None
        self.built = 0

    def on_files(self, files: Files, config: MkDocsConfig) -> Files:
        self.held = [f for f in files.documentation_pages() if self.pattern.match(f.src_uri)]
        for f in self.held:
            files.remove(f)
        return files

    def on_nav(self, nav: Navigation, config: MkDocsConfig, files: Files) -> Navigation:
        self.nav = nav
        return nav

    def on_env(self, env, config: MkDocsConfig, files: Files):
        # mkdocs' own per-page steps (private, pinned by the package's mkdocs requirement)
        from mkdocs.commands.build import _build_page, _populate_page

        assert self.nav is not None, "on_nav runs before on_env"
        doc_files = files.documentation_pages()
        for f in self.held:
            page = Page(None, f, config)
            _populate_page(page, config, files)
            _build_page(page, config, doc_files, self.nav, env)
            f.page = None  # the page, its Markdown and HTML go now
            self.built += 1
        self.held = []
        return env
