"""The built site in a real headless Chromium, served over HTTP from the root and a sub-path."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator

import pytest

from pipeline.site import fidelity, recognisability, serving
from pipeline.site.feature import QUANTILE_SHOWN, SIMILAR_SHOWN
from pipeline.site.markup import num
from pipeline.store import AtlasStore
from pipeline.testing.fake import (
    JUDGE,
    TRICKY_CLASS,
    TRICKY_CONCEPT,
    TRICKY_ID,
    TRICKY_MODEL,
    TRICKY_NOTE,
    TRICKY_RECIPE,
)
from pipeline.testing.fake import fidelity as fake_fidelity
from tests.pages.test_site import (
    SECOND,
    SLUG,
    VIS_UNITS,
    _expected_labels,
    _expected_similar,
    _merged,
    _pages,
    _word_index,
    build_small_site,
)

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[str]:
    """The site served at ``/sub/site/`` of a local server; yields the server's base URL."""
    site = build_small_site(tmp_path_factory.mktemp("site"))
    www = tmp_path_factory.mktemp("www")
    (www / "sub").mkdir()
    (www / "sub" / "site").symlink_to(site, target_is_directory=True)
    (www / "site").symlink_to(site, target_is_directory=True)
    with serving(www) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    # a missing browser is a set-up error, not a reason to skip
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run `bash scripts/setup.sh --test`"

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-background-networking", "--disable-gpu",
            "--disable-component-update", "--no-first-run"])
        yield b
        b.close()


@contextlib.contextmanager
def recording_page(browser, served: str, height: int = 2400):
    """A page that records console errors and every request it makes; on leaving, asserts
    that there were no errors and that no request left ``served``."""
    context = browser.new_context(viewport={"width": 1280, "height": height})
    pg = context.new_page()
    pg.errors, pg.requests = [], []
    pg.on("console", lambda m: m.type == "error" and pg.errors.append(m.text))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("request", lambda r: pg.requests.append(r.url))
    try:
        yield pg
        assert pg.errors == []
        assert [u for u in pg.requests if not u.startswith(served)] == []
    finally:
        context.close()


@pytest.fixture
def page(browser, served):
    with recording_page(browser, served) as pg:
        yield pg


def _images_loaded(pg) -> tuple[int, list[str]]:
    """(number of images, those that failed), once every image (lazy ones too) settled,
    the quantile rows' and similar units' too (the page's script adds them after fetching
    feature.json)."""
    pg.wait_for_load_state("load")
    pg.wait_for_function("""() => [['.atlas-quantiles', '.atlas-q-note'],
                                   ['.atlas-similar', '.atlas-sim-note']].every(([s, n]) => {
        const q = document.querySelector(s), note = q && q.querySelector(n);
        return !q || q.hasAttribute('data-failed') || !note || note.hidden; })""")
    pg.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    pg.wait_for_function("Array.from(document.images).every(i => i.complete)")
    broken = pg.evaluate("""() => Array.from(document.images)
        .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)""")
    return pg.evaluate("document.images.length"), broken


@pytest.mark.parametrize("prefix", ["/site", "/sub/site"])
def test_feature_page_in_browser(page, served, prefix):
    base = f"{served}{prefix}"
    page.goto(f"{base}/{SLUG}/0/0/")
    page.wait_for_selector(".atlas-heat-controls:not([hidden])")  # the quantile rows drawn
    count, broken = _images_loaded(page)
    # 3 recipes x (image + map) + top-6 thumbnails + quantile examples + similar units' images
    quantile = _quantiles_shown(0)
    assert count == 3 + 3 + 6 + quantile + _similar_images(0) and broken == []

    # strings from the dataset are text, never markup
    assert page.locator(".atlas-label").first.text_content() == TRICKY_CLASS
    assert page.locator(".atlas-id").first.text_content() == TRICKY_ID
    assert page.locator(".atlas-label *, .atlas-id *, .atlas-classes span *").count() == 0
    assert page.locator(".atlas-classes li span").first.text_content() == TRICKY_CLASS

    # heatmaps: off by default (the images as they are); button and key; turned on, they
    # are drawn from feature.json (fetched once, for the quantile rows), a canvas over each
    # example
    heat = page.locator("canvas.atlas-heat").first
    assert not heat.is_visible() and not page.locator(".atlas-legend").is_visible()
    assert len([u for u in page.requests if u.endswith("feature.json")]) == 1
    assert page.get_attribute(".atlas-heat-toggle", "aria-pressed") == "false"
    page.click(".atlas-heat-toggle")
    assert heat.is_visible()
    assert page.get_attribute(".atlas-heat-toggle", "aria-pressed") == "true"
    page.wait_for_selector(".atlas-heat-controls[data-heat=ready]")
    assert len([u for u in page.requests if u.endswith("feature.json")]) == 1  # not again
    painted = page.evaluate("""() => Array.from(document.querySelectorAll('canvas.atlas-heat'))
        .filter(c => c.width === 4 && c.height === 4).length""")
    assert painted == 6 + quantile
    assert page.locator(".atlas-legend-hi").inner_text() != ""
    _check_overlays_decode(page)
    page.keyboard.press("m")
    assert not heat.is_visible()
    assert page.locator(".atlas-id").first.get_attribute("title") == TRICKY_ID  # cut: on hover

    # cite block: built without a site URL, it says so; never the address in the address bar
    assert "no canonical address" in page.locator(".atlas-no-canonical").inner_text()
    assert page.locator(".atlas-permalink").inner_text() == f"{SLUG}/0/0/"
    bib = page.locator(".atlas-bibtex").inner_text()
    assert "\\url" not in bib and served not in bib and "without a canonical address" in bib
    assert page.locator("link[rel=canonical]").count() == 0

    # next / previous unit and layer, by link and by key; the keys' line is the script's
    assert page.locator(".atlas-foot .atlas-keys kbd").all_text_contents() == [
        "j", "k", "h", "l", "[", "]", "u", "m", "a", "/"]
    assert page.locator(".atlas-foot").inner_text().startswith(
        "Keys: j/k next/previous unit · h/l or [/] previous/next layer · u layer page")
    page.click("a[data-key=j]")
    page.wait_for_url(f"{base}/{SLUG}/0/1/")
    page.keyboard.press("k")
    page.wait_for_url(f"{base}/{SLUG}/0/0/")
    page.keyboard.press("]")
    page.wait_for_url(f"{base}/{SLUG}/1/0/")
    # layer 1: no index; 3 images (the accentuation's too), 2 attribution maps
    assert _images_loaded(page) == (5, [])
    page.keyboard.press("h")
    page.wait_for_url(f"{base}/{SLUG}/0/0/")

    # header search: layer/unit, a unit without a page, and class search
    page.fill(".md-search__input", "1/7")
    page.press(".md-search__input", "Enter")
    page.wait_for_url(f"{base}/{SLUG}/1/7/")
    page.fill(".md-search__input", f"1/{VIS_UNITS + 5}")
    page.press(".md-search__input", "Enter")
    page.wait_for_function("document.querySelector('.atlas-search-msg').textContent.length > 0")
    assert "no page" in page.locator(".atlas-search-msg").inner_text()
    page.fill(".md-search__input", "cat")
    page.wait_for_selector(".atlas-search-results li")
    assert page.locator(".atlas-search-word").count() == 0  # no concept starts with "cat"
    assert page.locator(".atlas-search-class b").first.text_content() == TRICKY_CLASS
    page.locator(".atlas-search-class a").first.click()
    page.wait_for_url(re.compile(rf"{re.escape(base)}/{SLUG}/0/\d+/$"))
    assert _images_loaded(page)[1] == []

    # up to the layer page, then home, through relative links
    page.keyboard.press("u")
    page.wait_for_url(f"{base}/{SLUG}/0/")
    page.go_back()
    page.click("a.md-logo")
    page.wait_for_url(f"{base}/")


