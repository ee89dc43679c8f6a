"""Feature pages through mkdocs one at a time.

mkdocs reads and renders every page before it writes the first (``mkdocs.commands.build``):
at about 73 KiB held per feature page, a model of 100,000 units took 7.5 GiB. This plugin takes
the feature pages out of that first pass and, once the other pages are read and the theme's
environment is ready, reads, renders and writes each feature page in turn through mkdocs' own
steps (plugin events included), then lets it go; their HTML loses the theme's indentation
(``lean_html``). The pages come out byte for byte as before otherwise:
feature pages are outside the nav and the search index, and nothing links to them by Markdown.

mkdocs runs on one core. With ``processes`` > 1 the held pages are shared out, page ``i`` to
process ``i % processes``: the process forks (POSIX) once mkdocs' environment is ready, so each
child renders its share through the very same config, navigation, theme and plugins, and
writes it; the parent renders share 0 and waits. A page depends only on its own source and
that shared state, so the output is byte for byte that of one process (tested). A child that
fails fails the build with its traceback.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Iterable, Sequence

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import BasePlugin
from mkdocs.structure.files import File, Files
from mkdocs.structure.nav import Navigation
from mkdocs.structure.pages import Page

from pipeline.errors import AtlasError
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
    builds them one by one (``on_env``) in ``processes`` processes; ``built`` counts them."""

    def __init__(self, pattern: re.Pattern[str], processes: int = 1):
        super().__init__()
        self.pattern, self.processes = pattern, max(1, processes)
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

    def on_post_page(self, output: str, page: Page, config: MkDocsConfig) -> str:
        return lean_html(output) if self.pattern.match(page.file.src_uri) else output

    def on_env(self, env, config: MkDocsConfig, files: Files):
        assert self.nav is not None, "on_nav runs before on_env"
        n = max(1, min(self.processes, len(self.held))) if hasattr(os, "fork") else 1
        children = [_fork(lambda r=r: self._build(self.held[r::n], env, config, files))
                    for r in range(1, n)]
        try:
            self._build(self.held[0::n], env, config, files)
        finally:  # the children are waited for, whatever happened here
            failures = [why for why in (_wait(child) for child in children) if why]
        if failures:
            raise AtlasError("site: a process building feature pages failed:\n" + failures[0])
        self.built = len(self.held)
        self.held = []
        return env

    def _build(self, share: Sequence[File], env, config: MkDocsConfig, files: Files) -> None:
        # mkdocs' own per-page steps (private, pinned by the package's mkdocs requirement)
        from mkdocs.commands.build import _build_page, _populate_page

        doc_files = files.documentation_pages()
        for f in share:
            page = Page(None, f, config)
            _populate_page(page, config, files)
            _build_page(page, config, doc_files, self.nav, env)
            f.page = None  # the page, its Markdown and HTML go now


_KEEP = re.compile(r"(?is)(<(pre|textarea)\b.*?</\2>)")


def lean_html(html: str) -> str:
    r"""``html`` without the theme's indentation: every run of white space that holds a line
    break becomes one line break, and blank lines go, outside ``<pre>`` and ``<textarea>``
    (where white space is content). Elsewhere a line break is white space as any run of it
    is, so the page renders alike (a feature page: about 2 KiB less of some 30).

    >>> lean_html("<p>\n    a\n\n    <b>b</b>  c\n</p><pre>\n  x\n</pre>")
    '<p>\na\n<b>b</b>  c\n</p><pre>\n  x\n</pre>'
    """
    parts = _KEEP.split(html)
    out = []
    for i in range(0, len(parts), 3):  # text, then a kept element and its tag name
        out.append(re.sub(r"[ \t]*\n\s*", "\n", parts[i]))
        if i + 1 < len(parts):
            out.append(parts[i + 1])
    return "".join(out)


def _fork(work) -> tuple[int, int]:
    """Run ``work()`` in a forked child: ``(pid, fd)``, the fd reading its traceback if any."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: do the work, report, and leave without running the parent's exit
        os.close(read)
        code = 0
        try:
            work()
        except BaseException:  # noqa: BLE001 - everything goes back to the parent
            os.write(write, traceback.format_exc().encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    return pid, read


def _wait(child: tuple[int, int]) -> str:
    """Wait for a ``_fork`` child: its traceback, or ``""`` when it succeeded."""
    pid, read = child
    with os.fdopen(read, "rb") as pipe:
        why = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 and not why:
        why = f"process {pid} ended with status {os.waitstatus_to_exitcode(status)}"
    return why
