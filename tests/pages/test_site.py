"""The site stage end to end on a small synthetic atlas: layout, links, escaping, portability,
labels, the word index and relations (similar units, quantile examples, layer maps)."""

from __future__ import annotations

import json
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import yaml

import pipeline
from pipeline.errors import AtlasError
from pipeline.index.results import load_layer_index
from pipeline.resources import mkdocs_yml
from pipeline.site import build, fidelity, markup, recognisability, urls
from pipeline.site.assets import decode_maps, expand_record
from pipeline.site.feature import EXAMPLE_COLUMNS, QUANTILE_SHOWN, SIMILAR_SHOWN
from pipeline.site.search import CLASS_TOP, WordIndex
from pipeline.site.urls import atlas_slug, model_slug, relative
from pipeline.store import AtlasStore
from pipeline.testing.fake import (
    FAKE_FIDELITY,
    IMAGES_SEEN_PER_EXAMPLE,
    JUDGE,
    MAP_PRESERVATION,
    QUANTILES,
    TRICKY_CLASS,
    TRICKY_CONCEPT,
    TRICKY_ID,
    TRICKY_MODEL,
    TRICKY_NOTE,
    TRICKY_RECIPE,
    accented,
    fake_across,
    fake_labels,
    fake_relations,
    make_fake_atlas,
    tiny_spec,
)
from pipeline.testing.fake import fidelity as fake_fidelity
from pipeline.testing.fake import seed as fake_seed
from pipeline.version import ATLAS_VERSION

TINY = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 2}
VIS_UNITS = 150  # units 150..191 have no visualization
SLUG = atlas_slug("vit_tiny_patch16_224", "random(seed=0)")  # the fake atlas's pages
N_EXAMPLES = 40
IMAGES_SEEN = N_EXAMPLES * IMAGES_SEEN_PER_EXAMPLE
SECOND = ("visualization-paper-tv.avif", "attribution-paper-tv.avif")  # TRICKY_RECIPE's files
SHARD_ENTRIES = 200  # word-index shards of the small site: several, some concepts split
_BUILT: dict[str, Path] = {}


def build_small_site(base: Path) -> Path:
    """2 layers x 192 units; layer 1 not indexed (so it has pages only for visualized units).
    Two recipes: the primary visualizes units 0..149 (attribution maps in layer 0 only), the
    second (``TRICKY_RECIPE``) the even ones among them, with attribution maps, the accentuation
    (``ACCENT_RECIPE``) every fourth, with seeds. Labels: every
    unit of both layers but every tenth (``fake.fake_labels``), so layer 1's units without a
    page have labels too."""
    if "site" not in _BUILT:
        store = make_fake_atlas(base / "atlas", tiny_spec(**TINY), topk=6, n_examples=N_EXAMPLES,
                                vis_units=VIS_UNITS, index_layers=[0], accent=True)
        _BUILT["site"] = build.build_site(store, shard_entries=SHARD_ENTRIES)
    return _BUILT["site"]


@pytest.fixture(scope="session")
def small_site(tmp_path_factory) -> Path:
    return build_small_site(tmp_path_factory.mktemp("site"))


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, url)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.refs.append((tag, name, value))


class _Strings(HTMLParser):
    """Text nodes and attribute values as a browser would decode them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.strings: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.strings.update(v for _, v in attrs if v)

    def handle_data(self, data: str) -> None:
        self.strings.add(data)


def _html_pages(site: Path) -> list[Path]:
    """Every page but mkdocs' 404.html, which uses root-absolute URLs by design (a server
    shows it at arbitrary paths)."""
    return sorted(p for p in site.rglob("*.html") if p.name != "404.html")


def _refs(page: Path) -> list[tuple[str, str, str]]:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.refs


def test_layout_and_feature_json(small_site: Path):
    assert (small_site / "index.html").is_file()
    assert (small_site / SLUG / "index.html").is_file()
    pages0 = list((small_site / SLUG / "0").glob("*/index.html"))
    pages1 = list((small_site / SLUG / "1").glob("*/index.html"))
    assert len(pages0) == 192 and len(pages1) == VIS_UNITS
    feature = json.loads((small_site / SLUG / "0" / "0" / "feature.json").read_text())
    assert feature["format_version"] == urls.SITE_FORMAT_VERSION == 15
    assert (feature["model"], feature["layer"], feature["unit"]) == (
        "vit_tiny_patch16_224", 0, 0)
    assert feature["module"] == "blocks.0.mlp.act" and feature["weights"] == "random(seed=0)"
    assert feature["visualization"] == "visualization.avif" and feature["recipe"]["steps"] == 1
    assert feature["top"]["id"][0] == TRICKY_ID and "label" not in feature["top"]
    # format 15: each class named once, by number (any characters)
    assert feature["class_names"][str(feature["top"]["label_index"][0])] == TRICKY_CLASS
    assert expand_record(feature)["top"]["label"][0] == TRICKY_CLASS
    numbered = {*feature["top"]["label_index"], *feature["top_classes"]["label_index"],
                *feature["quantiles"]["examples"]["label_index"]} - {None}
    assert sorted(feature["class_names"], key=int) == [str(c) for c in sorted(numbered)]
    maps = feature["top"]["maps"]
    assert maps["encoding"] == "uint8-base64" and maps["shape"] == [len(feature["top"]["id"]), 4, 4]
    # format 11: every example has its thumbnail, so one URL template in place of a column
    assert set(feature["top"]) == {*EXAMPLE_COLUMNS, "maps", "images"} - {"image"}
    assert feature["top"]["images"] == "../../examples/e{example}.avif"
    assert set(expand_record(feature)["top"]) == {*EXAMPLE_COLUMNS, "label", "maps"}
    top = expand_record(feature)["top"]["image"][0]
    assert top == f"../../examples/e{feature['top']['example'][0]}.avif"
    assert (small_site / SLUG / "0" / "0" / top).resolve().is_file()
    hist = feature["histogram"]  # format 11: the bins' range (of equal width), not the edges
    assert set(hist) == {"counts", "range"} and len(hist["range"]) == 2
    index = load_layer_index(AtlasStore(small_site.parent), 0)
    edges = index.hist_edges[0].astype(np.float64)
    assert hist["counts"] == index.hist_counts[0].tolist()
    assert np.allclose(hist["range"], [edges[0], edges[-1]], rtol=1e-5)
    assert np.allclose(pipeline.open(small_site).feature(0, 0)["histogram"]["edges"], edges,
                       rtol=1e-5, atol=1e-6)  # written out by the reader (expand_record)
    for name in ("feature.json", "visualization.avif", "attribution.avif", *SECOND,
                 "index.html"):  # publishable as is
        assert (small_site / SLUG / "0" / "0" / name).stat().st_mode & 0o444 == 0o444
    empty = json.loads((small_site / SLUG / "0" / "1" / "feature.json").read_text())
    assert len(empty["top"]["id"]) == 4  # two empty slots of 6 are dropped
    novis = json.loads((small_site / SLUG / "0" / "170" / "feature.json").read_text())
    assert novis["visualization"] is None and novis["activation"] is None
    assert novis["recipes"] == [] and "fidelity" not in novis and "attribution" not in novis
    noindex = json.loads((small_site / SLUG / "1" / "3" / "feature.json").read_text())
    assert noindex["top"]["id"] == [] and noindex["histogram"] is None
    assert noindex["top"]["maps"]["shape"] == [0, 4, 4]
    index = json.loads((small_site / "models.json").read_text())
    (model,) = index["models"]
    assert model["slug"] == SLUG and model["classes"] == f"{SLUG}/classes.json"
    assert [(x["layer"], x["kind"], x["path"], x["pages"]) for x in model["layers"]] == [
        (0, "ffn", f"{SLUG}/0/", None), (1, "ffn", f"{SLUG}/1/", list(range(VIS_UNITS)))]
    classes = json.loads((small_site / SLUG / "classes.json").read_text())
    pairs = list(zip(classes["units"][0][::2], classes["units"][0][1::2], strict=True))
    assert classes["classes"][0] == TRICKY_CLASS and (0, 0) in pairs


def test_class_index_for_the_header_search_is_sharded(small_site: Path):
    """``classes/index.json`` (names, counts, best units) and its shards hold what
    ``classes.json`` holds, in shards of at most ``SHARD_ENTRIES`` units."""
    (model,) = json.loads((small_site / "models.json").read_text())["models"]
    assert model["class_index"] == f"{SLUG}/classes/index.json"
    full = json.loads((small_site / SLUG / "classes.json").read_text())
    head = json.loads((small_site / model["class_index"]).read_text())
    assert head["classes"] == full["classes"] and head["classes"][0] == TRICKY_CLASS
    assert head["counts"] == [len(u) // 2 for u in full["units"]]
    assert head["top"] == [u[:2 * CLASS_TOP] for u in full["units"]]
    merged: dict[int, list[int]] = {}
    split = 0
    for url, first, last, entries in head["shards"]:
        shard = json.loads((small_site / url).read_text())
        assert (shard["first"], shard["last"]) == (first, last)
        assert entries == sum(len(u) for u in shard["units"].values()) // 2 <= SHARD_ENTRIES
        for c, units in shard["units"].items():
            offset, total = shard["split"].get(c, [0, len(units) // 2])
            assert first <= int(c) <= last and len(merged.get(int(c), [])) == 2 * offset
            assert total == head["counts"][int(c)]
            merged[int(c)] = merged.get(int(c), []) + units
        split += len(shard["split"])
    assert len(head["shards"]) > 1 and split > 0  # several shards, a class over two or more
    assert [merged.get(c, []) for c in range(len(full["classes"]))] == full["units"]


def test_layer_page_shows_z_rank_ties(small_site: Path):
    """A tile's tooltip gives a tied z-rank as the ranks the tied units span, as the feature
    page says "tied": the grid's data holds every rank (atlas.js counts the ties)."""
    ranks = {}
    for unit in range(VIS_UNITS):
        f = json.loads((small_site / SLUG / "0" / str(unit) / "feature.json").read_text())
        if f.get("fidelity") and f["fidelity"].get("z_rank") is not None:
            ranks[unit] = f["fidelity"]["z_rank"]
    counts: dict[int, int] = {}
    for r in ranks.values():
        counts[r] = counts.get(r, 0) + 1
    tied = sorted(u for u, r in ranks.items() if counts[r] > 1)
    alone = sorted(u for u, r in ranks.items() if counts[r] == 1)
    assert tied and alone
    # the tooltips are drawn from units.json's z_rank (test_browser's
    # test_layer_tooltips_show_z_rank_ties reads them)
    grid = _grid(small_site, 0)
    assert {u: r for u, r in grid["z_rank"].items() if r is not None} == ranks
    feature = (small_site / SLUG / "0" / str(tied[0]) / "index.html").read_text(encoding="utf-8")
    assert "tied " in unescape(feature)