def _check_overlays_decode(page) -> None:
    """The page's JS decodes feature.json's maps as Python encodes them: each top example's
    overlay is painted from its values on the scale shared with the quantile examples shown
    (the colormap's brightness rises with the level), and ``atlasDecodeMaps`` gives the values
    ``assets.decode_maps`` gives."""
    import numpy as np

    from pipeline.site.assets import decode_maps, heatmap_scale

    record = page.evaluate("() => fetch('feature.json').then(r => r.json())")
    top = decode_maps(record["top"]["maps"])
    q = record["quantiles"]["examples"]
    firsts = [n for n, j in enumerate(q["interval"])
              if q["interval"][:n].count(j) < QUANTILE_SHOWN]
    lo, hi = heatmap_scale(np.concatenate([top.reshape(-1),
                                           decode_maps(q["maps"])[firsts].reshape(-1)]))
    levels = np.rint((top.reshape(-1) - lo) / (hi - lo) * 255).astype(np.int64)
    k, rows, cols = top.shape
    pixels = np.array(page.evaluate("""() => Array.from(document.querySelectorAll(
        '.atlas-topk canvas.atlas-heat')).map(c => Array.from(
        c.getContext('2d').getImageData(0, 0, c.width, c.height).data))"""), np.int64)
    assert pixels.shape == (k, rows * cols * 4)
    bright = pixels.reshape(-1, 4)[:, :3].sum(1)
    order = np.argsort(levels, kind="stable")
    assert np.all(np.diff(bright[order]) >= 0) and len(set(levels.tolist())) > 2
    assert bright[levels.argmax()] == 252 + 255 + 164 and bright[levels.argmin()] <= 4 + 3
    for enc in (record["top"]["maps"], record["quantiles"]["examples"]["maps"]):
        got = np.array(page.evaluate("e => Array.from(window.atlasDecodeMaps(e))", enc))
        assert np.allclose(got, decode_maps(enc).reshape(-1), rtol=1e-6, atol=1e-6)


def _quantiles_shown(unit: int) -> int:
    """Quantile examples the feature page of ``unit`` (layer 0) shows, from its feature.json."""
    import json

    site = build_small_site(None)
    f = json.loads((site / SLUG / "0" / str(unit) / "feature.json").read_text())
    which = f["quantiles"]["examples"]["interval"]
    return sum(min(QUANTILE_SHOWN, which.count(j)) for j in range(len(f["quantiles"]["intervals"])))


MODEL = "vit_tiny_patch16_224"  # the fake atlas's model name (its pages: SLUG)


def _shown_similar(unit: int) -> list[list[dict]]:
    """The similar units the page of ``unit`` (layer 0) shows: per group, best first."""
    found = _expected_similar(unit)
    groups = [[e for e in found if e["model"] == MODEL and e["layer"] == 0],
              [e for e in found if e["model"] == MODEL and e["layer"] != 0],
              [e for e in found if e["model"] != MODEL]]
    return [sorted(g, key=lambda e: -e["score"])[:SIMILAR_SHOWN] for g in groups]


def _similar_images(unit: int) -> int:
    """Thumbnails among them: units of this model with a page and a visualization."""
    return sum(1 for g in _shown_similar(unit)[:2] for e in g
               if e["unit"] in _pages()[e["layer"]] and e["unit"] < VIS_UNITS)


