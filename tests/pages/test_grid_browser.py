"""A layer of a few thousand units in headless Chromium: the layer page's virtual grid
(``assets/atlas.js`` draws the tiles in view from ``units.json``) keeps few tiles in the
document, scrolls to every unit, filters, sorts, opens feature pages and remembers the tile
switch; the page links every unit without JavaScript."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.site import build, serving
from pipeline.site.data import AtlasView
from pipeline.testing.fake import make_fake_atlas, tiny_spec
from tests.pages.test_browser import browser  # noqa: F401, F811 (the fixture)

UNITS = 3072  # ViT-B's FFN width: 64 dims x mlp_ratio 48
VISUALIZED = 64  # units with a visualization: the first tiles, the tile switch's


@pytest.fixture(scope="module")
def big_layer(tmp_path_factory) -> tuple[Path, str]:
    """A one-layer fake atlas of ``UNITS`` units, every one with a page (indexed and labelled;
    the first ``VISUALIZED`` visualized: a tile's image is the same code for every unit, and
    each costs two AVIF encodings; no map), built; returns the site and the layer page's
    path."""
    root = tmp_path_factory.mktemp("grid")
    spec = tiny_spec(img_size=16, patch_size=8, depth=1, embed_dim=64, num_heads=1,
                     mlp_ratio=UNITS / 64)
    store = make_fake_atlas(root / "atlas", spec, topk=1, n_examples=8, thumb_size=8,
                            vis_units=VISUALIZED, relations=False, workers=2)
    site = build.build_site(store, workers=2)
    return site, f"{AtlasView(store).slug}/0/"


@pytest.fixture(scope="module")
def grid_data(big_layer) -> dict:
    site, path = big_layer
    return json.loads((site / path / "units.json").read_text())


@pytest.fixture(scope="module")
def served(big_layer) -> Iterator[str]:
    with serving(big_layer[0]) as base:
        yield f"{base}/{big_layer[1]}"


@pytest.fixture
def page(browser, served):  # noqa: F811 - the imported fixture
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: m.type == "error" and errors.append(m.text))
    pg.goto(served)
    pg.wait_for_selector(".atlas-grid.atlas-grid-ready", state="attached")
    yield pg
    assert errors == []
    context.close()


def _tiles(pg) -> list[int]:
    """The units whose tiles are in the document, in order."""
    return pg.evaluate("""() => Array.from(document.querySelectorAll('.atlas-grid a[data-u]'))
        .map(a => +a.dataset.u)""")


def _to_end(pg) -> None:
    """Scroll to the bottom and let the grid draw its last rows (the last tile on screen)."""
    pg.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    pg.wait_for_function("""() => { const w = document.querySelector('.atlas-grid-window');
        const r = w.lastElementChild && w.lastElementChild.getBoundingClientRect();
        return r && r.bottom > 0 && r.bottom <= window.innerHeight + 1; }""")


def _to_top(pg, first: int) -> None:
    """Scroll to the top and wait for the grid to draw ``first``'s tile first."""
    pg.evaluate("window.scrollTo(0, 0)")
    pg.wait_for_function(f"""() => {{ const a = document.querySelector('.atlas-grid a[data-u]');
        return a && +a.dataset.u === {first}; }}""")


def _order(data: dict, key) -> list[int]:
    """Units sorted as atlas.js sorts them: by ``key`` (smaller first), ties and units
    without a value (last) by unit number."""
    have = [i for i in range(len(data["units"])) if key(i) is not None]
    rest = [i for i in range(len(data["units"])) if key(i) is None]
    return [data["units"][i] for i in sorted(have, key=lambda i: (key(i), i)) + rest]


def test_layer_page_links_every_unit_without_javascript(big_layer):
    site, path = big_layer
    page = (site / path / "index.html").read_text()
    noscript = page.split('<div class="atlas-grid"')[1].split("</noscript>")[0]
    assert re.findall(r'<a href="(\d+)/">', noscript) == [str(u) for u in range(UNITS)]
    assert all((site / path / str(u) / "index.html").is_file() for u in (0, UNITS - 1))