def test_feature_json_fidelity_and_recipes(small_site: Path):
    def feature(layer: int, unit: int) -> dict:
        return json.loads((small_site / SLUG / str(layer) / str(unit) / "feature.json").read_text())

    f = feature(0, 0)
    assert f["fidelity"] == {**FAKE_FIDELITY[0], "of": 192}
    assert f["attribution"] == "attribution.avif" and f["visualization"] == "visualization.avif"
    assert [r["name"] for r in f["recipes"]] == ["fake", TRICKY_RECIPE, "accent"]
    assert f["recipes"][0] == {"name": "fake"}  # format 11: the record's own fields
    primary, second, _ = expand_record(f)["recipes"]
    assert primary == {"name": "fake", "recipe": f["recipe"], "visualization": f["visualization"],
                       "activation": f["activation"], "fidelity": f["fidelity"],
                       "attribution": f["attribution"]}
    assert expand_record(f)["recipes"][1:] == f["recipes"][1:]  # the others: whole
    assert (second["visualization"], second["attribution"]) == SECOND
    assert second["recipe"]["note"] == TRICKY_NOTE and second["recipe"]["steps"] == 2
    assert set(second["fidelity"]) == {"vs_best_example", "z", "z_rank", "of", "recognisability"}
    assert second["activation"] != f["activation"]
    for name in (primary["visualization"], primary["attribution"], *SECOND):
        assert (small_site / SLUG / "0" / "0" / name).is_file()
    odd = feature(0, 1)  # only the primary recipe visualized it
    assert [r["name"] for r in odd["recipes"]] == ["fake"]
    assert not (small_site / SLUG / "0" / "1" / SECOND[0]).exists()
    for unit in (3, 7):  # not measured; measured but every part unknown
        f = feature(0, unit)
        assert "fidelity" not in f and expand_record(f)["recipes"][0]["fidelity"] is None
    assert feature(0, 4)["fidelity"]["vs_best_example"] == 0.43
    f = feature(1, 0)  # layer 1: no attribution maps of the primary recipe
    assert "attribution" not in f and "attribution" not in f["recipes"][0]
    assert f["recipes"][1]["attribution"] == SECOND[1]
    assert not (small_site / SLUG / "1" / "0" / "attribution.avif").exists()


def _visible_text(page: Path) -> str:
    parser = _Strings()
    parser.feed(page.read_text(encoding="utf-8"))
    return "\n".join(parser.strings)


def test_feature_page_says_fidelity_in_words(small_site: Path):
    layer0 = small_site / SLUG / "0"
    page = (layer0 / "0" / "index.html").read_text()
    words = (f"2.1× the best of {IMAGES_SEEN:,} dataset images · rank 1 of 192 in its layer by "
             "z-score (z = 4.2)")
    assert f'<p class="atlas-fidelity atlas-trusted">{words}</p>' in page
    primary = page.split('id="atlas-recipe-1"')[0]  # the first tab's panel
    assert "Caution" not in primary and 'class="atlas-attr-toggle"' in primary
    assert page.count('class="atlas-tab-input"') == 3
    assert page.count('<figure class="atlas-vis') == 3
    weak = (layer0 / "4" / "index.html").read_text().split('id="atlas-recipe-1"')[0]
    assert "0.43× the best of" in weak and "Weaker than the unit&#39;s best dataset image" in weak
    unselective = (layer0 / "5" / "index.html").read_text()
    assert "rank 40 of 192" in unselective and "Not selective: 39 other units" in unselective
    for unit in (3, 7):  # a missing fidelity is not shown (nor cautioned about)
        page = (layer0 / str(unit) / "index.html").read_text()
        assert "atlas-fidelity" not in page and "Caution" not in page and "z-score" not in page
        assert "atlas-tab-input" not in page  # one recipe: no tabs
        assert "atlas-attr-toggle" in page
    assert "atlas-attr-toggle" not in (small_site / SLUG / "1" / "1" / "index.html").read_text()


def _grid(site: Path, layer: int) -> dict:
    """Layer ``layer``'s units.json, with each column as ``{unit: value}``."""
    data = json.loads((site / SLUG / str(layer) / "units.json").read_text())
    return {**data, **{k: dict(zip(data["units"], v, strict=True)) for k, v in data.items()
                       if isinstance(v, list) and len(v) == len(data["units"])
                       and k != "units"}}


def test_layer_page_carries_fidelity_for_sorting(small_site: Path):
    page = (small_site / SLUG / "0" / "index.html").read_text()
    assert 'class="atlas-sort"' in page and 'class="atlas-trusted"' in page
    grid = _grid(small_site, 0)
    assert grid["format_version"] == 15 and (grid["layer"], grid["kind"], grid["of"]) == (
        0, "ffn", 192)
    assert grid["units"] == list(range(192))
    assert (grid["vs_best"][0], grid["z_rank"][0], grid["trusted"][0]) == (2.1, 1, 1)
    assert (grid["vs_best"][4], grid["z_rank"][4], grid["trusted"][4]) == (0.43, 2, 0)
    for unit in (3, 7, 170):  # not measured, or not visualized
        assert (grid["vs_best"][unit], grid["z_rank"][unit], grid["trusted"][unit]) == (
            None, None, 0)
    assert grid["thumbs"] == ["visualization.avif", SECOND[0], "visualization-accent.avif"]
    assert grid["thumb"] == {u: 0 if u < VIS_UNITS else -1 for u in range(192)}


def test_layer_page_links_every_unit_without_javascript(small_site: Path):
    """The grid is drawn by atlas.js from units.json; the page itself links every feature page
    (readers without JavaScript, crawlers) and preloads units.json."""
    for layer, units in ((0, range(192)), (1, range(VIS_UNITS))):
        page = (small_site / SLUG / str(layer) / "index.html").read_text()
        grid = page.split('<div class="atlas-grid"')[1].split("</div>")[0]
        assert grid.startswith(f' data-search-exclude data-src="units.json" '
                               f'data-units="{len(units)}">')
        assert '<link rel="preload" href="units.json" as="fetch" crossorigin="anonymous">' in grid
        noscript = grid.split("<noscript>")[1].split("</noscript>")[0]
        assert re.findall(r'<a href="(\d+)/">\1</a>', noscript) == [str(u) for u in units]
        assert "data-u=" not in page.split('class="atlas-filter"')[1]  # no cells in the page
    assert _grid(small_site, 1)["units"] == list(range(VIS_UNITS))


def test_units_json_matches_published_schema(small_site: Path):
    schema = json.loads((small_site / "schema" / "units.schema.json").read_text())
    for layer in (0, 1):
        data = json.loads((small_site / SLUG / str(layer) / "units.json").read_text())
        _check(schema, data)
        assert set(data) <= set(schema["properties"])
        columns = {k: v for k, v in data.items()
                   if isinstance(v, list) and k not in ("thumbs", "classes", "words")}
        assert {len(v) for v in columns.values()} == {len(data["units"])}
        with pytest.raises(AssertionError):
            _check(schema, {**data, "thumb": ["0"]})
        with pytest.raises(AssertionError):
            _check(schema, {k: v for k, v in data.items() if k != "units"})


# -- recognisability and the accentuation --------------------------------------------------
def _panels(page: str) -> dict[str, str]:
    """Each recipe tab's panel of a feature page (its figure's HTML), by recipe name."""
    out = {}
    for chunk in page.split('<figure class="atlas-vis atlas-tab-panel" data-recipe="')[1:]:
        name, body = chunk.split('">', 1)
        out[unescape(name)] = body.split("</figure>", 1)[0]
    return out


def _para(panel: str, cls: str) -> list[str]:
    """The decoded text of the panel's ``<p class="cls">`` paragraphs."""
    return [unescape(re.sub(r"<[^>]+>", "", m))
            for m in re.findall(rf'<p class="{cls}"[^>]*>(.*?)</p>', panel, re.S)]


RECIPES = ("fake", TRICKY_RECIPE, "accent")


