"""Key, query and value channels in the site: every kind gets its pages, FFN pages at
``<model>/<layer>/<unit>/`` as before and the other kinds at ``<model>/<kind>/<depth>/<unit>/``
(``pipeline.site.urls``, site/data-format.md), with ``kind`` in feature.json; the links of such
a site all resolve, in files and in Chromium, and ``pipeline.open`` reads a key channel's record
from the site and from the atlas directory."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import pipeline
from pipeline.site import build, serving, urls
from pipeline.store import AtlasStore
from tests.conftest import demo_build
from tests.pages.test_browser import browser, recording_page  # noqa: F401 (fixtures)
from tests.pages.test_site import _refs, crawl

KW = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 24, "num_heads": 2}
SITE_URL = "https://example.org/atlas/"


def test_demo_build_with_kinds(tmp_path):
    out = tmp_path / "atlas"
    demo_build(out, "--layers", "1", "--channels", "0:2", "--steps", "2",
               "--dataset", "synthetic:48", "--topk", "4", "--kinds", "ffn,key,value")
    spec = json.loads((out / "atlas.json").read_text())["model"]
    depth = sum(1 for layer in spec["layers"] if layer.get("kind", "ffn") == "ffn")
    slug = next(p for p in (out / "site").iterdir()
                if (p / "1" / "0" / "feature.json").is_file())
    ffn = json.loads((slug / "1" / "0" / "feature.json").read_text())
    assert ffn["kind"] == "ffn" and "depth" not in ffn
    key = json.loads((slug / "key" / "1" / "1" / "feature.json").read_text())
    value = json.loads((slug / "value" / "1" / "0" / "feature.json").read_text())
    assert key["kind"] == "key" and key["depth"] == 1 and key["module"] == "blocks.1.attn.qkv"
    assert key["layer"] == 2 * depth + 1 and value["layer"] == 3 * depth + 1
    dim = spec["layers"][2 * depth + 1]["units"]
    assert key["channel"] == dim + 1 and value["channel"] == 2 * dim
    assert key["top"]["id"] and key["top"]["maps"]["shape"][1] == ffn["grid"][0]
    assert not (slug / "query").exists()  # queries were not asked for
    # the attention kinds' layer numbers name no folder: their pages are under <kind>/<depth>/
    assert sorted(p.name for p in slug.iterdir() if p.name.isdigit()) == ["1"]


# -- a fake atlas of FFN units and keys ---------------------------------------------------------
@pytest.fixture(scope="module")
def key_site(tmp_path_factory) -> tuple[AtlasStore, Path, str]:
    """FFN layers 0, 1 and key layers 2, 3 (blocks 0, 1) of a 2-block ViT: labelled, related
    (similar units in every layer, so key pages link to FFN pages and back), built with a
    site URL (canonical links, sitemap)."""
    from pipeline.models import create_model, spec_for
    from pipeline.testing.fake import make_fake_atlas

    name = "vit_tiny_patch16_224"
    spec = spec_for(create_model(name, "random", KW), name, KW, ("ffn", "key"))
    assert [(x.index, x.kind, x.level) for x in spec.layers] == [
        (0, "ffn", 0), (1, "ffn", 1), (2, "key", 0), (3, "key", 1)]
    store = make_fake_atlas(tmp_path_factory.mktemp("keys") / "atlas", spec, topk=4,
                            n_examples=24, vis_units=6, model_kwargs=KW)
    site = build.build_site(store, workers=2, site_url=SITE_URL)
    slug = json.loads((site / urls.MODELS_JSON).read_text())["models"][0]["slug"]
    return store, site, slug


def test_key_pages_at_kind_and_depth_ffn_pages_where_they_were(key_site):
    store, site, slug = key_site
    model = site / slug
    assert sorted(p.name for p in model.iterdir() if p.name.isdigit()) == ["0", "1"]
    for layer in (0, 1):  # FFN: <slug>/<layer>/<unit>/
        assert (model / str(layer) / "index.html").is_file()
        record = json.loads((model / str(layer) / "5" / "feature.json").read_text())
        assert (record["layer"], record["kind"], record["unit"]) == (layer, "ffn", 5)
        assert record["permalink"] == f"{SITE_URL}{slug}/{layer}/5/"
        assert (model / str(layer) / "5" / "index.html").is_file()
    for depth in (0, 1):  # keys: <slug>/key/<depth>/<unit>/, whatever the layer's number
        here = model / "key" / str(depth)
        assert (here / "index.html").is_file() and (here / urls.MAP_JSON).is_file()
        units = sorted(int(p.parent.name) for p in here.glob("*/feature.json"))
        assert units == list(range(24))  # indexed: every channel has a page
        record = json.loads((here / "7" / "feature.json").read_text())
        assert (record["layer"], record["kind"], record["depth"], record["unit"]) == (
            2 + depth, "key", depth, 7)
        assert record["channel"] == 24 + 7  # the key's slice of the fused qkv output
        assert record["permalink"] == f"{SITE_URL}{slug}/key/{depth}/7/"
        assert (here / "3" / urls.VISUALIZATION).is_file()  # the first 6 are visualized
        assert not (here / "7" / urls.VISUALIZATION).is_file()
        page = (here / "7" / "index.html").read_text()
        assert f'<link rel="canonical" href="{SITE_URL}{slug}/key/{depth}/7/">' in page
    index = json.loads((site / urls.MODELS_JSON).read_text())
    assert index["format_version"] == urls.SITE_FORMAT_VERSION >= 8  # 8: kinds
    layers = index["models"][0]["layers"]
    assert [(x["layer"], x["kind"], x.get("depth"), x["path"]) for x in layers] == [
        (0, "ffn", None, f"{slug}/0/"), (1, "ffn", None, f"{slug}/1/"),
        (2, "key", 0, f"{slug}/key/0/"), (3, "key", 1, f"{slug}/key/1/")]
    sitemap = (site / "sitemap-0.xml").read_text()
    assert f"<loc>{SITE_URL}{slug}/key/1/23/</loc>" in sitemap
    assert f"<loc>{SITE_URL}{slug}/key/1/</loc>" in sitemap
    assert f"<loc>{SITE_URL}{slug}/1/23/</loc>" in sitemap
    assert f"{slug}/3/" not in sitemap and f"{slug}/2/" not in sitemap
    locs = re.findall(r"<loc>([^<]*)</loc>", sitemap)  # made a layer at a time, merged:
    assert len(set(locs)) == len(locs)  # each page once, the feature pages in their order
    features = [u for u in locs if re.search(r"/\d+/\d+/$", u)]
    assert features == sorted(features) and len(features) > 100
    found = json.loads((model / "findings" / "findings.json").read_text())
    pages = {u["kind"]: u["page"] for s in found["sample"] for u in s["units"]}
    assert pages and all(p.startswith(f"{slug}/key/") for k, p in pages.items() if k == "key")


def test_key_pages_name_their_kind_and_block(key_site):
    """A key channel's page, layer page, nav entry, jump index and BibTeX say "key channel 7 of
    block 1" (``urls.layer_name``), not its layer number, which depends on the kinds built; an
    FFN page's words stay as they were cited."""
    _, site, slug = key_site
    model = site / slug
    key = (model / "key" / "1" / "7" / "index.html").read_text()
    crumbs = re.search(r'<nav class="atlas-crumbs".*?</nav>', key).group(0)
    assert f"<title>{slug} · key channel 7 of block 1 –" in key
    assert ">key channels of block 1</a> › channel 7</nav>" in crumbs
    assert "<small>key channel 7 of block 1</small></h1>" in key
    assert "layer 3" not in crumbs and "unit 7" not in crumbs
    assert f"@misc{{vitatlas:{slug}:K1:U7," in key
    assert "title        = {Key channel 7 of block 1 (blocks.1.attn.qkv) of" in key
    assert "key channel 7 of block 1; ViT Feature Atlas version" in key
    assert '<meta name="description" content="Key channel 7 of block 1 of vit_tiny' in key
    ffn = (model / "1" / "7" / "index.html").read_text()  # FFN pages: as they were
    assert f"<title>{slug} · layer 1 · unit 7 –" in ffn
    assert '>layer 1</a> › unit 7</nav>' in ffn and "<small>layer 1 · unit 7</small>" in ffn
    assert f"@misc{{vitatlas:{slug}:L1:U7," in ffn
    assert "title        = {Unit 7 of FFN layer 1 (blocks.1.mlp.act) of" in ffn
    assert "layer 1, unit 7; ViT Feature Atlas version" in ffn
    assert '<meta name="description" content="Unit 7 of FFN layer 1 of vit_tiny' in ffn
    layer_page = (model / "key" / "0" / "index.html").read_text()
    assert f"<title>{slug} · key channels of block 0 " in layer_page
    assert ">‹ layer 1</a>" in layer_page and ">key channels of block 1 ›</a>" in layer_page
    nav = (site / "how-to-read" / "index.html").read_text()
    assert "Key channels of block 1" in nav and "Layer 1" in nav
    layers = json.loads((site / urls.MODELS_JSON).read_text())["models"][0]["layers"]
    assert [(x["name"], x["unit_name"]) for x in layers[1:3]] == [
        ("layer 1", "layer 1 · unit {unit}"),
        ("key channels of block 0", "key channel {unit} of block 0")]