def test_feature_page_similar_and_quantiles(page, served):
    base = f"{served}/sub/site"
    page.goto(f"{base}/{SLUG}/0/0/")
    groups = _shown_similar(0)
    page.wait_for_selector(".atlas-similar[data-drawn]")  # drawn from feature.json
    assert not page.locator(".atlas-sim-note").is_visible()
    lists = page.locator(".atlas-sim-list")
    assert lists.count() == 3
    assert [h.split(" ")[0] for h in page.locator(".atlas-similar h3").all_inner_texts()] == [
        "Same", "Other", "Other"]
    for g, expected in enumerate(groups):
        items = page.locator(f".atlas-sim-list[data-group='{g}'] > *")
        assert items.count() == len(expected)
        scores = [t.replace("r = ", "") for t in
                  page.locator(f".atlas-sim-list[data-group='{g}'] > * > small")
                  .all_text_contents()]
        assert scores == [num(e["score"], 3) for e in expected]  # as Python writes it
        captions = page.locator(f".atlas-sim-list[data-group='{g}'] > * > span:not(.atlas-novis)")
        assert captions.all_text_contents() == [
            f"unit {e['unit']}" if g == 0 else f"L{e['layer']} · unit {e['unit']}" if g == 1
            else f"{TRICKY_MODEL} · L{e['layer']} · unit {e['unit']}" for e in expected]
        for e, item in zip(expected, items.all(), strict=True):
            linked = g < 2 and e["unit"] in _pages()[e["layer"]]
            assert item.evaluate("e => e.tagName") == ("A" if linked else "SPAN")
            src = item.locator("img").get_attribute("src") if item.locator("img").count() else ""
            if linked:
                href = f"../../../{SLUG}/{e['layer']}/{e['unit']}/"  # from the site's root
                assert item.get_attribute("href") == href
                assert src == (href + "visualization.avif" if e["unit"] < VIS_UNITS else "")
            else:
                assert src == "" and item.get_attribute("title") == "no page in this site"
    assert page.locator(".atlas-sim-list img").count() == _similar_images(0) > 0
    # another model not in this site: its name as text, no link, no markup made of it
    other = page.locator(".atlas-sim-list[data-group='2'] > *")
    assert other.first.evaluate("e => e.tagName") == "SPAN"
    assert other.first.locator("span:not(.atlas-novis)").text_content().startswith(
        TRICKY_MODEL + " · L")
    assert page.locator(".atlas-similar script, .atlas-similar b").count() == 0
    assert page.locator(".atlas-sim-list[data-group='2'] a").count() == 0
    # layer 1 units without a page: text; those with a page: links that work
    off = [e for e in groups[1] if e["unit"] not in _pages()[1]]
    assert page.locator(".atlas-sim-list[data-group='1'] > span").count() == len(off)
    target = groups[1][0] if groups[1][0]["unit"] in _pages()[1] else next(
        e for e in groups[1] if e["unit"] in _pages()[1])
    page.locator(f".atlas-sim-list[data-group='1'] a[href$='/1/{target['unit']}/']").click()
    page.wait_for_url(f"{base}/{SLUG}/1/{target['unit']}/")
    page.go_back()
    best = groups[0][0]
    page.locator(".atlas-sim-list[data-group='0'] > a").first.click()
    page.wait_for_url(f"{base}/{SLUG}/0/{best['unit']}/")
    assert page.locator("h1 small").inner_text() == f"layer 0 · unit {best['unit']}"
    # quantile examples: drawn from feature.json, one row per interval, highest first, each
    # with the interval's first QUANTILE_SHOWN examples; heatmaps follow the toggle
    page.goto(f"{base}/{SLUG}/0/0/")
    page.wait_for_selector(".atlas-heat-controls:not([hidden])")
    assert page.locator(".atlas-q-row").count() == 8
    assert not page.locator(".atlas-q-note").is_visible()
    values = [0.0, 1.0, -2.5, 0.0625, 0.0703125, 1e-05, 0.00012345, 123.456, 9999.7,
              12345.6, -0.000123456, 3.14159e-09, 2.5e+17, 0.015625, -0.015625, 1.0625,
              1.0635, 0.00015625, 2.5e-05, 99995.0, 12.345]
    assert page.evaluate("v => v.map(window.atlasNum)", values) == [num(v) for v in values]
    record = page.evaluate("() => fetch('feature.json').then(r => r.json())")
    q, ex = record["quantiles"], record["quantiles"]["examples"]
    rows = page.evaluate("""() => Array.from(document.querySelectorAll('.atlas-q-row')).map(
        r => [r.querySelector('span').textContent, r.querySelector('span').title,
              Array.from(r.querySelectorAll('figure')).map(f => [
                  f.querySelector('img') ? f.querySelector('img').getAttribute('src') : '',
                  f.querySelector('img') ? f.querySelector('img').alt
                                         : f.querySelector('.atlas-ex-img').title,
                  f.querySelector('figcaption').textContent])])""")
    for (span, kept, figs), j in zip(rows, reversed(range(len(q["intervals"]))), strict=True):
        assert span == f"{num(q['intervals'][j][0])} – {num(q['intervals'][j][1])}"
        mine = [n for n, i in enumerate(ex["interval"]) if i == j]
        assert kept == f"{len(mine)} kept"
        assert figs == [[ex["images"].replace("{example}", str(ex["example"][n])), ex["id"][n],
                         num(ex["score"][n])] for n in mine[:QUANTILE_SHOWN]]
    assert page.locator(".atlas-q-row").first.locator("figure").count() == 1  # the odd id
    assert page.locator(".atlas-q-row").first.locator("img").get_attribute("alt") == TRICKY_ID
    heat = page.locator(".atlas-q-row canvas.atlas-heat").first
    assert not heat.is_visible()
    page.keyboard.press("m")
    assert heat.is_visible()


def _map_state(pg) -> dict:
    return pg.evaluate("""() => { const c = document.querySelector('.atlas-map-canvas');
        return {thumbs: +c.getAttribute('data-thumbs'), dots: +c.getAttribute('data-dots'),
                zoom: +c.getAttribute('data-zoom')}; }""")


def test_layer_map_zooms_and_clicks_through(page, served):
    base = f"{served}/site"
    _open_layer(page, f"{base}/{SLUG}/0/")
    page.wait_for_selector(".atlas-map-canvas[data-dots]")
    page.wait_for_load_state("networkidle")  # the grid's tiles: loaded before the map's
    legend = page.locator(".atlas-map-legend").inner_text()
    assert "UMAP" in legend and "57%" in legend
    state = _map_state(page)
    assert state == {"thumbs": 0, "dots": 192, "zoom": 1}  # the whole layer, as dots
    requested = len([u for u in page.requests if u.endswith("visualization.avif")])
    assert "192 units" in page.locator(".atlas-map-msg").inner_text()
    for _ in range(6):  # zoom in until thumbnails are drawn
        page.click(".atlas-map-tools button[data-zoom=in]")
        page.wait_for_function("document.querySelector('.atlas-map-canvas')"
                               ".getAttribute('data-zoom') !== '" + str(state["zoom"]) + "'")
        state = _map_state(page)
        if state["thumbs"]:
            break
        page.wait_for_timeout(300)  # images of the units in view load, then redraw
        state = _map_state(page)
        if state["thumbs"]:
            break
    assert state["thumbs"] > 0 and state["zoom"] > 1
    assert state["thumbs"] + state["dots"] < 192  # only the units in view are drawn
    fetched = [u for u in page.requests if u.endswith("visualization.avif")][requested:]
    assert 0 < len(fetched) < VIS_UNITS  # thumbnails fetched lazily, for the view only
    # reset, then a click on a unit opens its page
    page.click(".atlas-map-tools button[data-zoom=reset]")
    page.wait_for_function("document.querySelector('.atlas-map-canvas')"
                           ".getAttribute('data-zoom') === '1'")
    typical = AtlasStore(build_small_site(None).parent).layer_map(0)["typical"][0]["unit"]
    x, y = page.evaluate(f"document.querySelector('.atlas-map-canvas').atlasPoint({typical})")
    page.mouse.click(x, y)
    page.wait_for_url(re.compile(rf"{re.escape(base)}/{SLUG}/0/\d+/$"))
    clicked = int(page.url.rstrip("/").rsplit("/", 1)[1])
    data = AtlasStore(build_small_site(None).parent).layer_map(0)["units"]
    p = next(d for d in data if d["unit"] == typical)
    q = next(d for d in data if d["unit"] == clicked)
    assert abs(p["x"] - q["x"]) < 0.03 and abs(p["y"] - q["y"]) < 0.03  # that unit, or one on it


