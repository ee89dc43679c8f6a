"""A link crawl of a published site on disk, as a host would serve it: every page at its own
address, every link, load and redirect resolved to a file of the site."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

HOST = "http://host.test"


class Links(HTMLParser):
    """A page's links (href, src and ``<meta http-equiv="refresh">`` targets) and what the
    browser fetches by itself (src, stylesheets)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.loads: list[str] = []
        self.refresh: list[str] = []

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("href", "src") and value:
                self.links.append(value)
                if key == "src" or tag == "link":
                    self.loads.append(value)
        attrs = dict(attrs)
        if tag == "meta" and (attrs.get("http-equiv") or "").lower() == "refresh":
            _, _, url = (attrs.get("content") or "").partition("url=")
            if url:
                self.refresh.append(url)
                self.links.append(url)


@dataclass
class Crawl:
    pages: int = 0
    not_found: int = 0  # 404.html pages crawled
    redirects: int = 0  # pages with a meta refresh
    broken: list[tuple[str, str]] = field(default_factory=list)
    outside: list[tuple[str, str]] = field(default_factory=list)  # loads from other hosts


def crawl(site: Path, prefix: str = "/", *, own_url: str = "",
          skip: tuple[str, ...] = ()) -> Crawl:
    """Crawl every ``*.html`` under ``site`` (but folders named in ``skip``) served at
    ``HOST + prefix``; loads from ``own_url`` (the site's canonical URL) are not outside."""
    result = Crawl()
    for html in sorted(site.rglob("*.html")):
        rel = html.relative_to(site)
        if set(skip) & set(rel.parts):
            continue
        result.pages += 1
        result.not_found += html.name == "404.html"
        address = HOST + prefix + rel.as_posix()
        parser = Links()
        parser.feed(html.read_text(encoding="utf-8"))
        result.redirects += bool(parser.refresh)
        result.outside += [(rel.as_posix(), u) for u in parser.loads
                           if urlsplit(u).scheme in ("http", "https")
                           and not (own_url and u.startswith(own_url))]
        for link in parser.links:
            if not urlsplit(link).path:
                continue
            target = urlsplit(urljoin(address, link))
            if f"{target.scheme}://{target.netloc}" != HOST:  # links out: not loaded here
                continue
            if not target.path.startswith(prefix):
                result.broken.append((rel.as_posix(), link))
                continue
            path = site / unquote(target.path[len(prefix):])
            if target.path.endswith("/") or path.is_dir():
                path = path / "index.html"
            if not path.exists():
                result.broken.append((rel.as_posix(), link))
    return result