def test_links_between_kinds_and_the_model_page(key_site):
    _, site, slug = key_site
    model = site / slug
    key_page = {url for _, _, url in _refs(model / "key" / "1" / "7" / "index.html")}
    assert "../../../" in key_page  # the breadcrumb: the model page
    assert any(u.startswith("../../../words/?word=") for u in key_page)
    ffn_page = {url for _, _, url in _refs(model / "1" / "7" / "index.html")}
    assert "../../key/0/7/" in ffn_page  # next layer: layer 2, the keys of block 0
    layer_page = {url for _, _, url in _refs(model / "key" / "0" / "index.html")}
    assert {"../../1/", "../1/", "../../"} <= layer_page  # prev/next layer, all layers
    model_page = {url for _, _, url in _refs(model / "index.html")}
    assert {"0/", "1/", "key/0/", "key/1/"} <= model_page
    home = {url for _, _, url in _refs(site / "index.html")}
    assert any(u.startswith(f"{slug}/key/") for u in home)
    nav = (site / "how-to-read" / "index.html").read_text()  # the nav reaches every layer
    assert f'href="../{slug}/key/1/"' in nav and f'href="../{slug}/1/"' in nav


def test_link_crawl_of_a_site_with_keys(key_site):
    _, site, _ = key_site
    pages, checked = crawl(site, SITE_URL)  # canonical links and permalinks too
    assert pages > 2 * 96 + 2 * 24 and checked > 15_000