def test_model_page_progression_of_typical_units(page, served):
    base = f"{served}/sub/site"
    page.goto(f"{base}/{SLUG}/")
    typical = [t["unit"] for t in AtlasStore(build_small_site(None).parent).layer_map(0)[
        "typical"]]
    rows = page.locator(".atlas-progression .atlas-strip-row")
    assert rows.count() == 1 and rows.first.get_attribute("data-layer") == "0"
    cells = rows.first.locator("a[data-u]")
    assert [int(u) for u in cells.evaluate_all("as => as.map(a => a.dataset.u)")] == typical
    count, broken = _images_loaded(page)
    assert broken == []
    shown = rows.first.locator("img")
    assert shown.count() == sum(1 for u in typical if u < VIS_UNITS) > 0
    assert all(shown.nth(i).evaluate("i => i.naturalWidth") > 0 for i in range(shown.count()))
    cells.first.click()
    page.wait_for_url(f"{base}/{SLUG}/0/{typical[0]}/")


def _open_layer(pg, url: str) -> None:
    """Open a layer page and wait until its grid is drawn (``atlas.js`` fetches
    ``units.json`` and draws the tiles in view; the small site's 192 fit in the window)."""
    pg.goto(url)
    pg.wait_for_selector(".atlas-grid.atlas-grid-ready", state="attached")


def test_layer_page_filter_and_virtual_grid(page, served):
    url = f"{served}/sub/site/{SLUG}/0/"
    raw = page.request.get(url).text()  # as served: no tiles, a plain list of every unit
    grid = raw.split('<div class="atlas-grid"')[1].split("</div>")[0]
    assert 'data-src="units.json"' in grid and "data-u=" not in grid
    assert re.findall(r'<noscript>.*<a href="(\d+)/">', grid) and grid.count('<a href="') == 192
    _open_layer(page, url)
    cells = page.locator(".atlas-grid a[data-u]")
    assert cells.count() == 192 and page.locator(".atlas-grid-window").count() == 1
    assert [int(u) for u in page.eval_on_selector_all(
        ".atlas-grid a[data-u]", "els => els.map(e => e.dataset.u)")] == list(range(192))
    assert page.locator(".atlas-grid a[data-u='17']").get_attribute("href") == "17/"
    title = page.locator(".atlas-grid a[data-u='0']").get_attribute("title")
    assert title.startswith(f"unit 0 · {TRICKY_CONCEPT} · 2.1× best · z-rank 1/192")
    assert page.locator(".atlas-grid img").first.get_attribute("loading") == "lazy"
    page.fill(".atlas-filter-input", "17")
    assert page.locator(".atlas-grid a[data-u]:visible").count() == 11  # 17 and 170..179
    page.fill(".atlas-filter-input", "100-109")
    assert page.locator(".atlas-grid a[data-u]:visible").count() == 10
    page.fill(".atlas-filter-input", "cat")
    visible = page.locator(".atlas-grid a[data-u]:visible")
    assert visible.count() >= 1 and page.locator(".atlas-grid a[data-u='0']").is_visible()
    page.fill(".atlas-filter-input", "")
    assert page.locator(".atlas-grid a[data-u]:visible").count() == 192


def _shown_vis(pg) -> list[str]:
    """File names of the visualization images a reader sees."""
    return pg.evaluate("""() => Array.from(document.querySelectorAll('.atlas-vis img'))
        .filter(i => i.offsetParent !== null && !i.classList.contains('atlas-attr'))
        .map(i => i.getAttribute('src'))""")


def test_recipe_tabs_and_attribution_toggle(page, served):
    page.goto(f"{served}/site/{SLUG}/0/0/")
    tabs = page.locator(".atlas-tab-label")
    assert tabs.count() == 3 and tabs.nth(1).text_content().startswith(TRICKY_RECIPE)
    assert _shown_vis(page) == ["visualization.avif"]
    fid = page.locator(".atlas-fidelity:visible")
    assert fid.count() == 1 and fid.inner_text().startswith("2.1× the best of 400 dataset images")
    assert page.locator(".atlas-caution:visible").count() == 0

    # tabs: a click shows the other recipe's image, fidelity line and (here) caution
    tabs.nth(1).click()
    assert _shown_vis(page) == [SECOND[0]]
    assert page.is_checked("#atlas-recipe-1") and not page.is_checked("#atlas-recipe-0")
    second = fake_fidelity(0, 192, 1)
    assert page.locator(".atlas-fidelity:visible").inner_text() == fidelity.line(
        fidelity.clean(second), 400)
    assert page.locator(".atlas-caution:visible").count() == len(fidelity.cautions(second))
    # its fields, opened: feature.json's, written in as text (a note that ends the <pre> and
    # opens a script stays text); the primary recipe's are the record's own "recipe"
    record = page.evaluate("() => fetch('feature.json').then(r => r.json())")
    recipe = page.locator(".atlas-tab-panel:visible details.atlas-recipe")
    recipe.locator("summary").click()
    page.wait_for_selector(".atlas-tab-panel:visible details.atlas-recipe[data-filled]")
    page.wait_for_function("document.querySelector('.atlas-tab-panel:not([hidden])') && "
                           "[...document.querySelectorAll('details.atlas-recipe pre')]"
                           ".some(p => p.textContent.startsWith('{'))")
    shown = json.loads(recipe.locator("pre").text_content())
    assert shown == record["recipes"][1]["recipe"] and shown["note"] == TRICKY_NOTE
    assert page.locator("details.atlas-recipe script, "
                        "details.atlas-recipe[data-filled] pre *").count() == 0
    # and by keyboard: the tabs are one radio group
    page.focus("#atlas-recipe-1")
    page.keyboard.press("ArrowLeft")
    assert _shown_vis(page) == ["visualization.avif"] and page.is_checked("#atlas-recipe-0")
    first = page.locator(".atlas-tab-panel:visible details.atlas-recipe")
    first.locator("summary").click()
    page.wait_for_function("[...document.querySelectorAll('details.atlas-recipe pre')]"
                           ".filter(p => p.textContent.startsWith('{')).length === 2")
    assert json.loads(first.locator("pre").text_content()) == record["recipe"]

    # attribution map: off, on by button (the visible tab's), off by key, kept across tabs
    attr = page.locator(".atlas-tab-panel:visible img.atlas-attr")
    assert attr.count() == 1 and not attr.is_visible()
    page.locator(".atlas-attr-toggle:visible").click()
    assert attr.is_visible()
    assert attr.evaluate("i => getComputedStyle(i).mixBlendMode") == "multiply"
    assert attr.evaluate("i => i.naturalWidth") > 0
    assert page.locator(".atlas-attr-toggle:visible").get_attribute("aria-pressed") == "true"
    tabs.nth(1).click()
    assert page.locator(".atlas-tab-panel:visible img.atlas-attr").get_attribute("src") == SECOND[1]
    assert page.locator(".atlas-tab-panel:visible img.atlas-attr").is_visible()
    page.keyboard.press("a")  # focus is on the tab (a radio input): keys still work
    assert not page.locator(".atlas-tab-panel:visible img.atlas-attr").is_visible()
    assert page.locator(".atlas-attr-toggle:visible").get_attribute("aria-pressed") == "false"

    # one recipe, no fidelity: no tabs, no fidelity line, no caution
    page.goto(f"{served}/site/{SLUG}/0/3/")
    assert page.locator(".atlas-tab-label").count() == 0
    assert _shown_vis(page) == ["visualization.avif"]
    assert page.locator(".atlas-fidelity, .atlas-caution").count() == 0


