"""Publishing: two atlases, two versions, in mike's layout; what a reader, a crawler and a
browser see of it."""

from __future__ import annotations

import collections
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import pipeline
from pipeline.cli import main
from pipeline.errors import AtlasError
from pipeline.publish import publish, read_versions
from pipeline.site import export, serving, urls
from pipeline.site.data import AtlasView
from pipeline.testing.fake import make_fake_atlas, tiny_spec
from tests.pages.test_browser import browser, recording_page  # noqa: F401 - the fixture
from tests.publish.crawl import crawl

KW_A = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 16, "num_heads": 1}
KW_B = {"img_size": 32, "patch_size": 8, "depth": 3, "embed_dim": 8, "num_heads": 1}
URL = "https://example.org/atlas/"


def _tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (symlinked aliases not followed)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("publish")
    a = make_fake_atlas(base / "a", tiny_spec(**KW_A), model_kwargs=KW_A, vis_units=20)
    b = make_fake_atlas(base / "b", tiny_spec(**KW_B), model_kwargs=KW_B,
                        weights_id="random(seed=1)")
    site = base / "site"
    publish([a.root, b.root], site, "1.0", aliases=["latest"], site_url=URL, workers=2)
    before = _tree(site / "1.0")
    assert main(["publish", "--site", str(site), "--version", "1.1", "--alias", "latest",
                 "--site-url", URL, str(a.root), str(b.root)]) == 0
    return {"site": site, "stores": [a, b], "before": before,
            "slugs": [AtlasView(a).slug, AtlasView(b).slug]}


def test_earlier_version_is_byte_identical_and_latest_moves(published):
    site = published["site"]
    assert _tree(site / "1.0") == published["before"] and len(published["before"]) > 500
    assert (site / "latest").is_symlink() and (site / "latest").resolve() == (site / "1.1")
    assert read_versions(site) == [
        {"version": "1.1", "title": "1.1", "aliases": ["latest"]},
        {"version": "1.0", "title": "1.0", "aliases": []}]
    assert 'url=latest/"' in (site / "index.html").read_text()
    index = (site / "sitemap.xml").read_text()
    assert f"{URL}1.1/sitemap.xml" in index and f"{URL}1.0/sitemap.xml" in index


def test_republishing_is_refused_without_force(published, tmp_path):
    site, (a, _) = published["site"], published["stores"]
    before = _tree(site / "1.0")
    with pytest.raises(AtlasError, match="already published"):
        publish([a.root], site, "1.0")
    assert main(["publish", "--site", str(site), "--version", "1.0", str(a.root)]) == 2
    assert _tree(site / "1.0") == before
    for bad in ("../x", "assets", "latest"):
        with pytest.raises(AtlasError):
            publish([a.root], site, bad)
    other = tmp_path / "site"
    publish([a.root], other, "2", workers=1)
    publish([a.root], other, "2", force=True, workers=1)  # replaced in place
    assert read_versions(other) == [{"version": "2", "title": "2", "aliases": []}]


def test_pages_carry_versioned_permalinks(published):
    site, slug = published["site"], published["slugs"][0]
    for version in ("1.0", "1.1"):
        record = json.loads((site / version / slug / "0" / "3" / urls.FEATURE_JSON).read_text())
        assert record["site_version"] == version
        assert record["permalink"] == f"{URL}{version}/{slug}/0/3/"
        page = (site / version / slug / "0" / "3" / "index.html").read_text()
        assert f"{URL}{version}/{slug}/0/3/" in page and f'data-version="{version}"' in page