def test_reader_reads_a_key_feature(key_site):
    from pipeline.site.assets import decode_record

    store, site, slug = key_site
    from_site, from_dir = pipeline.open(site), pipeline.open(store.root)
    assert from_site.layers == from_dir.layers == [0, 1, 2, 3]
    record = from_site.feature(3, 7)
    raw = json.loads((site / slug / "key" / "1" / "7" / "feature.json").read_text())
    assert record == decode_record(raw)  # the file's record, its maps decoded
    assert (record["kind"], record["depth"], record["unit"]) == ("key", 1, 7)
    other = from_dir.feature(3, 7)  # the directory knows no site URL: a site-root path
    assert other.pop("permalink") == f"{slug}/key/1/7/"
    assert record.pop("permalink") == f"{SITE_URL}{slug}/key/1/7/" and other == record
    assert from_site.feature(1, 7)["kind"] == "ffn"


def test_an_older_models_json_reads_layer_folders(tmp_path):
    """A site of format 7 and before (no ``kind``, ``path`` in models.json) had every page at
    ``<model>/<layer>/<unit>/``: the reader still finds them there."""
    (tmp_path / "m" / "2" / "5").mkdir(parents=True)
    (tmp_path / "m" / "2" / "5" / urls.FEATURE_JSON).write_text('{"layer": 2, "unit": 5}')
    (tmp_path / urls.MODELS_JSON).write_text(json.dumps({"format_version": 7, "models": [
        {"name": "x", "slug": "m", "layers": [{"layer": 2, "units": 8, "pages": None}]}]}))
    assert pipeline.open(tmp_path).feature(2, 5) == {"layer": 2, "unit": 5}


# -- in Chromium: the header search and the word page follow models.json's paths -------------
@pytest.fixture(scope="module")
def served_keys(key_site) -> Iterator[str]:
    _, site, _ = key_site
    with serving(site) as base:
        yield base


def _word_with_keys(site: Path, slug: str) -> tuple[str, list[list]]:
    """A concept that labels key channels, with its entries (all in one shard, few enough for
    the word page's first screen)."""
    for shard in sorted((site / slug / "words").glob("w*.json")):
        data = json.loads(shard.read_text())
        for concept, entries in data["words"].items():
            if {e[0] for e in entries} & {2, 3} and re.fullmatch(r"[a-z]+", concept) \
                    and concept not in data["split"] and len(entries) <= 48:
                return concept, entries
    raise AssertionError("no word labels a key channel")


def test_similar_units_link_across_kinds(browser, key_site, served_keys):  # noqa: F811
    """The similar units, drawn by the page's script: a key channel's page links FFN units and
    the other block's keys, each named by kind and block, and the links reach their pages."""
    store, _, slug = key_site
    base = served_keys
    sim = json.loads((key_site[1] / slug / "key" / "1" / "7" / "feature.json").read_text())[
        "similar"]
    kinds = {0: "ffn", 1: "ffn", 2: "key", 3: "key"}
    with recording_page(browser, base) as pg:
        pg.goto(f"{base}/{slug}/key/1/7/")
        pg.wait_for_selector(".atlas-similar[data-drawn]")
        shown = pg.eval_on_selector_all(
            ".atlas-sim-list a", "as => as.map(a => [a.href, a.querySelector('span:not("
            ".atlas-novis)').textContent, a.parentNode.getAttribute('data-group')])")
        assert {g for *_, g in shown} == {"0", "1"}
        assert any(f"/{slug}/0/" in h or f"/{slug}/1/" in h for h, *_ in shown)  # FFN units
        for href, name, group in shown:
            layer, unit = next((la, u) for la, u in zip(sim["layer"], sim["unit"], strict=True)
                               if href.endswith(f"/{u}/") and (
                                   f"/{slug}/key/{la - 2}/" in href if kinds[la] == "key"
                                   else f"/{slug}/{la}/" in href))
            if group == "0":  # this layer: by channel
                assert (layer, name) == (3, f"channel {unit}")
            elif kinds[layer] == "key":
                assert name == f"key channel {unit} of block {layer - 2}"
            else:
                assert name == f"L{layer} · unit {unit}"
        pg.locator(".atlas-sim-list[data-group='1'] a[href*='/key/0/']").first.click()
        pg.wait_for_url(re.compile(rf"{re.escape(base)}/{slug}/key/0/\d+/$"))
        assert pg.locator(".atlas-crumbs").inner_text().startswith(slug)