def _grid_order(pg) -> list[int]:
    return pg.evaluate("""() => Array.from(document.querySelectorAll('.atlas-grid a[data-u]'))
        .filter(a => !a.hidden).map(a => +a.getAttribute('data-u'))""")


def _expected_fidelity() -> dict[int, dict | None]:
    """The primary recipe's fidelity of layer 0's visualized units, as the fake wrote it."""
    return {u: fidelity.clean(fake_fidelity(u, 192, 0)) for u in range(VIS_UNITS)}


def _check_sort_and_filter(pg) -> None:
    fids = _expected_fidelity()
    units = list(range(192))
    assert _grid_order(pg) == units
    pg.select_option(".atlas-sort", "v")
    vs = {u: f["vs_best_example"] for u, f in fids.items()
          if f and f["vs_best_example"] is not None}
    best = sorted(vs, key=lambda u: (-vs[u], u))
    order = _grid_order(pg)
    assert order[:len(best)] == best and sorted(order) == units  # unmeasured last
    pg.select_option(".atlas-sort", "r")
    ranks = {u: f["z_rank"] for u, f in fids.items() if f and f["z_rank"] is not None}
    order = _grid_order(pg)
    assert order[0] == 0 and order[:len(ranks)] == sorted(ranks, key=lambda u: (ranks[u], u))
    pg.check(".atlas-trusted")
    trusted = sorted((u for u, f in fids.items() if fidelity.trusted(f)),
                     key=lambda u: (ranks[u], u))
    assert 0 < len(trusted) < VIS_UNITS and _grid_order(pg) == trusted
    assert pg.locator(".atlas-filter-count").inner_text() == f"{len(trusted)} of 192 units"
    pg.fill(".atlas-filter-input", "1")  # combined with the text filter
    assert _grid_order(pg) == [u for u in trusted if str(u).startswith("1")]
    pg.fill(".atlas-filter-input", "")
    pg.uncheck(".atlas-trusted")
    pg.select_option(".atlas-sort", "unit")
    assert _grid_order(pg) == units


def test_layer_page_sorts_and_filters_by_fidelity(page, served):
    _open_layer(page, f"{served}/sub/site/{SLUG}/0/")
    _check_sort_and_filter(page)


def test_layer_tooltips_show_z_rank_ties(page, served):
    """A tile's tooltip gives a tied z-rank as the ranks the tied units span (atlas.js counts
    the units of units.json that share it), an untied one alone."""
    fids = {u: f for u, f in _expected_fidelity().items() if f and f["z_rank"] is not None}
    counts: dict[int, int] = {}
    for f in fids.values():
        counts[f["z_rank"]] = counts.get(f["z_rank"], 0) + 1
    tied = min(u for u, f in fids.items() if counts[f["z_rank"]] > 1)
    alone = min(u for u, f in fids.items() if counts[f["z_rank"]] == 1)
    _open_layer(page, f"{served}/site/{SLUG}/0/")
    for unit in (tied, alone):
        r, n = fids[unit]["z_rank"], counts[fids[unit]["z_rank"]]
        want = f"z-rank {r}–{r + n - 1}/192 ({n} tied)" if n > 1 else f"z-rank {r}/192"
        title = page.locator(f".atlas-grid a[data-u='{unit}']").get_attribute("title")
        assert want in title and ("tied" in title) == (n > 1), (unit, title)
        assert title == page.locator(f".atlas-grid a[data-u='{unit}'] img").get_attribute("alt")


def test_feature_page_says_recognisability(page, served):
    page.goto(f"{served}/sub/site/{SLUG}/0/0/")
    words = page.locator(".atlas-recognisability:visible")
    assert words.count() == 1
    assert words.inner_text() == (
        f"Given this image, the judge ({JUDGE}) tells the unit's top images from its bottom "
        "ones 17 times in 20 (its best dataset example: 15 in 20). The judge sees this image as "
        f"‘{TRICKY_CLASS}’ — the class of 80% of the unit's top examples. how")
    assert page.locator(".atlas-recognisability *").count() == 3  # one "how" link per tab
    assert page.locator(".atlas-caution:visible").count() == 0
    # the accentuation's tab: its seed and its own words
    page.locator(".atlas-tab-label").nth(2).click()
    assert _shown_vis(page) == ["visualization-accent.avif"]
    seed = page.locator(".atlas-seed:visible")
    assert seed.inner_text().startswith("Raises the unit from ")
    assert f"(its seed, example {TRICKY_ID}) to " in seed.inner_text()
    rec = fidelity.clean(fake_fidelity(0, 192, 2))["recognisability"]
    assert page.locator(".atlas-recognisability:visible").inner_text() == (
        recognisability.sentences(rec) + " how")
    page.locator(".atlas-recognisability:visible a").click()
    page.wait_for_url(f"{served}/sub/site/method/#recognisability")
    assert page.locator("h2#recognisability").count() == 1
    # a unit no better than chance says so
    page.goto(f"{served}/sub/site/{SLUG}/0/4/")
    cautions = page.locator(".atlas-caution:visible")
    assert "9 times in 20" in page.locator(".atlas-recognisability:visible").inner_text()
    assert "No better than chance" in cautions.nth(cautions.count() - 1).inner_text()


def _tile_srcs(pg, units: list[int]) -> list[str | None]:
    """What each unit's tile shows: its image's src, or None (a placeholder)."""
    return pg.evaluate("""(units) => units.map(u => {
        const a = document.querySelector(`.atlas-grid a[data-u="${u}"]`);
        const img = a.querySelector('img');
        return img && !img.hidden ? img.getAttribute('src') : null; })""", units)