def test_parquet_export_has_a_row_per_feature(published):
    site = published["site"]
    for slug in published["slugs"]:
        path = site / "1.1" / urls.export_file(slug)
        table = pq.read_table(path)
        pages = list((site / "1.1" / slug).glob("*/*/feature.json"))
        assert table.num_rows == len(pages) > 0
        layers = collections.Counter(p.parent.parent.name for p in pages)
        groups = sum(-(-n // export.ROW_GROUP) for n in layers.values())  # per layer, in order
        assert pq.ParquetFile(path).metadata.num_row_groups == groups
        keys = list(zip(table.column("layer").to_pylist(), table.column("unit").to_pylist(),
                        strict=True))
        assert keys == sorted(keys)
        row = table.slice(0, 1).to_pylist()[0]
        record = json.loads((site / "1.1" / slug / "0" / "0" / "feature.json").read_text())
        assert (row["layer"], row["unit"], row["label"]) == (0, 0, record["labels"]["concept"][0])
        assert row["top_ids"] == record["top"]["id"]
        assert row["permalink"] == record["permalink"]
        rec = record["fidelity"]["recognisability"]  # unit 0's (fake.FAKE_FIDELITY)
        assert (row["afc"], row["afc_best_example"], row["transfer_hit"]) == (
            rec["afc"], rec["best_example"]["afc"], rec["transfer"]["hit"]) == (0.85, 0.75, True)


def test_reader_opens_the_published_site(published):
    site, slugs = published["site"], published["slugs"]
    with pytest.raises(AtlasError, match="several models"):
        pipeline.open(site)
    atlas = pipeline.open(site, model=slugs[1])  # the newest version
    assert atlas.feature(2, 5)["site_version"] == "1.1"
    old = pipeline.open(site / "1.0", model=slugs[0])
    assert old.feature(0, 3)["permalink"].startswith(f"{URL}1.0/")


@pytest.mark.parametrize("prefix", ["/", "/mirror/of/atlas/"])
def test_link_crawl_finds_nothing_broken(published, prefix):
    """Every page (404 pages included), each at its own address with the site served at the
    host's root or under a sub-path: every link and load resolves to a file of the site."""
    site = published["site"]
    # the alias: a symlink to 1.1, crawled there (every alias type: test_alias_types)
    found = crawl(site, prefix, own_url=URL, skip=("latest",))
    assert found.pages > 400 and found.outside == []
    assert found.not_found == 3  # the root's and each version's
    assert found.broken == []


@pytest.fixture(scope="module")
def served(published) -> Iterator[str]:
    with serving(published["site"]) as base:
        yield base


@pytest.fixture
def page(browser, served):  # noqa: F811 - the imported fixture
    with recording_page(browser, served, height=1600) as pg:
        yield pg


def test_version_selector_and_newer_version_notice(page, served, published):
    slug = published["slugs"][0]
    page.goto(f"{served}/1.0/{slug}/0/3/")
    page.wait_for_selector(".atlas-version-ready")
    options = page.locator(".atlas-version select option").all_text_contents()
    assert options == ["1.1 (latest)", "1.0"]
    notice = page.locator(".atlas-outdated")
    assert notice.is_visible() and "newer version exists" in notice.inner_text()
    cite = page.locator(".atlas-permalink").get_attribute("href")
    assert cite == f"{URL}1.0/{slug}/0/3/"
    page.select_option(".atlas-version select", "1.1")
    page.wait_for_url(f"{served}/1.1/{slug}/0/3/")
    page.wait_for_selector(".atlas-version-ready")
    assert page.locator(".atlas-outdated").is_hidden()
    page.goto(f"{served}/latest/")  # a theme page through the alias
    page.wait_for_selector(".atlas-version-ready")
    assert page.locator(".atlas-version select").input_value() == "1.1"
    page.goto(f"{served}/")
    page.wait_for_url(f"{served}/latest/")


def test_cross_model_view(page, served, published):
    slugs = published["slugs"]
    page.goto(f"{served}/latest/")
    cards = page.locator(".atlas-model-card")
    assert cards.count() == 2 and "parameters" in cards.first.inner_text()
    page.click(".atlas-compare-link a")
    page.wait_for_url(re.compile(r".*/latest/compare/$"))
    heads = page.locator(".atlas-compare thead th small").all_text_contents()
    assert heads == slugs
    rows = page.locator(".atlas-compare tbody tr")
    assert rows.count() == 3  # the deeper model's 3 layers
    first = [c.get_attribute("data-layer") for c in rows.first.locator("td").all()]
    last = [c.get_attribute("data-layer") for c in rows.last.locator("td").all()]
    assert first == ["0", "0"] and last == ["1", "2"]
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    assert page.evaluate("Array.from(document.images).filter(i => !i.naturalWidth).length") == 0
    assert page.evaluate("document.images.length") >= 6
    rows.last.locator(f'td[data-model="{slugs[1]}"] a.atlas-compare-layer').click()
    page.wait_for_url(re.compile(rf".*/latest/{re.escape(slugs[1])}/2/$"))
