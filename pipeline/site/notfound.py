"""404 pages whose links work wherever the site is served.

mkdocs writes its 404 page with links absolute from the host's root (``/assets/...``, or
``/atlas/1.1/assets/...`` with a site URL): right only when the site lies exactly there. Here
they are made relative to the folder the page lies in (the site's root), so the page works
opened at its own address under any sub-path; a one-line script puts back the absolute root
(the site URL's path, else ``/``) only when a server shows the page for some other, missing
address, where relative links would resolve against that address.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline.store import atomic_write_text

_ATTR = re.compile(r'\b(href|src)="([^"]*)"')


def relative_links(html: str, root: str = "/") -> str:
    """``html`` with every ``href``/``src`` under ``root`` (a path ending in ``/``) made
    relative to ``root``, mkdocs-material's ``"base"`` too, and the base script added.

    >>> page = '<head><link href="/atlas/1.1/assets/a.css"></head><a href="/atlas/1.1/.">'
    >>> out = relative_links(page, "/atlas/1.1/")
    >>> 'href="assets/a.css"' in out, 'href="."' in out, "/atlas/1.1/" in out
    (True, True, True)
    >>> relative_links('<a href="https://x.org/">', "/") == relative_links('<a href="https://x.org/">')
    True
    """
    if not root.endswith("/"):
        root += "/"

    def fix(match: re.Match) -> str:
        attr, value = match.groups()
        if not value.startswith(root) or value.startswith("//"):
            return match.group(0)
        rest = value[len(root):]
        return f'{attr}="{rest or "."}"'

    out = _ATTR.sub(fix, html)
    out = out.replace(f'"base": {json.dumps(root)}', '"base": "."')
    script = ("<script>if(!/\\/404\\.html$/.test(location.pathname))"
              f"document.write('<base href=\"{_js(root)}\">')</script>")
    head = re.search(r"<head[^>]*>", out)
    if head is None or script in out:
        return out
    return out[:head.end()] + script + out[head.end():]


def _js(text: str) -> str:
    return json.dumps(text)[1:-1].replace("<", "\\u003c").replace("'", "\\u0027")


def fix_404(site: Path, root: str = "/") -> None:
    """Rewrite ``site/404.html`` (if any) with ``relative_links``, atomically."""
    path = Path(site) / "404.html"
    if path.is_file():
        atomic_write_text(path, relative_links(path.read_text(encoding="utf-8"), root))