def test_header_search_and_word_page_reach_key_pages(browser, key_site,  # noqa: F811
                                                     served_keys):
    _, site, slug = key_site
    base = served_keys
    with recording_page(browser, base) as pg:
        pg.goto(f"{base}/{slug}/0/3/")
        for query, path, name in (("key/1/3", "key/1/3/", "key channel 3 of block 1"),
                                  ("3/4", "key/1/4/", "key channel 4 of block 1"),
                                  (f"{slug}/key 0 5", "key/0/5/", "key channel 5 of block 0"),
                                  ("1/6", "1/6/", "layer 1 · unit 6")):
            pg.fill(".md-search__input", query)
            pg.wait_for_function(f"""Array.from(document.querySelectorAll(
                '.atlas-search-unit a')).some(a => a.textContent.endsWith({name!r}))""")
            pg.press(".md-search__input", "Enter")
            pg.wait_for_url(f"{base}/{slug}/{path}")
            crumb = f"unit {path[-2]}" if path[0].isdigit() else f"channel {path[-2]}"
            assert pg.locator(".atlas-crumbs").inner_text().endswith(crumb)
        pg.fill(".md-search__input", "key/1/99")
        pg.wait_for_function("document.querySelector('.atlas-search-msg').textContent"
                             ".includes('no page for unit 99')")
        concept, entries = _word_with_keys(site, slug)
        folder = {0: "0", 1: "1", 2: "key/0", 3: "key/1"}
        pg.goto(f"{base}/{slug}/words/?word={concept}")
        pg.wait_for_selector(".atlas-words-results a.atlas-word-hit")
        hrefs = pg.eval_on_selector_all(".atlas-words-results a.atlas-word-hit",
                                        "as => as.map(a => a.href)")
        assert sorted(hrefs) == sorted(f"{base}/{slug}/{folder[e[0]]}/{e[1]}/" for e in entries)
        # a hit names its unit in short by kind and block ("K1 · U3"), as its title in full
        short = {0: "L0", 1: "L1", 2: "K0", 3: "K1"}
        shown = pg.eval_on_selector_all(
            ".atlas-words-results a.atlas-word-hit",
            "as => as.map(a => [a.querySelector('.atlas-word-hit-unit').textContent, a.title])")
        full = {0: "layer 0 unit {}", 1: "layer 1 unit {}", 2: "key channel {} of block 0",
                3: "key channel {} of block 1"}
        assert sorted(shown) == sorted([f"{short[e[0]]} · U{e[1]}", full[e[0]].format(e[1])]
                                       for e in entries)
        pg.locator(".atlas-words-results a.atlas-word-hit[href*='/key/']").first.click()
        pg.wait_for_url(re.compile(rf"{re.escape(base)}/{slug}/key/[01]/\d+/$"))


def test_sitemap_parts_are_written_as_their_urls_come(tmp_path, monkeypatch):
    """``sitemap.write`` takes its sources as an iterator and writes a part per ``MAX_URLS``
    of them, in the order given; the index lists the parts."""
    from pipeline.site import sitemap

    monkeypatch.setattr(sitemap, "MAX_URLS", 3)
    for n, parts in ((7, [3, 3, 1]), (6, [3, 3]), (0, [0])):
        site = tmp_path / str(n)
        site.mkdir()
        sitemap.write(site, SITE_URL, (f"m/{i}/index.md" for i in range(n)))
        got = [re.findall(r"<loc>([^<]*)</loc>", (site / f"sitemap-{k}.xml").read_text())
               for k in range(len(parts))]
        assert [len(g) for g in got] == parts and not (site / f"sitemap-{len(parts)}.xml").exists()
        assert sum(got, []) == [f"{SITE_URL}m/{i}/" for i in range(n)]
        index = re.findall(r"<loc>([^<]*)</loc>", (site / "sitemap.xml").read_text())
        assert index == [f"{SITE_URL}sitemap-{k}.xml" for k in range(len(parts))]