def test_feature_json_recognisability_and_accent(small_site: Path):
    def feature(layer: int, unit: int) -> dict:
        return json.loads((small_site / SLUG / str(layer) / str(unit) / "feature.json").read_text())

    f = feature(0, 0)
    assert f["fidelity"]["recognisability"] == FAKE_FIDELITY[0]["recognisability"]
    assert [r["name"] for r in f["recipes"]] == list(RECIPES)
    for layer, units in ((0, range(0, VIS_UNITS, 7)), (1, range(0, VIS_UNITS, 11))):
        for u in units:
            got = {r["name"]: r for r in expand_record(feature(layer, u))["recipes"]}
            for number, name in enumerate(RECIPES):
                if name not in got:
                    assert (number == 1 and u % 2) or (number == 2 and not accented(u))
                    continue
                want = fidelity.clean(fake_fidelity(u, 192, number))
                assert got[name]["fidelity"] == want, (layer, u, name)
                assert ("recognisability" in (want or {})) == (
                    u % 5 != 1 and not (number == 0 and u in (3, 7)))
            if "accent" in got:  # the seed: copied through, in full
                assert got["accent"]["seed"] == fake_seed(u, N_EXAMPLES, got["accent"][
                    "activation"])
                assert got["accent"]["visualization"] == "visualization-accent.avif"
            assert all("seed" not in r for n, r in got.items() if n != "accent")
    assert feature(0, 0)["recipes"][2]["seed"]["example"] == TRICKY_ID
    assert "recognisability" not in feature(0, 1)["fidelity"]  # not measured: not said
    assert (small_site / SLUG / "0" / "0" / "visualization-accent.avif").is_file()
    assert not (small_site / SLUG / "0" / "2" / "visualization-accent.avif").exists()


def test_feature_page_says_recognisability_in_words(small_site: Path):
    layer0 = small_site / SLUG / "0"
    page = (layer0 / "0" / "index.html").read_text()
    assert TRICKY_CLASS not in page  # the class name reaches the page escaped only
    panels = _panels(page)
    assert list(panels) == list(RECIPES)
    assert _para(panels["fake"], "atlas-recognisability") == [
        f"Given this image, the judge ({JUDGE}) tells the unit's top images from its bottom "
        "ones 17 times in 20 (its best dataset example: 15 in 20). The judge sees this image "
        f"as ‘{TRICKY_CLASS}’ — the class of 80% of the unit's top examples. how"]
    assert _para(panels["fake"], "atlas-caution") == []
    weak = _panels((layer0 / "4" / "index.html").read_text())["fake"]
    assert _para(weak, "atlas-recognisability") == [
        f"Given this image, the judge ({JUDGE}) tells the unit's top images from its bottom "
        "ones 9 times in 20 (its best dataset example: 15 in 20). The judge sees this image "
        f"as ‘{TRICKY_CLASS}’, not ‘ring’ — the class of 65% of the unit's top examples. how"]
    cautions = _para(weak, "atlas-caution")
    assert len(cautions) == 2 and cautions[1].startswith("Caution: No better than chance")
    below = _panels((layer0 / "5" / "index.html").read_text())["fake"]
    assert _para(below, "atlas-caution")[-1] == (
        "Caution: Less recognisable than the unit's best dataset example (12 against 16 in 20):"
        " the dataset examples show better what the unit detects.")
    for unit in (1, 3, 7):  # not measured (or an atlas from before): nothing is said
        for panel in _panels((layer0 / str(unit) / "index.html").read_text()).values():
            assert _para(panel, "atlas-recognisability") == []
    page3 = (layer0 / "3" / "index.html").read_text()
    assert "atlas-recognisability" not in page3 and "Given this image" not in page3
    # every measured tab says its own numbers, with its cautions
    for u in range(0, VIS_UNITS, 3):
        panels = _panels((layer0 / str(u) / "index.html").read_text())
        for number, name in enumerate(RECIPES):
            if name in panels:
                fid = fidelity.clean(fake_fidelity(u, 192, number))
                rec = (fid or {}).get("recognisability")
                said = _para(panels[name], "atlas-recognisability")
                assert said == ([recognisability.sentences(rec) + " how"] if rec else [])
                assert _para(panels[name], "atlas-caution") == [
                    "Caution: " + c for c in fidelity.cautions(fid)]


def test_accent_tab_says_its_seed(small_site: Path):
    panel = _panels((small_site / SLUG / "0" / "0" / "index.html").read_text())["accent"]
    f = json.loads((small_site / SLUG / "0" / "0" / "feature.json").read_text())
    accent = f["recipes"][2]
    assert "Accentuation (accent) · objective" in panel
    assert _para(panel, "atlas-seed") == [
        f"Raises the unit from {markup.num(accent['seed']['activation'])} (its seed, example "
        f"{TRICKY_ID}) to {markup.num(accent['activation'])}."]
    assert TRICKY_ID not in panel  # escaped
    assert 'src="visualization-accent.avif"' in panel
    for name in ("fake", TRICKY_RECIPE):
        other = _panels((small_site / SLUG / "0" / "0" / "index.html").read_text())[name]
        assert _para(other, "atlas-seed") == [] and "Visualization (" in other


def test_layer_page_sorts_filters_and_switches_tiles(small_site: Path):
    page = (small_site / SLUG / "0" / "index.html").read_text()
    assert '<option value="a">by recognisability' in page and 'class="atlas-afc"' in page
    radios = re.findall(r'name="atlas-tile" value="(\w+)"', page)
    assert radios == ["vis", "acc", "ex"]
    grid = _grid(small_site, 0)
    assert grid["accent"] == "visualization-accent.avif" and grid["examples"] == "../examples/"
    assert (grid["afc"][0], grid["afc_best"][0], grid["accented"][0], grid["example"][0]) == (
        0.85, 0.75, 1, "e0.avif")
    assert grid["afc"][1] is None and grid["accented"][1] == 0  # not measured
    assert grid["accented"][2] == 0 and grid["example"][2] is not None
    assert grid["afc"][170] is None and grid["example"][170] is not None  # not visualized
    for unit in (0, 2, 170):  # the examples' files exist where the tiles point
        assert (small_site / SLUG / "examples" / grid["example"][unit]).is_file()
    one = (small_site / SLUG / "1" / "index.html").read_text()  # layer 1: not indexed
    assert re.findall(r'name="atlas-tile" value="(\w+)"', one) == ["vis", "acc"]
    assert "example" not in _grid(small_site, 1) and "classes" not in _grid(small_site, 1)


def test_fidelity_words():
    f = fidelity.clean({"vs_best_example": 12.345, "z": float("nan"), "z_rank": 30, "of": 3072})
    assert f == {"vs_best_example": 12.345, "z": None, "z_rank": 30, "of": 3072}
    assert fidelity.line(f, None) == ("12.3× the unit's best dataset image · rank 30 of 3,072 in "
                                      "its layer by z-score")
    assert fidelity.near_top(3072) == 31 and fidelity.near_top(96) == 3
    assert fidelity.trusted(f) and fidelity.cautions(f) == []
    f = fidelity.clean({"vs_best_example": None, "z": 1.04, "z_rank": None, "of": 8})
    assert fidelity.line(f, 50_000) == "z = 1.0 over the dataset" and not fidelity.trusted(f)
    assert fidelity.clean({"z": None}) is None and fidelity.clean(None) is None
    assert fidelity.line(None, 10) == "" and fidelity.cautions(None) == []
    assert len(fidelity.cautions({"vs_best_example": 0.5, "z_rank": 4, "of": 96})) == 2


def _check(schema: dict, value: object, where: str = "$", root: dict | None = None) -> None:
    """The subset of JSON Schema the feature schema uses."""
    root = schema if root is None else root
    if "$ref" in schema:
        _check(root["$defs"][schema["$ref"].rsplit("/", 1)[1]], value, where, root)
    if "anyOf" in schema:
        errors = []
        for sub in schema["anyOf"]:
            try:
                _check(sub, value, where, root)
                break
            except AssertionError as e:
                errors.append(str(e))
        else:
            raise AssertionError(f"{where}: matches none of anyOf: {errors}")
    kinds = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
             "null": type(None), "boolean": bool}
    if "const" in schema:
        assert value == schema["const"], where
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        assert any(isinstance(value, kinds[t]) and not (t in ("integer", "number") and
                   isinstance(value, bool)) for t in types), f"{where}: {value!r} not {types}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{where}: missing {key}"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                _check(sub, value[key], f"{where}.{key}", root)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _check(schema["items"], item, f"{where}[{i}]", root)
    if "minimum" in schema and isinstance(value, (int, float)):
        assert value >= schema["minimum"], where


def test_feature_json_matches_published_schema(small_site: Path):
    schema = json.loads((small_site / "schema" / "feature.schema.json").read_text())
    paths = sorted((small_site / SLUG).glob("*/*/feature.json"))
    for path in [*paths[::17], *(small_site / SLUG / "0" / str(u) / "feature.json"
                                 for u in (0, 2, 3, 4, 7, 9, 170))]:
        _check(schema, json.loads(path.read_text()), str(path))
    fid = schema["$defs"]["fidelity"]["properties"]
    assert set(fid) == {"vs_best_example", "z", "z_rank", "of", "recognisability"}
    good = json.loads(paths[0].read_text())
    with pytest.raises(AssertionError):
        _check(schema, {**good, "fidelity": {"z": 1}})
    for bad in ([{"concept": 1, "score": 2.0}], [{"concept": "x"}], {"concept": "x"}):
        with pytest.raises(AssertionError):
            _check(schema, {**good, "labels": bad})
    with pytest.raises(AssertionError):
        _check(schema, {k: v for k, v in good.items() if k != "labels"})
    rich = json.loads((small_site / SLUG / "0" / "0" / "feature.json").read_text())
    assert rich["similar"]["unit"] and rich["quantiles"]["intervals"]  # they hold relations
    for key, bad in (("similar", {"model": ["m"], "layer": [0], "unit": [1]}),
                     ("similar", {"model": [1], "layer": [0], "unit": [1], "score": [0.5],
                                  "slug": [None]}),
                     ("similar", [{"model": "m", "layer": 0, "unit": 1, "score": 0.5}]),
                     ("quantiles", {"intervals": [[0.0, 1.0]]}),
                     ("quantiles", {"intervals": [[0.0, 1.0]], "examples": {"id": ["x"]}}),
                     ("top", {**rich["top"], "maps": {"encoding": "float", "shape": [0],
                                                      "scale": 1, "data": ""}})):
        with pytest.raises(AssertionError):
            _check(schema, {**rich, key: bad})
    for key in ("similar", "quantiles"):
        with pytest.raises(AssertionError):
            _check(schema, {k: v for k, v in rich.items() if k != key})
    assert schema["properties"]["format_version"]["const"] == good["format_version"] == 15


