"""The Findings page in Chromium: reached from the model's navigation, its verdicts and
table shown, no console errors and no request leaving the site."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

from pipeline.site import make_server
from tests.pages.test_browser import browser, recording_page  # noqa: F401 (fixtures)
from tests.pages.test_site import build_small_site


@pytest.fixture(scope="module")
def findings_site(tmp_path_factory) -> Iterator[tuple[str, str, dict]]:
    site = build_small_site(tmp_path_factory.mktemp("site"))
    found = next(site.glob("*/findings/findings.json"))
    server = make_server(site, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield (f"http://127.0.0.1:{server.server_address[1]}", found.parent.parent.name,
           json.loads(found.read_text()))
    server.shutdown()
    server.server_close()


def test_findings_page_in_chromium(browser, findings_site):  # noqa: F811
    base, slug, data = findings_site
    with recording_page(browser, base) as pg:
        pg.goto(f"{base}/{slug}/")
        pg.get_by_role("link", name="Findings").first.click()
        pg.wait_for_url(f"{base}/{slug}/findings/")
        assert "Findings" in pg.locator("h1").first.inner_text()
        rows = pg.locator("table tbody tr")
        assert rows.count() == len(data["layers"]) > 0
        text = pg.locator("article").inner_text()
        for line in data["verdicts"] or ["Too few indexed layers"]:
            assert line.split(" (")[0] in text
