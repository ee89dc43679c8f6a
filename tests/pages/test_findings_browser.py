"""The Findings page in Chromium: reached from the model's navigation, its verdicts and
table shown, no console errors and no request leaving the site."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pipeline.site import serving
from tests.pages.test_browser import browser, recording_page  # noqa: F401 (fixtures)
from tests.pages.test_site import build_small_site


@pytest.fixture(scope="module")
def findings_site(tmp_path_factory) -> Iterator[tuple[str, str, dict]]:
    site = build_small_site(tmp_path_factory.mktemp("site"))
    found = next(site.glob("*/findings/findings.json"))
    with serving(site) as base:
        yield base, found.parent.parent.name, json.loads(found.read_text())


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


@pytest.fixture(scope="module")
def kinds_site(tmp_path_factory) -> Iterator[tuple[str, str, dict]]:
    """A fake atlas with FFN and key/query/value layers and the index's experiments."""
    from pipeline.models import create_model, spec_for
    from pipeline.models.spec import KINDS
    from pipeline.site import build
    from pipeline.store import atomic_write_json
    from pipeline.testing.fake import make_fake_atlas

    kw = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 24, "num_heads": 2}
    name = "vit_tiny_patch16_224"
    spec = spec_for(create_model(name, "random", kw), name, kw, KINDS)
    root = tmp_path_factory.mktemp("kinds")
    store = make_fake_atlas(root / "atlas", spec, topk=4, n_examples=24, vis_units=6,
                            relations=False, labels=False, model_kwargs=kw)
    atomic_write_json(store.experiments_path, {
        "format_version": 1, "fingerprint": "x", "images": 24,
        "classifier": {"examples": 20, "accuracy": 0.9, "background_masked": 0.85,
                       "foreground_masked": 0.4},
        "cls": {"examples": 24, "blocks": [0, 1], "kl": [0.01, 3.2], "agreement": [0.96, 0.1]}})
    site = build.build_site(store)
    found = next(site.glob("*/findings/findings.json"))
    with serving(site) as base:
        yield base, found.parent.parent.name, json.loads(found.read_text())


def test_findings_kinds_and_experiments_in_chromium(browser, kinds_site):  # noqa: F811
    base, slug, data = kinds_site
    assert [r["depth"] for r in data["by_depth"]] == [0, 1]
    assert [u["kind"] for u in data["sample"][0]["units"]] == ["ffn", "query", "key", "value"]
    with recording_page(browser, base) as pg:
        pg.goto(f"{base}/{slug}/findings/")
        text = pg.locator("article").inner_text()
        for line in data["verdicts"]:
            assert line.split(" (")[0] in text
        assert "Holds: the CLS token matters only at the end" in text
        assert "Holds: the classifier loses less without the background" in text
        # the per-layer table fits the article: no scrolling sideways to the foreground figures
        assert pg.eval_on_selector("article table", "t => t.scrollWidth <= t.clientWidth")
        sample = pg.locator(".atlas-findings-sample img")
        assert sample.count() == sum(len(s["units"]) for s in data["sample"]) == 8
        pg.wait_for_function("""Array.from(document.querySelectorAll(
            '.atlas-findings-sample img')).every(i => i.complete && i.naturalWidth > 0)""")
        first = data["sample"][0]["units"][2]  # a key channel: its own page
        pg.locator(".atlas-findings-sample a").nth(2).click()
        pg.wait_for_url(f"{base}/{first['page']}")
        assert f"key channels of block {data['sample'][0]['depth']} › channel {first['unit']}" \
            in pg.locator(".atlas-crumbs").inner_text()  # named by kind and block