# -- labels and the word index --------------------------------------------------------------
def _pages() -> dict[int, set[int]]:
    """Units with a page, per layer, in the small site."""
    return {0: set(range(192)), 1: set(range(VIS_UNITS))}


def _expected_labels(layer: int) -> dict[int, list[dict]]:
    return fake_labels(layer, 2, 192)


def test_feature_pages_show_labels_escaped(small_site: Path):
    labels0 = _expected_labels(0)
    assert labels0[0][0]["concept"] == TRICKY_CONCEPT and 9 not in labels0 and len(labels0[2]) == 2
    page = (small_site / SLUG / "0" / "0" / "index.html").read_text()
    best = re.search(r'<a class="atlas-word" href="([^"]*)"[^>]*>([^<]*)</a>', page)
    assert best is not None and unescape(best.group(2)) == TRICKY_CONCEPT
    assert best.group(1) == "../../words/?word=%3Cem%3E%22stripes%22%20%26%20%27dots%27%3C%2Fem%3E"
    assert 'href="../../../method/#labels">what the score means</a>' in page
    assert "label score (SoftWPMI)" in page and "higher is better" in page  # explained
    assert ('<span class="atlas-labeler">demo · 46 concepts (fake word list) · 40 probe '
            "images") in page
    top = re.findall(r'<li><a href="../../words/\?word=[^"]*">([^<]*)</a> <small>([^<]*)</small>',
                     page.split('class="atlas-words-top"')[1].split("</ol>")[0])
    assert [(unescape(c), n) for c, n in top] == [(c["concept"], markup.num(c["score"]))
                                                  for c in labels0[0]]
    assert len(top) == 5
    strings = _Strings()
    strings.feed(page)
    assert TRICKY_CONCEPT in strings.strings
    two = (small_site / SLUG / "0" / "2" / "index.html").read_text()
    assert two.split('class="atlas-words-top"')[1].split("</ol>")[0].count("<li>") == 2
    none = (small_site / SLUG / "0" / "9" / "index.html").read_text()
    assert "No label: this unit was not labelled" in none and 'class="atlas-word"' not in none
    assert "atlas-words-top" not in none


def test_feature_json_labels(small_site: Path):
    for layer, unit in ((0, 0), (0, 2), (0, 9), (1, 5), (0, 170)):
        f = json.loads((small_site / SLUG / str(layer) / str(unit) / "feature.json").read_text())
        assert _rows(f["labels"]) == _expected_labels(layer).get(unit, []), (layer, unit)
        assert f["labeler"] == "demo"
    f = json.loads((small_site / SLUG / "0" / "0" / "feature.json").read_text())
    assert f["labels"]["concept"][0] == TRICKY_CONCEPT and len(f["labels"]["concept"]) == 5
    scores = f["labels"]["score"]
    assert scores == sorted(scores, reverse=True)


def test_layer_tiles_show_labels(small_site: Path):
    page = (small_site / SLUG / "0" / "index.html").read_text()
    grid = _grid(small_site, 0)
    labels0 = _expected_labels(0)
    for unit in (0, 1, 2, 9, 170):
        concepts = [grid["words"][w] for w in grid["concepts"][unit]]
        assert concepts == [c["concept"] for c in labels0.get(unit, [])]  # the label first
    assert grid["words"][grid["concepts"][0][0]] == TRICKY_CONCEPT  # as it is: atlas.js
    tricky = _grid(small_site, 0)["classes"][grid["top_classes"][0][0]]  # writes text only
    assert tricky == TRICKY_CLASS
    assert "Filter by unit number, label or top class" in page
    assert 'href="../words/">search by word</a>' in page


def _word_index(site: Path) -> tuple[dict, list[dict]]:
    (model,) = json.loads((site / "models.json").read_text())["models"]
    words = model["words"]
    return words, [json.loads((site / url).read_text()) for url, *_ in words["shards"]]


def test_words_page_placeholder_names_words_the_atlas_holds(small_site: Path):
    _, shards = _word_index(small_site)
    held = set(_merged(shards))
    page = (small_site / SLUG / "words" / "index.html").read_text(encoding="utf-8")
    hint = unescape(re.search(r'class="atlas-words-input" placeholder="([^"]*)"', page)[1])
    assert hint.startswith("A word: ") and hint.endswith("…")
    named = hint.removeprefix("A word: ").removesuffix("…").split(", ")
    assert len(named) == 3 and set(named) <= held, (named, sorted(held)[:10])


def _merged(shards: list[dict]) -> dict[str, list[list]]:
    """Every concept's entries, its portions from consecutive shards joined (checking that
    each continues where the previous one stopped)."""
    out: dict[str, list[list]] = {}
    for shard in shards:
        for concept, entries in shard["words"].items():
            offset, total = shard["split"].get(concept, [0, len(entries)])
            have = out.setdefault(concept, [])
            assert offset == len(have), concept
            have.extend(entries)
            assert len(have) <= total
    return out


def test_word_index_holds_every_labelled_unit_ranked(small_site: Path):
    words, shards = _word_index(small_site)
    assert words["page"] == f"{SLUG}/words/" and words["labeler"] == "demo"
    assert words["thumbs"] == ["visualization.avif", SECOND[0], "visualization-accent.avif"]
    # the shards are what models.json says, and nothing else lies beside them
    files = sorted(p.name for p in (small_site / SLUG / "words").iterdir())
    assert files == sorted(["index.html", *(url.rsplit("/", 1)[1] for url, *_ in
                                            words["shards"])])
    assert len(shards) > 3
    for (_, first, last, n), shard in zip(words["shards"], shards, strict=True):
        assert shard["format_version"] == 15 and (shard["first"], shard["last"]) == (first, last)
        assert n == sum(map(len, shard["words"].values())) <= SHARD_ENTRIES
        keys = [c.lower() for c in shard["words"]]
        assert keys and keys[0] == first and keys[-1] == last
    bounds = [k.encode("utf-16-be") for _, first, last, _ in words["shards"]
              for k in (first, last)]
    assert bounds == sorted(bounds)  # consecutive key ranges, in JavaScript's order
    merged = _merged(shards)
    assert any(shard["split"] for shard in shards)  # some concept spans shards
    expected: dict[str, set] = {}
    labelled = set()
    for layer, units in _pages().items():
        for unit, concepts in _expected_labels(layer).items():
            if unit not in units:
                continue
            labelled.add((layer, unit))
            for rank, c in enumerate(concepts, 1):
                thumb = 0 if unit < VIS_UNITS else -1
                expected.setdefault(c["concept"], set()).add(
                    (layer, unit, float(f"{c['score']:.4g}"), rank, thumb))
    assert {c: {tuple(e) for e in entries} for c, entries in merged.items()} == expected
    for concept, entries in merged.items():
        assert len(entries) == len(expected[concept])  # no unit twice
        scores = [e[2] for e in entries]
        assert scores == sorted(scores, reverse=True), concept
    assert (words["units"], words["concepts"]) == (len(labelled), len(expected))
    assert words["entries"] == sum(map(len, expected.values()))
    assert not any(layer == 1 and unit >= VIS_UNITS for e in merged.values()
                   for layer, unit, *_ in e)  # labelled units without a page are left out
    tricky = sorted(([layer, 0, float(f"{_expected_labels(layer)[0][0]['score']:.4g}"), 1, 0]
                     for layer in (0, 1)), key=lambda e: -e[2])
    assert merged[TRICKY_CONCEPT] == tricky  # the hostile concept: unit 0 of both layers


def test_word_shards_split_in_javascript_order():
    index = WordIndex(["visualization.avif"], shard_entries=2)
    index.extend([("b", 0, u, float(u), 1, 0) for u in range(5)])
    index.extend([("\uffe0", 0, 9, 1.0, 1, -1), ("\U0001f600", 1, 3, None, 2, 0),
                  ("B", 0, 7, 0.5, 3, 0), ("a", 1, 1, 2.0, 1, 0)])
    shards = index.shards()
    # "a" < "b" = "B" (one key) < U+1F600 (a surrogate pair, below U+FFE0 in UTF-16 order)
    assert [(s["first"], s["last"]) for s in shards] == [
        ("a", "b"), ("b", "b"), ("b", "b"), ("b", "\U0001f600"), ("\uffe0", "\uffe0")]
    assert shards[0]["words"] == {"a": [[1, 1, 2.0, 1, 0]], "B": [[0, 7, 0.5, 3, 0]]}
    assert [s["split"].get("b") for s in shards] == [None, [0, 5], [2, 5], [4, 5], None]
    assert shards[1]["words"]["b"] == [[0, 4, 4.0, 1, 0], [0, 3, 3.0, 1, 0]]
    assert _merged(shards)["b"] == [[0, u, float(u), 1, 0] for u in (4, 3, 2, 1, 0)]
    assert shards[3]["words"]["\U0001f600"] == [[1, 3, None, 2, 0]]
    meta = index.meta("m", [index.shard_row(s) for s in shards], "demo")
    assert meta["shards"][1] == ["m/words/w1.json", "b", "b", 2]
    assert (meta["concepts"], meta["entries"], meta["units"]) == (5, 9, 9)