def test_layer_page_recognisability_and_tile_switch(page, served):
    url = f"{served}/sub/site/{SLUG}/0/"
    _open_layer(page, url)
    recs = {u: (fidelity.clean(fake_fidelity(u, 192, 0)) or {}).get("recognisability")
            for u in range(VIS_UNITS)}
    afc = {u: r["afc"] for u, r in recs.items() if r}
    page.select_option(".atlas-sort", "a")
    order = _grid_order(page)
    assert order[:len(afc)] == sorted(afc, key=lambda u: (-afc[u], u))
    assert sorted(order) == list(range(192))  # unmeasured last
    page.select_option(".atlas-afc", "chance")
    assert _grid_order(page) == [u for u in sorted(afc, key=lambda u: (-afc[u], u))
                                 if afc[u] > 0.5]
    page.select_option(".atlas-afc", "best")
    want = [u for u in sorted(afc, key=lambda u: (-afc[u], u))
            if afc[u] >= recs[u]["best_example"]["afc"]]
    assert 0 < len(want) < len(afc) and _grid_order(page) == want
    assert page.locator(".atlas-filter-count").inner_text() == f"{len(want)} of 192 units"
    page.select_option(".atlas-afc", "")
    page.select_option(".atlas-sort", "unit")
    assert _grid_order(page) == list(range(192))

    # the tile switch: visualization, accentuation, best example; remembered across reloads
    units = [0, 1, 2, 4, 170]
    vis = ["0/visualization.avif", "1/visualization.avif", "2/visualization.avif",
           "4/visualization.avif", None]
    assert page.is_checked("input[name=atlas-tile][value=vis]")
    assert _tile_srcs(page, units) == vis
    page.check("input[name=atlas-tile][value=acc]")
    acc = ["0/visualization-accent.avif", None, None, "4/visualization-accent.avif", None]
    assert _tile_srcs(page, units) == acc
    assert page.locator('.atlas-grid a[data-u="1"] .atlas-novis').inner_text() == \
        "no accentuation"
    page.reload()
    page.wait_for_selector(".atlas-grid.atlas-grid-ready", state="attached")
    assert page.is_checked("input[name=atlas-tile][value=acc]")
    assert _tile_srcs(page, units) == acc
    page.check("input[name=atlas-tile][value=ex]")
    shown = _tile_srcs(page, units)
    assert shown[0] == "../examples/e0.avif" and all(
        s is not None and s.startswith("../examples/e") for s in shown)
    page.reload()
    page.wait_for_selector(".atlas-grid.atlas-grid-ready", state="attached")
    assert page.is_checked("input[name=atlas-tile][value=ex]") and _tile_srcs(page, units) == shown
    assert _images_loaded(page)[1] == []  # the examples' thumbnails load
    # layer 1 (not indexed) has no "best example": the stored choice falls back
    _open_layer(page, f"{served}/sub/site/{SLUG}/1/")
    assert page.locator("input[name=atlas-tile][value=ex]").count() == 0
    assert page.is_checked("input[name=atlas-tile][value=vis]")
    assert _tile_srcs(page, [0, 1]) == ["0/visualization.avif", "1/visualization.avif"]
    _open_layer(page, url)
    page.check("input[name=atlas-tile][value=vis]")
    page.reload()
    page.wait_for_selector(".atlas-grid.atlas-grid-ready", state="attached")
    assert page.is_checked("input[name=atlas-tile][value=vis]") and _tile_srcs(page, units) == vis


def test_pages_work_from_file_urls(browser, tmp_path_factory):
    """Opened from disk (file://): the tabs and the toggle need no server and no request; the
    layer page, whose units.json a file:// page cannot fetch, lists every unit's page."""
    site = build_small_site(tmp_path_factory.mktemp("site"))
    context = browser.new_context(viewport={"width": 1280, "height": 2400})
    pg = context.new_page()
    errors, requests = [], []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("request", lambda r: requests.append(r.url))
    pg.goto((site / SLUG / "0" / "0" / "index.html").as_uri())
    # the examples across the activation range need feature.json: the section says where
    pg.wait_for_selector(".atlas-quantiles[data-failed]", state="attached")
    assert pg.locator(".atlas-q-note").is_visible() and pg.locator(".atlas-q-row").count() == 0
    pg.wait_for_selector(".atlas-similar[data-failed]", state="attached")  # so do similar units
    assert pg.locator(".atlas-sim-note").is_visible() and pg.locator(".atlas-sim-list").count() == 0
    pg.locator(".atlas-tab-label").nth(1).click()
    assert _shown_vis(pg) == [SECOND[0]]
    pg.keyboard.press("a")
    assert pg.locator(".atlas-tab-panel:visible img.atlas-attr").is_visible()
    _open_layer(pg, (site / SLUG / "0" / "index.html").as_uri())
    links = pg.locator(".atlas-grid-links a[data-u]")
    assert links.count() == 192 and links.nth(191).get_attribute("href") == "191/"
    assert "web server" in pg.locator(".atlas-grid-links").inner_text()
    # Material's own search worker cannot start from file:// (a browser rule, not ours), nor
    # can the layer page fetch its units.json (the page says so and lists the units)
    assert [e for e in errors if "/search/" not in e and "units.json" not in e
            and "feature.json" not in e] == []
    assert [u for u in requests if not u.startswith("file://")] == []
    context.close()


CONFIG = 'JSON.parse(document.getElementById("__config").textContent)'  # Material's settings


def test_material_pages_and_header_search_jumps_to_a_unit(page, served):
    base = f"{served}/sub/site"
    page.goto(f"{base}/")
    home = page.evaluate(CONFIG)  # inline, as Material writes them
    assert home["base"] == "." and home["search"].startswith("assets/javascripts/workers/")
    count, broken = _images_loaded(page)
    assert count >= 2 and broken == []
    page.click(f"a[href='{SLUG}/']")
    page.wait_for_url(f"{base}/{SLUG}/")
    assert _images_loaded(page)[1] == []
    page.fill(".md-search__input", "L0 U12")
    page.wait_for_selector(".atlas-search-unit a")
    page.press(".md-search__input", "Enter")
    page.wait_for_url(f"{base}/{SLUG}/0/12/")
    # the feature page has the same header: its search takes "layer/unit" too
    assert page.locator("header.md-header .md-search__input").count() == 1
    # Material's settings, written by the shared assets/atlas-config.js: as a page of this
    # depth has them inline (its base the site root, relative; the search worker under it)
    settings = page.evaluate(CONFIG)
    assert settings == {**home, "base": "../../..", "search": "../../../" + home["search"]}
    assert "search.highlight" in settings["features"] and settings["translations"]
    page.fill(".md-search__input", "1/3")
    page.press(".md-search__input", "Enter")
    page.wait_for_url(f"{base}/{SLUG}/1/3/")
    page.goto(f"{base}/method/")
    assert "Ghiasi" in page.content()