def test_only_tiles_in_view_are_in_the_document(page, grid_data):
    assert grid_data["units"] == list(range(UNITS))
    tiles = _tiles(page)
    assert tiles[0] == 0 and tiles == list(range(len(tiles)))
    assert 0 < len(tiles) <= UNITS // 10  # a screen and a margin, not the layer
    assert page.get_attribute(".atlas-grid", "data-shown") == str(UNITS)
    # the grid is as tall as every row: the page scrolls through the whole layer
    height = page.evaluate("document.querySelector('.atlas-grid').getBoundingClientRect().height")
    cols = page.evaluate("""() => getComputedStyle(document.querySelector('.atlas-grid-window'))
        .gridTemplateColumns.split(' ').length""")
    assert height > (UNITS // cols - 1) * 96
    first = page.locator('.atlas-grid a[data-u="0"]')
    assert first.get_attribute("href") == "0/" and first.locator("img").count() == 1


def test_scrolling_to_the_end_shows_the_last_unit(page):
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight / 2)")
    page.wait_for_function("""() => !document.querySelector('.atlas-grid a[data-u="0"]')
        && document.querySelectorAll('.atlas-grid a[data-u]').length > 0""")
    middle = _tiles(page)
    assert 0 < middle[0] < UNITS // 2 < middle[-1] < UNITS - 1
    _to_end(page)
    tiles = _tiles(page)
    assert tiles[-1] == UNITS - 1 and len(tiles) <= UNITS // 10
    last = page.locator(f'.atlas-grid a[data-u="{UNITS - 1}"]')
    assert last.is_visible() and last.locator("span").last.text_content() == str(UNITS - 1)
    _to_top(page, 0)


def test_filter_by_word_and_sort(page, grid_data):
    data = grid_data
    word = data["words"][data["concepts"][0][0]].split()[0].lower()
    want = [u for i, u in enumerate(data["units"]) if any(
        word in data["words"][w].lower() for w in data["concepts"][i]) or any(
        word in data["classes"][c].lower() for c in data["top_classes"][i])]
    assert 0 < len(want) < UNITS
    page.fill(".atlas-filter-input", word)
    assert page.locator(".atlas-filter-count").inner_text() == f"{len(want)} of {UNITS} units"
    tiles = _tiles(page)
    assert tiles == want[:len(tiles)]
    _to_end(page)
    tiles = _tiles(page)
    assert tiles == want[len(want) - len(tiles):]  # the last ones, in order
    # sorted by times the best dataset example, highest first; unmeasured last
    page.fill(".atlas-filter-input", "")
    page.select_option(".atlas-sort", "v")
    order = _order(data, lambda i: None if data["vs_best"][i] is None else -data["vs_best"][i])
    _to_top(page, order[0])
    tiles = _tiles(page)
    assert tiles == order[:len(tiles)]
    _to_end(page)
    tiles = _tiles(page)
    assert tiles == order[UNITS - len(tiles):]
    # by z-rank, only trusted
    page.select_option(".atlas-sort", "r")
    page.check(".atlas-trusted")
    trusted = [u for u in _order(data, lambda i: data["z_rank"][i]) if data["trusted"][u]]
    assert page.locator(".atlas-filter-count").inner_text() == f"{len(trusted)} of {UNITS} units"
    _to_top(page, trusted[0])
    tiles = _tiles(page)
    assert tiles == trusted[:len(tiles)]


def test_clicking_a_tile_opens_its_feature_page(page, served):
    _to_end(page)
    page.locator(f'.atlas-grid a[data-u="{UNITS - 1}"]').click()
    page.wait_for_url(f"{served}{UNITS - 1}/")
    assert page.locator(".atlas-feature").count() == 1
    page.go_back()  # back where the reader was: the grid's end, its last tile drawn
    page.wait_for_url(served)
    page.wait_for_selector(f'.atlas-grid a[data-u="{UNITS - 1}"]')
    assert page.locator(f'.atlas-grid a[data-u="{UNITS - 1}"]').is_visible()


def test_tile_switch_is_remembered(page, grid_data):
    def srcs() -> dict[int, str | None]:
        return dict(page.evaluate("""() => Array.from(document.querySelectorAll(
            '.atlas-grid a[data-u]')).map(a => { const i = a.querySelector('img');
            return [+a.dataset.u, i ? i.getAttribute('src') : null]; })"""))

    assert page.is_checked("input[name=atlas-tile][value=vis]")
    assert srcs()[0] == "0/" + grid_data["thumbs"][grid_data["thumb"][0]]
    page.check("input[name=atlas-tile][value=ex]")
    assert srcs()[0] == "../examples/" + grid_data["example"][0]
    page.reload()
    page.wait_for_selector(".atlas-grid.atlas-grid-ready", state="attached")
    assert page.is_checked("input[name=atlas-tile][value=ex]")
    _to_end(page)  # tiles drawn after the switch show the same
    shown = srcs()
    assert shown[UNITS - 1] == "../examples/" + grid_data["example"][UNITS - 1]
    assert all(s is not None and s.startswith("../examples/e") for s in shown.values())
    page.check("input[name=atlas-tile][value=vis]")
    page.reload()
    page.wait_for_selector(".atlas-grid.atlas-grid-ready", state="attached")
    assert page.is_checked("input[name=atlas-tile][value=vis]")