def test_search_indexes_merge_runs_mapped_from_files(tmp_path):
    """The site stage's workers write each layer's run of the word and class indexes to files
    (``Run.save``) and the main process maps them (``Run.load``): shards, counts and the
    whole class index are those of one index of every entry, made in memory."""
    import json

    from pipeline.site.search import ClassIndex, Run

    rng = np.random.default_rng(3)
    concepts = ["b", "B", "a", "\uffe0", "\U0001f600", "stripes", "Stripes", "dots"]
    words = {layer: [(concepts[c], layer, unit, None if c == 4 else float(rng.normal()),
                      rank, int(unit % 2) - 1)
                     for unit in range(40) for rank, c in enumerate(
                         rng.choice(len(concepts), 3, replace=False), 1)]
             for layer in (0, 1, 2)}
    whole = WordIndex(["v.avif"], shard_entries=7)
    whole.extend([e for layer in words.values() for e in layer])
    mapped = WordIndex(["v.avif"], shard_entries=7)
    for layer, entries in words.items():
        run = Run.load(WordIndex.run(entries).save(tmp_path / f"w{layer}"))
        assert isinstance(run.rows, np.memmap)  # on disk until read
        mapped.add(run)
    assert mapped.shards() == whole.shards() and len(mapped.shards()) > 10
    assert mapped.label_counts() == whole.label_counts()
    assert (mapped.units, len(mapped), len(mapped.concepts)) == (120, 360, len(concepts))
    assert mapped.ranked("a") == whole.ranked("a") and len(mapped.ranked("a")) > 10

    names = [f"class {c}" for c in range(6)]
    classes = {layer: [(int(c), float(rng.random()), layer, unit)
                       for unit in range(30) for c in rng.choice(6, 2, replace=False)]
               for layer in (0, 1, 2)}
    whole_c = ClassIndex(names, top=3)
    whole_c.extend([e for layer in classes.values() for e in layer])
    mapped_c = ClassIndex(names, top=3)
    for layer, entries in classes.items():
        mapped_c.add(Run.load(mapped_c.run(entries).save(tmp_path / f"c{layer}")))
    assert mapped_c.shards(8) == whole_c.shards(8)
    assert mapped_c.class_counts() == whole_c.class_counts()
    rows = [whole_c.shard_row(s) for s in whole_c.shards(8)]
    assert mapped_c.head("m", rows) == whole_c.head("m", rows)
    assert json.loads("".join(mapped_c.iter_json())) == whole_c.to_json()
    assert "".join(mapped_c.iter_json()) == json.dumps(whole_c.to_json(), separators=(",", ":"))


def test_model_page_words_by_layer(small_site: Path):
    from collections import Counter

    page = (small_site / SLUG / "index.html").read_text()
    assert "Words by layer" in page and 'href="words/">Search by word</a>' in page
    rows = re.findall(r'<tr><th><a href="(\d)/">Layer \d</a></th><td>(\d+) of (\d+)</td>'
                      r'<td class="atlas-layer-words">(.*?)</td></tr>', page)
    assert [r[0] for r in rows] == ["0", "1"]
    for layer, labelled, pages, cell in rows:
        units = _pages()[int(layer)]
        best = Counter(c[0]["concept"] for u, c in _expected_labels(int(layer)).items()
                       if u in units)
        common = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:8]
        shown = re.findall(r'<a href="words/\?word=([^"]*)"[^>]*>([^<]*)</a> <small>(\d+)</small>',
                           cell)
        assert [(c, str(n)) for c, n in common] == [(unescape(w), n) for _, w, n in shown]
        assert int(labelled) == sum(best.values()) and int(pages) == len(units)
    # the progression reads in words: colours and textures first, then shapes
    assert "stripes" in rows[0][3] or "red" in rows[0][3]
    assert "spiral" in rows[1][3] or "circle" in rows[1][3]
    assert "labels</th><td>demo · 46 concepts (fake word list) · 40 probe images · 308 units" \
        " labelled" in page
    nav = re.findall(r'<a href="([^"]*)"\s+class="md-nav__link', page)
    assert "words/" in nav


def test_atlas_without_labels_builds_as_before(tmp_path: Path):
    store = make_fake_atlas(tmp_path / "atlas", tiny_spec(**TINY), topk=3, n_examples=8,
                            vis_units=3, index_layers=[], labels=False)
    assert store.label_info() is None
    site = build.build_site(store, workers=1)
    f = json.loads((site / SLUG / "0" / "1" / "feature.json").read_text())
    assert f["labels"] == {"concept": [], "score": []} and f["labeler"] is None
    assert f["format_version"] == 15
    assert f["similar"]["unit"] == [] and f["quantiles"]["intervals"] == []
    schema = json.loads((site / "schema" / "feature.schema.json").read_text())
    _check(schema, f)
    assert json.loads((site / "models.json").read_text())["models"][0]["words"] is None
    assert not (site / SLUG / "words").exists()
    page = (site / SLUG / "0" / "1" / "index.html").read_text()
    assert "atlas-word" not in page and "labels" not in page.split('class="md-content__inner')[
        1].split('class="atlas-foot"')[0]
    model = (site / SLUG / "index.html").read_text()
    assert "Words by layer" not in model and "search by word" not in model.lower()
    assert "atlas-tile-word" not in (site / SLUG / "0" / "index.html").read_text()


# -- relations: similar units, quantile examples, layer maps ---------------------------------
def _expected_similar(unit: int) -> list[dict]:
    """What the fake wrote for ``unit`` of layer 0 (related to layers 0 and 1 of its model and
    to 2 layers of ``TRICKY_MODEL``), in the store's order: groups as written, -1 slots out."""
    spec = tiny_spec(**TINY)
    out = []
    for part in (fake_relations(0, spec, [0, 1]), fake_across(0, spec)):
        for g, layer in enumerate(part["similar_layers"].tolist()):
            for v, score in zip(part["similar_units"][unit, g].tolist(),
                                part["similar_scores"][unit, g].tolist(), strict=True):
                if v >= 0:
                    out.append({"model": str(part["model"]), "layer": layer, "unit": v,
                                "score": round(score, 4)})
    return out


def _feature(site: Path, layer: int, unit: int) -> dict:
    return json.loads((site / SLUG / str(layer) / str(unit) / "feature.json").read_text())


def _rows(cols: dict, keys: tuple[str, ...] | None = None) -> list[dict]:
    """feature.json's columns ``cols`` as one dict per entry (``keys``: these; default all
    but ``maps`` and ``similar``'s ``thumbs``, which are not columns)."""
    keys = keys or tuple(k for k in cols if k not in ("maps", "thumbs"))
    return [dict(zip(keys, row, strict=True))
            for row in zip(*(cols[k] for k in keys), strict=True)]


def test_feature_json_similar_units(small_site: Path):
    for unit in (0, 3, 5, 170):
        f = _feature(small_site, 0, unit)
        expected = _expected_similar(unit)
        # format 11: the feature's own model is null, no slug column when no unit has one
        assert "slug" not in f["similar"]
        assert set(f["similar"]["model"]) <= {None, TRICKY_MODEL}
        assert _rows(expand_record(f)["similar"], ("model", "layer", "unit", "score")) == \
            expected, unit
        groups = [(e["model"], e["layer"]) for e in expected]
        assert list(dict.fromkeys(groups)) == [(f["model"], 0), (f["model"], 1),
                                               (TRICKY_MODEL, 0), (TRICKY_MODEL, 1)]
        for key in dict.fromkeys(groups):  # best first within each group
            scores = [e["score"] for e in expected if (e["model"], e["layer"]) == key]
            assert scores == sorted(scores, reverse=True)
        assert unit not in [e["unit"] for e in expected if e["layer"] == 0
                            and e["model"] == f["model"]]
    assert len(_feature(small_site, 0, 3)["similar"]["unit"]) == len(_feature(small_site, 0, 0)[
        "similar"]["unit"]) - 2 * 4  # unit 3 has two empty slots in each of its 4 groups
    assert _feature(small_site, 1, 5)["similar"]["unit"] == []  # layer 1 was not related


def _intervals(f: dict) -> list[dict]:
    """feature.json's quantiles as they were before format 10: ``[{"interval", "examples":
    [example rows, with "maps" decoded]}]``."""
    q = expand_record(f)["quantiles"]  # format 11: images, a URL template, as a column
    maps = decode_maps(q["examples"]["maps"])
    rows = _rows(q["examples"])
    for row, m in zip(rows, maps, strict=True):
        row["maps"] = m
    return [{"interval": interval, "examples": [r for r in rows if r["interval"] == j]}
            for j, interval in enumerate(q["intervals"])]