# -- search by word ---------------------------------------------------------------------------
def _ranked(concept: str) -> list[tuple[int, int]]:
    """(layer, unit) of every unit with a page whose top concepts hold ``concept``, by score
    (as the fake atlas wrote them), ties by layer and unit."""
    found = []
    for layer, units in _pages().items():
        for unit, concepts in _expected_labels(layer).items():
            for c in concepts:
                if unit in units and c["concept"] == concept:
                    found.append((-c["score"], layer, unit))
    return [(layer, unit) for _, layer, unit in sorted(found)]


def _hits(pg, scope: str) -> list[tuple[int, int]]:
    hrefs = pg.eval_on_selector_all(f"{scope} a.atlas-word-hit", "as => as.map(a => a.href)")
    return [(int(m[1]), int(m[2])) for m in
            (re.search(r"/(\d+)/(\d+)/$", h) for h in hrefs)]


def _thumbs_loaded(pg, scope: str) -> tuple[int, int]:
    """(thumbnails, placeholders) of the hits in ``scope``, once every image has loaded."""
    pg.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    pg.wait_for_function(f"""() => Array.from(
        document.querySelectorAll('{scope} .atlas-word-hit img'))
        .every(i => i.complete && i.naturalWidth > 0)""")
    return (pg.locator(f"{scope} .atlas-word-hit img").count(),
            pg.locator(f"{scope} .atlas-word-hit .atlas-novis").count())


def test_header_search_lists_the_units_a_word_labels(page, served):
    base = f"{served}/sub/site"
    page.goto(f"{base}/{SLUG}/0/5/")
    expected = _ranked("constructor")  # a word, and a property of every JavaScript object
    assert len(expected) > 8 and {layer for layer, _ in expected} == {1}
    page.fill(".md-search__input", "constructor")
    page.wait_for_selector(".atlas-search-word .atlas-word-hit")
    assert page.locator(".atlas-search-word b").text_content() == "constructor"
    assert f"labels {len(expected)} units" in page.locator(".atlas-search-word").inner_text()
    assert _hits(page, ".atlas-search-word") == expected[:8]
    assert _thumbs_loaded(page, ".atlas-search-word") == (8, 0)
    page.locator(".atlas-search-word a.atlas-word-hit").first.click()
    layer, unit = expected[0]
    page.wait_for_url(f"{base}/{SLUG}/{layer}/{unit}/")
    assert "constructor" in page.locator(".atlas-words-top").inner_text()

    # a prefix: the words that start with it; the hostile concept stays text
    page.fill(".md-search__input", '<em>"str')
    page.wait_for_selector(".atlas-search-word b")
    assert page.locator(".atlas-search-word b").text_content() == TRICKY_CONCEPT
    assert page.locator(".atlas-search-results b *, .atlas-search-results em").count() == 0
    tricky = _ranked(TRICKY_CONCEPT)
    assert sorted(tricky) == [(0, 0), (1, 0)] and _hits(page, ".atlas-search-word") == tricky
    # Enter: the search page, with every unit of the word
    page.press(".md-search__input", "Enter")
    page.wait_for_url(re.compile(rf"{re.escape(base)}/{SLUG}/words/\?word=%3Cem%3E"))
    page.wait_for_selector(".atlas-words-results a.atlas-word-hit")
    # (not "?q=": Material's own search would open on it)
    assert page.input_value(".md-search__input") == ""
    assert not page.is_checked("#__search")
    assert page.input_value(".atlas-words-input") == TRICKY_CONCEPT
    assert _hits(page, ".atlas-words-results") == _ranked(TRICKY_CONCEPT)
    choice = page.locator(".atlas-words-choice").first
    assert choice.text_content().startswith(TRICKY_CONCEPT) and choice.locator("em").count() == 0


def test_header_search_finds_a_class_and_all_its_units(page, served):
    """A class name: its best units from the class index's head, then "more" fetches the
    shards holding the rest (one class spans two shards); the whole ``classes.json`` is never
    fetched."""
    import json

    full = json.loads((build_small_site(None) / SLUG / "classes.json").read_text())
    c = full["classes"].index("class 2 (abab)")
    units = full["units"][c]
    expected = [f"{SLUG}/{layer}/{unit}/" for layer, unit in zip(units[::2], units[1::2],
                                                                  strict=True)]
    assert len(expected) > 40
    base = f"{served}/sub/site"
    page.goto(f"{base}/{SLUG}/")
    page.fill(".md-search__input", "CLASS 2 (")
    page.wait_for_selector(".atlas-search-class")
    assert page.locator(".atlas-search-class").count() == 1
    assert page.locator(".atlas-search-class b").text_content() == "class 2 (abab)"
    assert f"(class, {len(expected)} units)" in page.locator(".atlas-search-class").inner_text()

    def shown() -> list[str]:
        return [h.removeprefix(f"{base}/") for h in page.eval_on_selector_all(
            ".atlas-search-class-units a", "as => as.map(a => a.href)")]

    assert shown() == expected[:8]
    while page.locator(".atlas-search-more").count():
        n = len(shown())
        page.click(".atlas-search-more")
        page.wait_for_function(f"document.querySelectorAll('.atlas-search-class-units a')"
                               f".length > {n}")
    assert shown() == expected
    fetched = [u.removeprefix(f"{base}/") for u in page.requests if "/classes" in u]
    assert fetched[0] == f"{SLUG}/classes/index.json"
    assert f"{SLUG}/classes.json" not in fetched and len(fetched) <= 3
    page.locator(".atlas-search-class-units a").last.click()
    page.wait_for_url(f"{base}/{expected[-1]}")


def test_search_page_lists_every_unit_of_a_word(page, served):
    base = f"{served}/site"
    words, shards = _word_index(build_small_site(None))
    merged = _merged(shards)
    # a concept split over shards with more units than one screenful
    split = sorted(c for shard in shards for c, (_, total) in shard["split"].items()
                   if total > 48)
    assert split, "the small site should split a large concept over shards"
    concept = split[0]
    expected = _ranked(concept)
    assert len(expected) == len(merged[concept]) > 48
    page.goto(f"{base}/{SLUG}/words/")
    page.fill(".atlas-words-input", concept[:2])
    page.wait_for_selector(".atlas-words-choice")
    choices = [c.split(" ")[0] for c in page.locator(".atlas-words-choice").all_text_contents()]
    assert concept in choices and all(c.lower().startswith(concept[:2]) for c in choices)
    page.fill(".atlas-words-input", concept)
    page.wait_for_function(f"""() => document.querySelector('.atlas-words-msg').textContent
        .startsWith('{len(expected)} units')""")
    assert _hits(page, ".atlas-words-results") == expected[:48]
    assert page.locator(".atlas-words-more").is_visible()
    page.click(".atlas-words-more")
    page.wait_for_function("document.querySelector('.atlas-words-more').hidden")
    assert _hits(page, ".atlas-words-results") == expected  # the rest, from the next shard
    with_image = sum(1 for layer, unit in expected if unit < VIS_UNITS)
    assert _thumbs_loaded(page, ".atlas-words-results") == (with_image, len(expected) - with_image)
    assert page.url.endswith(f"/words/?word={concept}")
    # a click on a result opens the feature page
    layer, unit = expected[-1]
    page.locator(f".atlas-words-results a[href$='/{layer}/{unit}/']").click()
    page.wait_for_url(f"{base}/{SLUG}/{layer}/{unit}/")
    assert concept in page.locator(".atlas-words-top").inner_text()
    # a word nothing starts with
    page.goto(f"{base}/{SLUG}/words/?word=zzz")
    page.wait_for_function("document.querySelector('.atlas-words-msg').textContent.length > 0")
    assert "No concept starts with" in page.locator(".atlas-words-msg").inner_text()
    assert page.locator(".atlas-words-results a").count() == 0


