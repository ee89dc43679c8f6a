"""The built site in a real headless Chromium, served over HTTP from the root and a sub-path."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator

import pytest

from pipeline.pages import make_server
from pipeline.pages.fake import TRICKY_CLASS, TRICKY_ID
from tests.test_site import SLUG, VIS_UNITS, build_small_site

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[str]:
    """The site served at ``/sub/site/`` of a local server; yields the server's base URL."""
    site = build_small_site(tmp_path_factory.mktemp("site"))
    www = tmp_path_factory.mktemp("www")
    (www / "sub").mkdir()
    (www / "sub" / "site").symlink_to(site, target_is_directory=True)
    (www / "site").symlink_to(site, target_is_directory=True)
    server = make_server(www, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


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


@pytest.fixture
def page(browser, served):
    """A page that records console errors and every request it makes."""
    context = browser.new_context(viewport={"width": 1280, "height": 2400})
    pg = context.new_page()
    pg.errors, pg.requests = [], []
    pg.on("console", lambda m: m.type == "error" and pg.errors.append(m.text))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("request", lambda r: pg.requests.append(r.url))
    yield pg
    assert pg.errors == []
    assert [u for u in pg.requests if not u.startswith(served)] == []
    context.close()


def _images_loaded(pg) -> tuple[int, list[str]]:
    """(number of images, those that failed), once every image (lazy ones too) settled."""
    pg.wait_for_load_state("load")
    pg.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    pg.wait_for_function("Array.from(document.images).every(i => i.complete)")
    broken = pg.evaluate("""() => Array.from(document.images)
        .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)""")
    return pg.evaluate("document.images.length"), broken


@pytest.mark.parametrize("prefix", ["/site", "/sub/site"])
def test_feature_page_in_browser(page, served, prefix):
    base = f"{served}{prefix}"
    page.goto(f"{base}/{SLUG}/0/0/")
    count, broken = _images_loaded(page)
    assert count == 1 + 6 and broken == []  # visualization + top-6 thumbnails
    painted = page.evaluate("""() => Array.from(document.querySelectorAll('canvas.atlas-heat'))
        .filter(c => c.width === 4 && c.height === 4).length""")
    assert painted == 6
    assert page.locator(".atlas-legend-hi").inner_text() != ""

    # strings from the dataset are text, never markup
    assert page.locator(".atlas-label").first.text_content() == TRICKY_CLASS
    assert page.locator(".atlas-id").first.text_content() == TRICKY_ID
    assert page.locator(".atlas-label *, .atlas-id *, .atlas-classes span *").count() == 0
    assert page.locator(".atlas-classes li span").first.text_content() == TRICKY_CLASS

    # heatmap toggle: button and key
    heat = page.locator("canvas.atlas-heat").first
    assert heat.is_visible()
    page.click(".atlas-heat-toggle")
    assert not heat.is_visible()
    assert page.get_attribute(".atlas-heat-toggle", "aria-pressed") == "false"
    page.keyboard.press("m")
    assert heat.is_visible()

    # cite block: absolute permalink filled in
    permalink = f"{base}/{SLUG}/0/0/"
    assert page.locator(".atlas-permalink").inner_text() == permalink
    assert f"\\url{{{permalink}}}" in page.locator(".atlas-bibtex").inner_text()

    # next / previous unit and layer, by link and by key
    page.click("a[data-key=j]")
    page.wait_for_url(f"{base}/{SLUG}/0/1/")
    page.keyboard.press("k")
    page.wait_for_url(f"{base}/{SLUG}/0/0/")
    page.keyboard.press("]")
    page.wait_for_url(f"{base}/{SLUG}/1/0/")
    assert _images_loaded(page) == (1, [])  # layer 1 is not indexed: visualization only
    page.keyboard.press("h")
    page.wait_for_url(f"{base}/{SLUG}/0/0/")

    # jump box: layer/unit, a unit without a page, and class search
    page.fill(".atlas-jump input", "1/7")
    page.press(".atlas-jump input", "Enter")
    page.wait_for_url(f"{base}/{SLUG}/1/7/")
    page.fill(".atlas-jump input", f"1/{VIS_UNITS + 5}")
    page.press(".atlas-jump input", "Enter")
    page.wait_for_function("document.querySelector('.atlas-jump-msg').textContent.length > 0")
    assert "no page" in page.locator(".atlas-jump-msg").inner_text()
    page.fill(".atlas-jump input", "cat")
    page.wait_for_selector(".atlas-jump-results li")
    assert page.locator(".atlas-jump-results strong").first.text_content() == TRICKY_CLASS
    page.locator(".atlas-jump-results a").first.click()
    page.wait_for_url(re.compile(rf"{re.escape(base)}/{SLUG}/0/\d+/$"))
    assert _images_loaded(page)[1] == []

    # up to the layer page, then home, through relative links
    page.keyboard.press("u")
    page.wait_for_url(f"{base}/{SLUG}/0/")
    page.go_back()
    page.click(".atlas-home")
    page.wait_for_url(f"{base}/")


def test_layer_page_filter_and_lazy_grid(page, served):
    page.goto(f"{served}/sub/site/{SLUG}/0/")
    cells = page.locator(".atlas-grid a[data-u]")
    assert cells.count() == 192
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


def test_material_pages_and_jump_from_home(page, served):
    base = f"{served}/sub/site"
    page.goto(f"{base}/")
    count, broken = _images_loaded(page)
    assert count >= 2 and broken == []
    page.click(f"a[href='{SLUG}/']")
    page.wait_for_url(f"{base}/{SLUG}/")
    assert _images_loaded(page)[1] == []
    page.fill(".atlas-jump input", "L0 U12")
    page.press(".atlas-jump input", "Enter")
    page.wait_for_url(f"{base}/{SLUG}/0/12/")
    page.goto(f"{base}/method/")
    assert "Ghiasi" in page.content()