def test_feature_json_quantiles(small_site: Path):
    from pipeline.index.results import load_layer_index

    index = load_layer_index(AtlasStore(small_site.parent), 0)
    for unit in (0, 1, 2, 7):
        f = _feature(small_site, 0, unit)
        edges = [e for e in index.quantile_edges[unit].tolist() if e == e]  # NaN out
        assert f["quantiles"]["intervals"] == [
            [float(f"{lo:.6g}"), float(f"{hi:.6g}")]
            for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
        assert len(f["quantiles"]["intervals"]) == {0: QUANTILES, 1: 3, 2: 0}.get(unit, QUANTILES)
        assert set(f["quantiles"]["examples"]) == {*f["top"], "interval"}  # as the top's
        step = f["quantiles"]["examples"]["maps"]["scale"]
        for j, q in enumerate(_intervals(f)):
            slots = [s for s in range(index.quantile_ids.shape[2])
                     if index.quantile_ids[unit, j, s] >= 0]
            assert [e["example"] for e in q["examples"]] == [
                int(index.quantile_ids[unit, j, s]) for s in slots]
            lo, hi = q["interval"]
            for e, s in zip(q["examples"], slots, strict=True):
                assert e["score"] == float(f"{index.quantile_scores[unit, j, s]:.6g}")
                assert lo <= e["score"] < hi
                assert e["image"] == f"../../examples/e{e['example']}.avif"
                assert (small_site / SLUG / "0" / str(unit) / e["image"]).resolve().is_file()
                # quantized to a byte: within half a step of the index's map
                assert np.abs(e["maps"] - index.quantile_maps[unit, j, s]).max() <= step / 2 + 1e-6
            scores = [e["score"] for e in q["examples"]]
            assert scores == sorted(scores, reverse=True)
    last = _intervals(_feature(small_site, 0, 0))[-1]["examples"]
    assert [e["id"] for e in last] == [TRICKY_ID] and last[0]["label"] == TRICKY_CLASS


def _section(page: str, cls: str) -> str:
    return page.split(f'<section class="{cls}">', 1)[1].split("</section>", 1)[0]


def test_feature_page_similar_units(small_site: Path):
    """The page holds the section's heading and a note; the units are the script's, drawn from
    feature.json's ``similar`` (tests/pages/test_browser.py checks them in Chromium), whose
    ``thumb`` names the visualization of each unit of the model with a page and one."""
    page = (small_site / SLUG / "0" / "0" / "index.html").read_text()
    expected = _expected_similar(0)
    similar = page.split('<section class="atlas-similar" data-shown="', 1)[1].split("</section>")[0]
    assert similar.startswith(f'{SIMILAR_SHOWN}">')
    assert f"{len(expected)} similar units, up to {SIMILAR_SHOWN} per group" in similar
    assert "atlas-sim-list" not in similar and "<img" not in similar and "r = " not in similar
    sim = _feature(small_site, 0, 0)["similar"]
    assert sim["thumbs"] == ["visualization.avif"]
    rows = _rows(sim)
    assert [(e["layer"], e["unit"]) for e in rows] == [(e["layer"], e["unit"]) for e in expected]
    for e, want in zip(rows, expected, strict=True):
        shown = (want["model"] == "vit_tiny_patch16_224" and e["unit"] in _pages()[e["layer"]]
                 and e["unit"] < VIS_UNITS)
        assert e["thumb"] == (0 if shown else None), e
    assert None in sim["thumb"] and 0 in sim["thumb"]


def test_feature_page_quantile_examples(small_site: Path):
    """The page holds the section's heading and a note; its rows are the script's, drawn from
    feature.json (tests/pages/test_browser.py checks them against it in Chromium)."""
    page = (small_site / SLUG / "0" / "0" / "index.html").read_text()
    assert page.index("atlas-hist") < page.index("atlas-quantiles")  # below the histogram
    opening = f'<section class="atlas-quantiles" data-shown="{QUANTILE_SHOWN}">'
    section = page.split(opening, 1)[1].split("</section>", 1)[0]
    f = _feature(small_site, 0, 0)
    assert len(f["quantiles"]["intervals"]) == QUANTILES
    assert f"{QUANTILES} score intervals from the mean up, up to {QUANTILE_SHOWN} examples" \
        in section and '<a href="feature.json">feature.json</a>' in section
    assert "atlas-q-row" not in page and "<figure" not in section  # no example in the page
    assert "atlas-heatmaps" not in page and "<canvas class=\"atlas-heat\"" not in page
    none = (small_site / SLUG / "0" / "2" / "index.html").read_text()
    assert "atlas-quantiles" not in none and "qmaps" not in none


def test_layer_map_json(small_site: Path):
    store = AtlasStore(small_site.parent)
    expected = store.layer_map(0)
    data = json.loads((small_site / SLUG / "0" / "map.json").read_text())
    assert data["format_version"] == 15 and data["layer"] == 0 and data["method"] == "umap"
    assert data["preservation"] == expected["preservation"] == MAP_PRESERVATION
    assert data["units"] == [p["unit"] for p in expected["units"]] == list(range(192))
    assert data["x"] == [p["x"] for p in expected["units"]]
    assert data["y"] == [p["y"] for p in expected["units"]]
    assert min(data["x"] + data["y"]) >= 0 and max(data["x"] + data["y"]) <= 1
    assert data["thumbs"] == ["visualization.avif", SECOND[0], "visualization-accent.avif"]
    assert data["thumb"] == [0 if u < VIS_UNITS else -1 for u in data["units"]]
    assert data["typical"] == [[t["unit"], t["size"]] for t in expected["typical"]]
    assert len(data["typical"]) == 8 and sum(n for _, n in data["typical"]) == 192
    assert not (small_site / SLUG / "1" / "map.json").exists()  # layer 1: not related
    page = (small_site / SLUG / "0" / "index.html").read_text()
    assert '<div class="atlas-map-view" data-src="map.json">' in page
    legend = unescape(re.sub(r"<[^>]+>", "", page.split('class="atlas-map-legend">')[1]
                             .split("</p>")[0]))
    assert "UMAP" in legend and "57%" in legend and "40 probe images" in legend
    assert "atlas-map" not in (small_site / SLUG / "1" / "index.html").read_text()


def test_model_page_progression(small_site: Path):
    page = (small_site / SLUG / "index.html").read_text()
    assert "Progression: typical units by layer" in page
    block = page.split('class="atlas-strips atlas-progression"')[1].split("\n</div>\n")[0]
    rows = re.findall(r'(?s)data-layer="(\d+)">(.*?)</div></div>', block)
    assert [layer for layer, _ in rows] == ["0"]  # layer 1 has no map
    typical = AtlasStore(small_site.parent).layer_map(0)["typical"]
    cells = re.findall(r'<a href="0/(\d+)/" title="([^"]*)" data-u="\d+">(<img src="([^"]*)")?',
                       rows[0][1])
    assert [int(u) for u, *_ in cells] == [t["unit"] for t in typical]
    for (u, title, _, src), t in zip(cells, typical, strict=True):
        assert f"typical of {t['size']} units" in title
        assert src == (f"0/{u}/visualization.avif" if int(u) < VIS_UNITS else "")


def test_feature_json_image_column_where_a_thumbnail_is_missing(small_site: Path):
    """Format 11 gives the thumbnails as one URL template (``images``) when every example has
    one; where one has none, the ``image`` column again, null for it."""
    from pipeline.site.data import AtlasView
    from pipeline.site.feature import FeatureWriter, SiteInfo

    atlas = AtlasView(AtlasStore(small_site.parent))
    info = SiteInfo.of(atlas, {0: list(range(192)), 1: list(range(VIS_UNITS))}, 2024, None)
    writer = FeatureWriter(info, atlas.layer(0), atlas.examples, atlas.thumbnails)
    whole = writer.record(0)
    missing = whole["top"]["example"][1]
    writer.thumbs = [None if n == missing else t for n, t in enumerate(writer.thumbs)]
    writer._images.clear()
    rec = writer.record(0)
    assert "images" not in rec["top"] and rec["top"]["image"][1] is None
    assert rec["top"]["image"][0] == f"../../examples/e{rec['top']['example'][0]}.avif"
    schema = json.loads((small_site / "schema" / "feature.schema.json").read_text())
    _check(schema, json.loads(json.dumps(rec)))
    _check(schema, json.loads(json.dumps(whole)))
    with pytest.raises(AssertionError):  # one of the two forms
        _check(schema, {**whole, "top": {k: v for k, v in whole["top"].items() if k != "images"}})
    assert expand_record(whole)["top"]["image"][1] == f"../../examples/e{missing}.avif"


def test_other_model_in_the_same_site_is_linked(small_site: Path):
    from pipeline.site.data import AtlasView
    from pipeline.site.feature import FeatureWriter, SiteInfo

    atlas = AtlasView(AtlasStore(small_site.parent))
    info = SiteInfo.of(atlas, {0: list(range(192)), 1: list(range(VIS_UNITS))}, 2024, None)
    info.site_models[TRICKY_MODEL] = "deit-other"
    writer = FeatureWriter(info, atlas.layer(0), atlas.examples, atlas.thumbnails)
    meta = yaml.load(writer.markdown(0).split("---")[1], Loader=yaml.CSafeLoader)
    assert meta == writer.meta(0)  # the Markdown source holds the page's data as it is
    sim = writer.record(0)["similar"]
    other = [e for e in _rows(sim) if e["model"] == TRICKY_MODEL]
    assert other and all(e["slug"] == "deit-other" and e["thumb"] is None for e in other)

    # when the other model was built in this site, only its units with a page get a slug
    first = next(e for e in atlas.layer(0).similar_to(0) if e["model"] == TRICKY_MODEL)
    info.site_pages[TRICKY_MODEL] = {first["layer"]: [first["unit"]]}
    writer = FeatureWriter(info, atlas.layer(0), atlas.examples, atlas.thumbnails)
    sim = writer.record(0)["similar"]
    assert len(sim["slug"]) == len(sim["model"])  # a column again: one unit has a slug
    linked = [e for e in _rows(sim) if e["slug"]]
    assert [(e["layer"], e["unit"]) for e in linked] == [(first["layer"], first["unit"])]


def test_atlas_without_relations_builds_as_before(tmp_path: Path):
    store = make_fake_atlas(tmp_path / "atlas", tiny_spec(**TINY), topk=3, n_examples=8,
                            vis_units=4, index_layers=[0], relations=False)
    assert store.relations_info() is None and store.similar(0) == {}
    site = build.build_site(store, workers=1)
    schema = json.loads((site / "schema" / "feature.schema.json").read_text())
    for unit in (0, 1, 5):
        f = _feature(site, 0, unit)
        _check(schema, f)
        assert f["similar"]["unit"] == [] and f["quantiles"]["intervals"] == [] and f["top"]["id"]
        assert "model" not in f["similar"] and expand_record(f)["similar"]["model"] == []
        page = (site / SLUG / "0" / str(unit) / "index.html").read_text()
        assert "atlas-similar" not in page and "atlas-quantiles" not in page
        assert '"quant"' not in page and 'class="atlas-topk"' in page  # its heatmaps: script
    assert not list(site.rglob("map.json"))
    assert "atlas-map" not in (site / SLUG / "0" / "index.html").read_text()
    assert "Progression" not in (site / SLUG / "index.html").read_text()


def _script_refs(page: Path) -> list[tuple[str, str, str]]:
    """The images a feature page's ``feature.json`` names (as ``_refs`` gives them): its top
    and quantile examples' thumbnails, of which the page's script shows the first
    ``QUANTILE_SHOWN`` of each interval."""
    record = page.parent / "feature.json"
    if not record.is_file():
        return []
    rec = expand_record(json.loads(record.read_text()))
    urls = rec["top"]["image"] + rec["quantiles"]["examples"]["image"]
    return [("img", "src", url) for url in urls if url]


def crawl(site: Path, site_url: str | None = None) -> tuple[int, int]:
    """Every link and image of every page of ``site`` (but 404.html) checked: relative, inside
    the site, resolving to a file (a folder: its index.html); with ``site_url`` (the site's
    own address, ending in ``/``), absolute links under it too (canonical links, permalinks).
    Returns (pages, links checked)."""
    pages = _html_pages(site)
    checked = 0
    for page in pages:
        for tag, _, url in _refs(page) + _script_refs(page):
            parts = urlsplit(url)
            own = site_url is not None and url.startswith(site_url)
            if not own and (parts.scheme in ("http", "https", "mailto") or url.startswith("#")):
                assert tag == "a", f"{page}: <{tag}> loads {url} from outside the site"
                continue
            assert own or not url.startswith("/"), f"{page}: absolute link {url}"
            where = site if own else page.parent
            path = urlsplit(url[len(site_url):]).path if own else parts.path
            target = (where / unquote(path)).resolve()
            if path.endswith("/") or not path or target.is_dir():
                target = target / "index.html"
            assert target.is_file(), f"{page}: broken link {url}"
            assert site.resolve() in target.parents, f"{page}: {url} leaves the site"
            checked += 1
    return len(pages), checked


def test_every_internal_link_and_image_resolves(small_site: Path):
    pages, checked = crawl(small_site)
    assert pages > 300 and checked > 5000


def test_no_request_leaves_the_site(small_site: Path):
    external = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)
    for page in _html_pages(small_site):
        for tag, _, url in _refs(page):
            if tag != "a":
                assert not re.match(r"(?:https?:)?//", url), f"{page}: <{tag}> {url}"
    for css in small_site.rglob("*.css"):
        assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", css.read_text()), css
        assert "@import" not in css.read_text(), css
    assert not external.search((small_site / "index.html").read_text().replace(
        'href="https://', "").replace("href='https://", ""))


