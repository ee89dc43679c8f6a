"""Aliases in each of mike's three forms (``publish --alias-type``): each publishes, moves to
the next version, switches form, leaves every version byte-identical, and every link of the
published site resolves."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import pytest

from pipeline.aliases import alias_type, alias_types, check_alias_type, redirect_target, write_alias
from pipeline.cli import main
from pipeline.errors import AtlasError
from pipeline.publish import publish, read_versions, resolve_version
from pipeline.site import serving, urls
from pipeline.site.data import AtlasView
from pipeline.testing.fake import make_fake_atlas, tiny_spec
from tests.pages.test_browser import browser, recording_page  # noqa: F401 - the fixture
from tests.publish.crawl import HOST, crawl
from tests.publish.test_publish import KW_A, URL, _tree

TYPES = alias_types()


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    return make_fake_atlas(tmp_path_factory.mktemp("alias-atlas"), tiny_spec(**KW_A),
                           model_kwargs=KW_A, vis_units=8)


@pytest.fixture(scope="module", params=TYPES)
def aliased(request, atlas, tmp_path_factory) -> dict:
    """A site with 1.0 and then 1.1 published, ``latest`` moving from one to the other in
    the form ``request.param`` (1.1 through the command line)."""
    kind = request.param
    site = tmp_path_factory.mktemp(f"alias-{kind}") / "site"
    publish([atlas.root], site, "1.0", aliases=["latest"], site_url=URL, workers=1,
            alias_type=kind)
    first = {"type": alias_type(site / "latest"), "tree": _tree(site / "latest"),
             "home": redirect_target(site / "latest" / "index.html"),
             "resolved": (site / "latest").resolve()}
    before = _tree(site / "1.0")
    assert main(["publish", "--site", str(site), "--version", "1.1", "--alias", "latest",
                 "--alias-type", kind, "--site-url", URL, "--no-relate",
                 str(atlas.root)]) == 0
    return {"site": site, "type": kind, "first": first, "before": before,
            "slug": AtlasView(atlas).slug}


def _html(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*.html")}


def test_alias_publishes_and_moves_leaving_versions_byte_identical(aliased):
    site, kind, first = aliased["site"], aliased["type"], aliased["first"]
    assert _tree(site / "1.0") == aliased["before"] and len(aliased["before"]) > 100
    assert read_versions(site) == [  # mike's format: the form is read from disk
        {"version": "1.1", "title": "1.1", "aliases": ["latest"]},
        {"version": "1.0", "title": "1.0", "aliases": []}]
    assert resolve_version(read_versions(site), "latest") == "1.1"
    assert first["type"] == alias_type(site / "latest") == kind
    assert not [p.name for p in site.iterdir() if ".new-" in p.name or ".old-" in p.name]
    root = (site / "index.html").read_text()
    if kind == "symlink":
        assert first["resolved"] == (site / "1.0").resolve()
        assert (site / "latest").is_symlink() and (site / "latest").resolve() == site / "1.1"
        assert 'url=latest/"' in root
    elif kind == "copy":  # byte for byte: the pages name the version, not the alias
        assert first["tree"] == aliased["before"]
        assert _tree(site / "latest") == _tree(site / "1.1")
        assert 'url=latest/"' in root
    else:  # a redirect page per HTML page of the version, nothing else
        assert first["home"] == "../1.0/"
        assert redirect_target(site / "latest" / "index.html") == "../1.1/"
        assert set(_tree(site / "latest")) == _html(site / "latest") == _html(site / "1.1")
        assert 'url=1.1/"' in root  # one hop, not two
    assert (site / ".nojekyll").is_file()


@pytest.mark.parametrize("aliased", ["copy"], indirect=True)
def test_copied_pages_cite_the_version(aliased):
    site, slug = aliased["site"], aliased["slug"]
    unit = site / "latest" / slug / "0" / "3"
    record = json.loads((unit / urls.FEATURE_JSON).read_text())
    assert record["site_version"] == "1.1"
    assert record["permalink"] == f"{URL}1.1/{slug}/0/3/"
    page = (unit / "index.html").read_text()
    assert f"{URL}1.1/{slug}/0/3/" in page and 'data-version="1.1"' in page
    assert "/latest/" not in page


class _Redirect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refresh = self.canonical = self.anchor = None
        self.script = ""
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "meta" and attrs.get("http-equiv") == "refresh":
            delay, _, url = attrs["content"].partition("; url=")
            assert delay == "0"
            self.refresh = url
        elif tag == "link" and attrs.get("rel") == "canonical":
            self.canonical = attrs["href"]
        elif tag == "a":
            self.anchor = attrs["href"]
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.script += data


@pytest.mark.parametrize("aliased", ["redirect"], indirect=True)
def test_redirect_pages_point_at_the_same_page_of_the_version(aliased):
    site, slug = aliased["site"], aliased["slug"]
    pages = sorted((site / "latest").rglob("*.html"))
    assert len(pages) == len(_html(site / "1.1")) > 50
    for page in pages:
        rel = page.relative_to(site / "latest").as_posix()
        parser = _Redirect()
        parser.feed(page.read_text())
        address = f"{HOST}/latest/{rel}"
        want = f"{HOST}/1.1/{rel}".removesuffix("index.html")  # directory URLs
        assert urljoin(address, parser.refresh) == want, rel
        assert parser.anchor == parser.refresh
        assert parser.canonical == URL + want.removeprefix(f"{HOST}/")
        assert parser.script == (f'location.replace({json.dumps(parser.refresh)} '
                                 "+ location.search + location.hash)")
        assert len(page.read_bytes()) < 1024
    unit = (site / "latest" / slug / "0" / "3" / "index.html")
    assert redirect_target(unit) == f"../../../../1.1/{slug}/0/3/"


@pytest.mark.parametrize("prefix", ["/", "/mirror/of/atlas/"])
def test_link_crawl_finds_nothing_broken_with_each_alias_type(aliased, prefix):
    site, kind = aliased["site"], aliased["type"]
    found = crawl(site, prefix, own_url=URL)  # the alias too (a symlink: not followed)
    alias = 0 if kind == "symlink" else len(_html(site / "latest"))
    assert found.pages == len(_html(site / "1.0")) + len(_html(site / "1.1")) + 2 + alias
    assert found.not_found == 3 + (kind != "symlink")  # the root's, each version's, alias's
    assert found.redirects == 1 + (alias if kind == "redirect" else 0)  # the root's
    assert found.outside == [] and found.broken == []


def test_switching_the_alias_type(aliased, atlas, tmp_path):
    """The alias moves to 1.2 in the next form (symlink → copy → redirect → symlink)."""
    kind = aliased["type"]
    after = TYPES[(TYPES.index(kind) + 1) % len(TYPES)]
    site = tmp_path / "site"
    shutil.copytree(aliased["site"], site, symlinks=True)
    earlier = {v: _tree(site / v) for v in ("1.0", "1.1")}
    publish([atlas.root], site, "1.2", aliases=["latest"], alias_type=after, workers=1,
            relate=False)
    assert alias_type(site / "latest") == after
    assert {v: _tree(site / v) for v in ("1.0", "1.1")} == earlier
    assert resolve_version(read_versions(site), "latest") == "1.2"
    if after == "copy":
        assert _tree(site / "latest") == _tree(site / "1.2")
    elif after == "redirect":
        assert redirect_target(site / "latest" / "index.html") == "../1.2/"
    else:
        assert (site / "latest").resolve() == (site / "1.2").resolve()
    assert crawl(site, own_url="").broken == []


def test_a_replaced_version_refreshes_its_copy(atlas, tmp_path):
    site = tmp_path / "site"
    publish([atlas.root], site, "1.0", aliases=["latest"], alias_type="copy", workers=1)
    publish([atlas.root], site, "1.0", force=True, site_url=URL, workers=1)  # no --alias
    assert read_versions(site)[0]["aliases"] == ["latest"]  # kept, as mike keeps them
    assert alias_type(site / "latest") == "copy"
    assert _tree(site / "latest") == _tree(site / "1.0")
    record = next((site / "latest").rglob(urls.FEATURE_JSON))
    assert json.loads(record.read_text())["permalink"].startswith(f"{URL}1.0/")


def test_write_alias_every_form_to_every_form(tmp_path):
    """Every switch, at the level of one alias: 9 pairs, leftovers of a killed run removed."""
    site = tmp_path
    for version in ("1.0", "1.1"):
        (site / version / "a").mkdir(parents=True)
        (site / version / "index.html").write_text(f"<p>{version}</p>")
        (site / version / "a" / "index.html").write_text(f"<p>{version} a</p>")
        (site / version / "a" / "feature.json").write_text("{}")
    (site / ".latest.new-1").mkdir()  # a run killed while writing
    for before in TYPES:
        for after in TYPES:
            write_alias(site, "latest", "1.0", before)
            assert alias_type(site / "latest") == before
            write_alias(site, "latest", "1.1", after)
            assert alias_type(site / "latest") == after
            if after == "redirect":
                assert sorted(_tree(site / "latest")) == ["a/index.html", "index.html"]
                assert redirect_target(site / "latest" / "a" / "index.html") == "../../1.1/a/"
            else:
                assert _tree(site / "latest") == _tree(site / "1.1")
            assert (site / "1.0" / "index.html").read_text() == "<p>1.0</p>"
    assert sorted(p.name for p in site.iterdir()) == ["1.0", "1.1", "latest"]


def test_unknown_alias_type_is_a_clear_error(atlas, tmp_path, capsys):
    site = tmp_path / "site"
    with pytest.raises(AtlasError, match="unknown alias type 'hardlink': use symlink, copy "
                                         "or redirect"):
        publish([atlas.root], site, "1.0", aliases=["latest"], alias_type="hardlink")
    assert not site.exists()  # refused before anything was built
    assert main(["publish", "--site", str(site), "--version", "1.0", "--alias", "latest",
                 "--alias-type", "Copy", str(atlas.root)]) == 2
    assert "unknown alias type 'Copy'" in capsys.readouterr().err
    assert check_alias_type("redirect") == "redirect"


def test_an_alias_never_replaces_a_folder_that_is_not_one(atlas, tmp_path):
    site = tmp_path / "site"
    (site / "docs").mkdir(parents=True)
    (site / "docs" / "index.html").write_text("mine")
    for kind in TYPES:
        with pytest.raises(AtlasError, match="not an alias"):
            publish([atlas.root], site, "1.0", aliases=["docs"], alias_type=kind)
    assert (site / "docs" / "index.html").read_text() == "mine"


@pytest.mark.parametrize("aliased", ["copy", "redirect"], indirect=True)
def test_alias_in_the_browser(aliased, browser):  # noqa: F811 - the imported fixture
    """Through the alias, a reader lands on the version's page (redirect: at the version's
    address, query and hash kept; copy: at the alias's address, the page naming 1.1)."""
    site, slug = aliased["site"], aliased["slug"]
    with serving(site) as base, recording_page(browser, base) as page:
        page.goto(f"{base}/latest/{slug}/0/3/?from=paper#cite")
        if aliased["type"] == "redirect":
            page.wait_for_url(f"{base}/1.1/{slug}/0/3/?from=paper#cite")
        page.wait_for_selector(".atlas-version-ready")
        assert page.locator(".atlas-version select").input_value() == "1.1"
        assert page.locator(".atlas-permalink").get_attribute("href") == (
            f"{URL}1.1/{slug}/0/3/")
        if aliased["type"] == "copy":
            assert page.url == f"{base}/latest/{slug}/0/3/?from=paper#cite"
        page.goto(f"{base}/")  # the root's redirect, through the alias or straight
        page.wait_for_url(f"{base}/latest/" if aliased["type"] == "copy"
                          else f"{base}/1.1/")