def test_layer_page_filters_by_label(page, served):
    _open_layer(page, f"{served}/site/{SLUG}/0/")
    expected = [u for u, concepts in _expected_labels(0).items()
                if any("stripes" in c["concept"] for c in concepts)]
    assert 0 in expected
    page.fill(".atlas-filter-input", "stripes")
    assert page.locator(".atlas-grid a[data-u]:visible").count() == len(expected)
    assert page.locator(".atlas-grid a[data-u='0'] .atlas-tile-word").text_content() == (
        TRICKY_CONCEPT)


# -- phones, pixels, canonical addresses ------------------------------------------------------
PHONE = {"width": 390, "height": 844}


@pytest.mark.parametrize("path", ["", f"{SLUG}/", f"{SLUG}/0/", f"{SLUG}/0/0/", f"{SLUG}/1/3/",
                                  f"{SLUG}/words/?word=wood", "method/", "how-to-read/"])
def test_no_sideways_scroll_on_a_phone(browser, served, path):
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    try:
        pg = context.new_page()
        pg.goto(f"{served}/sub/site/{path}")
        pg.wait_for_load_state("load")
        wide = pg.evaluate("""() => Array.from(document.querySelectorAll('body *'))
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
                         && !e.closest('.md-sidebar, .md-search, [hidden], pre')
                         && !e.closest('.md-typeset__scrollwrap')  // a table's own scroll box
                         && getComputedStyle(e).position !== 'fixed')
            .map(e => e.tagName + '.' + e.className).slice(0, 5)""")
        width = pg.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"] and wide == [], (width, wide)
    finally:
        context.close()


def test_feature_page_header_icons_and_colour_scheme(page, served):
    """The lean feature page's header (atlas.css draws its icons; Material's scripts as shared
    files): icons painted, and the colour scheme chosen there is the one the other pages use
    (the same settings scope), and back."""
    base = f"{served}/sub/site"
    page.goto(f"{base}/{SLUG}/0/0/")
    page.wait_for_load_state("load")
    icon = page.evaluate("""() => { const s = getComputedStyle(document.querySelector(
        '.md-header .atlas-i-magnify')); return [s.maskImage || s.webkitMaskImage,
        parseFloat(s.width), s.backgroundColor]; }""")
    assert icon[0].startswith("url(") and icon[1] > 10 and icon[2] != "rgba(0, 0, 0, 0)"
    assert page.evaluate("getComputedStyle(document.querySelector('.md-logo svg')).width") != "0px"
    assert page.get_attribute("body", "data-md-color-scheme") == "default"
    page.click("label[for=__palette_1]")
    assert page.get_attribute("body", "data-md-color-scheme") == "slate"
    page.goto(f"{base}/method/")  # Material's own page: its inline scripts, the same setting
    page.wait_for_load_state("load")
    assert page.get_attribute("body", "data-md-color-scheme") == "slate"
    page.click("label[for=__palette_0]")
    page.goto(f"{base}/{SLUG}/0/1/")
    page.wait_for_load_state("load")
    assert page.get_attribute("body", "data-md-color-scheme") == "default"


def test_small_images_drawn_pixelated_and_search_named(page, served):
    page.goto(f"{served}/sub/site/{SLUG}/0/0/")
    page.wait_for_selector(".atlas-heat-controls:not([hidden])")
    rendering = page.evaluate("""() => ['.atlas-vis img', '.atlas-ex-img img',
        '.atlas-sim-list img'].map(s => getComputedStyle(document.querySelector(s))
        .imageRendering)""")
    assert rendering == ["pixelated"] * 3
    shown = page.evaluate("""() => { const i = document.querySelector('.atlas-vis img');
        return [i.naturalWidth, i.getBoundingClientRect().width]; }""")
    assert shown[1] > shown[0]  # drawn larger than it is: its pixels, not a blur
    assert page.get_attribute(".md-search[role=dialog]", "aria-label") == "Search the atlas"
    placeholder = page.get_attribute(".md-search__input", "placeholder")
    assert placeholder.startswith("Search: ") and "/" in placeholder
    _open_layer(page, f"{served}/sub/site/{SLUG}/0/")
    assert page.evaluate("getComputedStyle(document.querySelector('.atlas-grid img'))"
                         ".imageRendering") == "pixelated"


def test_canonical_link_and_bibtex_with_a_site_url(browser, tmp_path_factory):
    """Built with --site-url: the page's canonical link, Cite block and BibTeX hold the
    absolute permalink, whatever address the page is read at."""
    from pipeline.site import build as site_build
    from pipeline.testing.fake import make_fake_atlas, tiny_spec
    from tests.pages.test_site import TINY

    root = tmp_path_factory.mktemp("canonical")
    store = make_fake_atlas(root / "atlas", tiny_spec(**TINY), topk=3, n_examples=8,
                            vis_units=3, index_layers=[0])
    site = site_build.build_site(store, workers=1, site_url="https://atlas.example.org/v/")
    url = f"https://atlas.example.org/v/{SLUG}/0/1/"
    with serving(site) as local, recording_page(browser, local) as pg:
        pg.goto(f"{local}/{SLUG}/0/1/")
        pg.wait_for_load_state("load")
        assert pg.get_attribute("link[rel=canonical]", "href") == url
        assert pg.locator(".atlas-permalink").inner_text() == url
        assert pg.get_attribute(".atlas-permalink", "href") == url
        bib = pg.locator(".atlas-bibtex").inner_text()
        assert f"\\url{{{url}}}" in bib and local not in bib
        pg.goto(f"{local}/{SLUG}/")
        assert pg.get_attribute("link[rel=canonical]", "href") == (
            f"https://atlas.example.org/v/{SLUG}/")