def test_dataset_strings_are_escaped_everywhere(small_site: Path):
    raw = [TRICKY_CLASS, '<b>"', "<i>y</i>", 'z="q"', TRICKY_CONCEPT, '<em>"', "& 'dots'",
           TRICKY_MODEL, "<script>alert", "& 'co'"]
    for page in _html_pages(small_site):
        text = page.read_text(encoding="utf-8")
        for needle in raw:
            assert needle not in text, f"{page} holds raw {needle!r}"
    feature = _Strings()
    feature.feed((small_site / SLUG / "0" / "0" / "index.html").read_text())
    assert TRICKY_CLASS in feature.strings and TRICKY_ID in feature.strings
    # (the similar units, another model's name among them, are the script's, written as text:
    # tests/pages/test_browser.py, test_feature_page_similar_and_quantiles)
    page = (small_site / SLUG / "0" / "0" / "index.html").read_text(encoding="utf-8")
    alts = re.findall(r'<div class="atlas-topk">\n<figure><img src="[^"]*" alt="([^"]*)">', page)
    assert alts == [""]  # the caption beside it says its id: the image's alt adds nothing
    # the layer grid's data holds them as they are (atlas.js writes them as text)
    assert TRICKY_CLASS in _grid(small_site, 0)["classes"]
    # recipe name (tab label, alt text, recipe row) and recipe parameters (the <pre>)
    page = (small_site / SLUG / "0" / "0" / "index.html").read_text(encoding="utf-8")
    content = page.split('class="md-content__inner')[1].split("</article>")[0]  # not the theme's
    for needle in (TRICKY_RECIPE, "<&>", "<script>", "</pre><script>"):
        assert needle not in content
    assert TRICKY_RECIPE in feature.strings
    # the recipes' fields are feature.json's, written in as text by the page's script (Chromium:
    # tests/pages/test_browser.py); the page holds none of them
    assert "&lt;/pre&gt;" not in page and '"note": ' not in page
    pres = re.findall(r"<pre>(.*?)</pre>", content, re.S)
    assert len(pres) == 3 and all("feature.json" in p for p in pres)


def test_feature_pages_out_of_nav_and_search(small_site: Path):
    search = json.loads((small_site / "search" / "search_index.json").read_text())
    locations = [d["location"] for d in search["docs"]]
    assert any(loc.startswith("method/") for loc in locations)
    assert not [loc for loc in locations if re.match(rf"{SLUG}/\d+/\d+/", loc)]
    home = (small_site / "index.html").read_text()
    nav = re.findall(r'<a href="([^"]*)"\s+class="md-nav__link', home)
    assert f"{SLUG}/0/" in nav and f"{SLUG}/1/" in nav and "method/" in nav
    assert not [url for url in nav if re.match(rf"{SLUG}/\d+/\d+/", url)]


def test_feature_page_content_and_size(small_site: Path):
    page = (small_site / SLUG / "0" / "5" / "index.html").read_text()
    assert 'href="../4/" data-key="k"' in page and 'href="../6/" data-key="j"' in page
    assert 'href="../../1/5/" data-key="l"' in page
    assert f"@misc{{vitatlas:{SLUG}:L0:U5" in page
    assert "weights random(seed=0), layer 0, unit 5" in page and f"version {ATLAS_VERSION}" in page
    assert "atlas-heatmaps" not in page  # the heatmaps: feature.json's, drawn by the script
    assert "atlas-heat-controls" not in page  # the script writes the toggle: no dead button
    assert "md-nav" not in page  # lean template: no theme nav
    last = (small_site / SLUG / "1" / str(VIS_UNITS - 1) / "index.html").read_text()
    assert 'data-key="j"' not in last and 'href="../../0/149/" data-key="h"' in last
    sizes = [p.stat().st_size for p in (small_site / SLUG).glob("*/*/index.html")]
    assert max(sizes) < 40_000
    assert "atlas-similar" in page and "atlas-quantiles" in page  # measured with relations


def test_feature_page_lean_header(small_site: Path):
    """Feature pages carry Material's header with its icons drawn by atlas.css (an empty
    <svg> each), the palette script as a shared file, and no Material footer; the other pages
    keep Material's partials as they are."""
    import material

    page = (small_site / SLUG / "0" / "5" / "index.html").read_text()
    head = page.split("<header", 1)[1].split("</header>", 1)[0]
    assert "<path" not in head and head.count('<svg class="atlas-i-') == 1  # the logo
    # the palette's form: written by its shared script from the tag's options
    assert ('<script src="../../../assets/atlas-palette.js" data-p=\'[["(prefers-color-scheme: '
            'light)", "default", "indigo", "indigo", "Dark mode", "weather-night"], '
            '["(prefers-color-scheme: dark)", "slate", "indigo", "indigo", "Light mode", '
            '"weather-sunny"]]\'></script>') in head
    palette = (small_site / "assets" / "atlas-palette.js").read_text()
    theirs = (Path(material.__file__).parent / "templates/partials/palette.html").read_text()
    for attr in ('class="md-header__option"', 'data-md-component="palette"', 'class="md-option"',
                 'class="md-header__button md-icon"', 'type="radio"', 'name="__palette"',
                 "data-md-color-media", "data-md-color-scheme", "data-md-color-primary",
                 "data-md-color-accent", 'aria-hidden="true"', "hidden>"):
        assert attr in theirs and attr in palette, attr
    assert "md-search__input" not in head and 'data-md-component="palette"' not in head
    # the search's button and dialog: written by a shared script where its tag stands, its
    # words (the theme's, in the site's language) from the tag
    assert ('<script src="../../../assets/atlas-search.js" data-t=\'["Search", "Search", '
            '"Clear", "Initializing search"]\'></script>') in head
    search = (small_site / "assets" / "atlas-search.js").read_text()
    # Material's settings: a shared file, written by the build from Material's own block
    assert '<script src="../../../assets/atlas-config.js"></script>\n<script src="../../../' \
        'assets/javascripts/bundle.' in page and "__config" not in page
    home_settings = json.loads(re.search(r'<script id="__config" type="application/json">'
                                         r"(.*?)</script>", home_page := (
                                             small_site / "index.html").read_text()).group(1))
    config_js = (small_site / "assets" / "atlas-config.js").read_text()
    assert "{var c=" + json.dumps(home_settings, separators=(",", ":"), sort_keys=True) + "," \
        in config_js and home_page.count("atlas-config") == 0
    assert "md-search__input" in search and 'data-md-component="search-result"' in search
    theirs = (Path(material.__file__).parent / "templates/partials/search.html").read_text()
    theirs = re.sub(r"(?s)\{% if \"search\.(share|suggest)\" in features %\}.*?\{% endif %\}", "",
                    theirs)  # features this site does not turn on
    for attr in re.findall(r'(?:class|data-md-component|role|name|type)="[^"{]*"', theirs):
        assert attr in search, f"update site/assets/atlas-search.js: {attr}"
    assert "md-footer" not in page and "__tabbed_" not in page and "__drawer\"><svg" not in page
    assert page.count("<svg") == 2 + page.count('role="img"')  # the logo, back to top, hist
    css = (small_site / "assets" / "atlas.css").read_text()
    names = re.findall(r'<svg class="atlas-i-([a-z-]+)"', page + search) + ["weather-night",
                                                                            "weather-sunny"]
    assert {"magnify", "arrow-left", "close", "logo"} <= set(names)
    for name in names:
        assert f".atlas-i-{name} {{ --atlas-i: url(" in css, name
    home = (small_site / "index.html").read_text()
    assert "atlas-i-" not in home and "md-footer" in home and "<path" in home
    # the shared palette script is Material's, for the Material installed
    theirs = Path(material.__file__).parent / "templates/partials/javascripts/palette.html"
    script = re.search(r"<script>(.*)</script>", theirs.read_text()).group(1)
    ours = (small_site / "assets" / "atlas-palette.js").read_text()
    assert ours.rstrip("\n").endswith(script), "update site/assets/atlas-palette.js"
    # and so is the first script, its scope the site root (Material's base_url) by the file's URL
    assert '<script src="../../../assets/atlas-scope.js"></script>' in page
    assert "__md_scope" not in page and "__md_scope=new URL(" in home
    theirs = Path(material.__file__).parent / "templates/partials/javascripts/base.html"
    script = re.search(r"<script>(.*)</script>", theirs.read_text()).group(1).replace(
        '"{{ config.extra.scope | d(base_url) }}",location', '"..",document.currentScript.src')
    ours = (small_site / "assets" / "atlas-scope.js").read_text()
    assert ours.rstrip("\n").endswith(script), "update site/assets/atlas-scope.js"


def test_rebuild_replaces_and_failed_build_keeps_old_site(small_site: Path, monkeypatch):
    store = AtlasStore(small_site.parent)
    marker = small_site / "marker.txt"
    marker.write_text("old")

    def broken(*args, **kwargs):
        raise RuntimeError("mkdocs failed")

    monkeypatch.setattr(build, "run_mkdocs", broken)
    with pytest.raises(RuntimeError):
        build.build_site(store)
    assert marker.is_file() and (small_site / SLUG / "0" / "0" / "index.html").is_file()
    assert not list(small_site.parent.glob(".site.*"))
    monkeypatch.undo()
    assert build.build_site(store, shard_entries=SHARD_ENTRIES) == small_site
    assert not marker.exists() and (small_site / SLUG / "0" / "0" / "feature.json").is_file()
    assert not list(small_site.parent.glob(".site.*"))


def test_handbook_builds_alone_in_strict_mode(tmp_path: Path):
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config

    cfg = load_config(config_file=str(mkdocs_yml()), site_dir=str(tmp_path / "hb"),
                      strict=True)
    mkdocs_build(cfg)
    assert (tmp_path / "hb" / "data-format" / "index.html").is_file()
    assert (tmp_path / "hb" / "schema" / "feature.schema.json").is_file()
    assert not (tmp_path / "hb" / "overrides").exists()


@pytest.mark.parametrize("value", ["plain", 'q"b\\s', "x\ny\tz\r", "ü€😀\x00\x7f\x85\u2028",
                                   TRICKY_CLASS, TRICKY_ID, "#: - ? {}[]|>*&!%@`", ""])
def test_yaml_scalars_round_trip(value: str):
    assert yaml.load(markup.yaml_str(value), Loader=yaml.CSafeLoader) == value
    packed = markup.pack("1.5", value, value)
    assert yaml.load(markup.yaml_str(packed), Loader=yaml.CSafeLoader).split(
        markup.SEP, 2)[2] == value


def test_script_json_cannot_close_its_script():
    s = markup.script_json({"x": "</script><script>alert(1)</script><!--"})
    assert "</" not in s and "<!--" not in s and json.loads(s)["x"].startswith("</script>")


def test_urls():
    assert model_slug("vit_base_patch16_clip_quickgelu_224.openai") == (
        "vit_base_patch16_clip_quickgelu_224.openai")
    assert model_slug("a/b c<d>") == "a-b-c-d" and model_slug("assets") == "assets-model"
    assert model_slug("..") == "model"
    assert relative("m/3/17/", "m/3/16") == "../17/" and relative("m/", "m/3") == "../"


def test_atlas_without_results_builds_an_empty_site(tmp_path: Path):
    spec = tiny_spec(**TINY)
    store = AtlasStore(tmp_path / "atlas")
    store.init({"model": spec.name, "dataset": "synthetic:8"}, spec.to_dict(), "hub")
    site = build.build_site(store, tmp_path / "out" / "site")
    slug = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"  # hub weights: timm's name and tag
    assert (site / "index.html").is_file() and (site / slug / "index.html").is_file()
    assert json.loads((site / "models.json").read_text())["models"][0]["layers"] == []
    assert not (site / SLUG / "classes.json").exists()


def test_site_command_does_not_load_torch():
    """``vit-atlas site`` / ``serve`` read what the atlas holds: no torch or timm start-up."""
    import subprocess
    import sys

    code = ("import sys, pipeline.cli, pipeline.site.build, pipeline.site.serve; "
            "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"


# -- canonical addresses ----------------------------------------------------------------------
def _canonical(page: Path) -> str | None:
    found = re.search(r'<link rel="canonical" href="([^"]*)"', page.read_text(encoding="utf-8"))
    return None if found is None else unescape(found.group(1))


def _cite(page: Path) -> tuple[str, str]:
    """(the Cite block's paragraph, its BibTeX entry) as text."""
    html = page.read_text(encoding="utf-8").split('class="atlas-cite"')[1].split("</section>")[0]
    bib = unescape(html.split('<pre class="atlas-bibtex">')[1].split("</pre>")[0])
    return unescape(re.sub(r"<[^>]+>", "", html.split("<pre")[0])), bib


def test_site_url_gives_canonical_links_and_absolute_permalinks(tmp_path: Path):
    from pipeline.store import atomic_write_json

    store = make_fake_atlas(tmp_path / "atlas", tiny_spec(**TINY), topk=3, n_examples=8,
                            vis_units=3, index_layers=[0])
    root = "https://example.org/atlas/"
    site = build.build_site(store, workers=1, site_url=root.rstrip("/"))
    feature = site / SLUG / "0" / "1" / "index.html"
    url = f"{root}{SLUG}/0/1/"
    assert _canonical(feature) == url
    for page, path in [("index.html", ""), ("method/index.html", "method/"),
                       (f"{SLUG}/index.html", f"{SLUG}/"), (f"{SLUG}/0/index.html", f"{SLUG}/0/"),
                       (f"{SLUG}/words/index.html", f"{SLUG}/words/")]:
        assert _canonical(site / page) == root + path, page
    text, bib = _cite(feature)
    assert f"Permalink: {url}" in text and f"howpublished = {{\\url{{{url}}}}}" in bib
    record = json.loads((site / SLUG / "0" / "1" / "feature.json").read_text())
    assert record["permalink"] == url and record["site_version"] is None
    assert (site / "sitemap.xml").is_file()

    # the URL the atlas was built with (build --site-url) is kept; "" builds without one
    manifest = store.manifest()
    manifest["config"]["site_url"] = "https://mirror.example.net/a/"
    atomic_write_json(store.manifest_path, manifest)
    site = build.build_site(store, workers=1)
    assert _canonical(feature) == f"https://mirror.example.net/a/{SLUG}/0/1/"
    site = build.build_site(store, workers=1, site_url="")
    assert [p for p in _html_pages(site) if _canonical(p) is not None] == []
    text, bib = _cite(feature)
    assert "no canonical address" in text and f"{SLUG}/0/1/" in text
    assert "\\url" not in bib and "without a canonical address" in bib
    record = json.loads((site / SLUG / "0" / "1" / "feature.json").read_text())
    assert record["permalink"] == f"{SLUG}/0/1/"
    with pytest.raises(AtlasError, match="absolute"):
        build.build_site(store, workers=1, site_url="example.org/atlas")


def test_site_url_option_on_build_and_site():
    from pipeline.cli import build_parser, resolve_config

    parser = build_parser()
    args = vars(parser.parse_args(["build", "--site-url", "https://example.org/x"]))
    assert resolve_config(args).runtime.site_url == "https://example.org/x/"
    assert parser.parse_args(["site", "--site-url", "https://example.org/x/"]).site_url
    assert parser.parse_args(["site"]).site_url is None
    with pytest.raises(AtlasError):
        resolve_config(vars(parser.parse_args(["build", "--site-url", "/x/"])))
