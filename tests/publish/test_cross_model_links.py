"""Similar units in another model of the same site: the page's script links them to that
model's feature pages (``feature.json``'s ``similar.slug``) where it has them, and the links
land on the right pages, checked in Chromium over a two-model site."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.site import serving
from pipeline.site.build import build_site, page_units
from pipeline.site.data import AtlasView
from pipeline.testing.fake import TRICKY_MODEL, fake_across, make_fake_atlas, tiny_spec
from tests.pages.test_browser import browser, recording_page  # noqa: F401 - the fixture

KW_A = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 16, "num_heads": 1}
KW_B = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 8, "num_heads": 1}
OTHER = "deit_tiny_patch16_224"


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> dict:
    """Two atlases of different models in one site; the first related to the second (as
    ``relate_atlases`` writes it), the second with pages for the units it visualized."""
    base = tmp_path_factory.mktemp("two-models")
    spec_a, spec_b = tiny_spec(**KW_A), tiny_spec(OTHER, **KW_B)
    a = make_fake_atlas(base / "a", spec_a, model_kwargs=KW_A, vis_units=20)
    b = make_fake_atlas(base / "b", spec_b, model_kwargs=KW_B, vis_units=10, index_layers=[0])
    for layer in range(len(spec_a.layers)):
        a.write_relations_across(OTHER, layer, "fake-across-b",
                                 fake_across(layer, spec_a, other_layers=2, other_units=32,
                                             model=spec_b.name))
    site = build_site([a, b], base / "site", workers=2)
    return {"site": site, "a": AtlasView(a), "b": AtlasView(b),
            "pages_b": {layer.index: page_units(b, layer) for layer in spec_b.layers}}


@pytest.fixture(scope="module")
def served(two_models) -> Iterator[str]:
    with serving(two_models["site"]) as base:
        yield base


def test_similar_units_of_another_model_link_to_its_pages(browser, served,  # noqa: F811
                                                          two_models):
    a, b, pages_b = two_models["a"], two_models["b"], two_models["pages_b"]

    def others(unit: int) -> list[tuple]:
        """(model, layer, unit, slug) of the similar units in other models that ``unit`` of
        layer 0's ``feature.json`` lists, as its page draws them: best first."""
        sim = json.loads(Path(two_models["site"], a.slug, "0", str(unit), "feature.json")
                         .read_text())["similar"]
        found = [(m, layer, u, sim["slug"][n] if "slug" in sim else None, score)
                 for n, (m, layer, u, score) in enumerate(zip(
                     sim["model"], sim["layer"], sim["unit"], sim["score"], strict=True))
                 if m is not None]
        return [e[:4] for e in sorted(found, key=lambda e: -e[4])]

    # a unit with similar units in the other model that has pages for some of them
    mine = next(u for u in range(20) if len({bool(e[3]) for e in others(u)
                                             if e[0] == OTHER}) == 2)
    other = others(mine)
    in_b = [e for e in other if e[0] == OTHER]
    assert {e[1] for e in in_b} == {0, 1} and {e[0] for e in other} == {OTHER, TRICKY_MODEL}
    # a unit of the other model has a link where that model has its page, and only there
    assert [e[3] for e in in_b] == [b.slug if e[2] in pages_b.get(e[1], []) else None
                                    for e in in_b]
    assert any(e[3] is None for e in in_b)  # the other model's units without a page
    with recording_page(browser, served) as page:
        page.goto(f"{served}/{a.slug}/0/{mine}/")
        page.wait_for_selector(".atlas-similar[data-drawn]")
        other = other[:int(page.locator(".atlas-similar").get_attribute("data-shown"))]
        linked = [e for e in other if e[3]]
        links = page.locator(".atlas-sim-list[data-group='2'] > a")
        hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
        assert hrefs == [f"../../../{b.slug}/{layer}/{unit}/" for _, layer, unit, _ in linked]
        captions = links.locator("span:not(.atlas-novis)").all_text_contents()
        assert captions == [f"{OTHER} · L{layer} · unit {unit}" for _, layer, unit, _ in linked]
        # another model's unit shows its visualization where it has one (``thumb``), the file
        # beside its page; one without (an indexed unit not visualized) a placeholder
        shown = [b.thumbnails(layer).get(unit) for _, layer, unit, _ in linked]
        assert any(shown) and not all(shown)
        for n, (_, layer, unit, _) in enumerate(linked):
            img = links.nth(n).locator("img")
            if shown[n]:
                assert img.get_attribute("src") == f"../../../{b.slug}/{layer}/{unit}/{shown[n]}"
            else:
                assert img.count() == 0 and links.nth(n).locator(".atlas-novis").count() == 1
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_function(
            "Array.from(document.querySelectorAll('.atlas-sim-list img')).every(i => i.complete)")
        assert page.evaluate("Array.from(document.querySelectorAll('.atlas-sim-list img'))"
                             ".filter(i => !i.naturalWidth).length") == 0
        # the rest (the other model's units without a page, a model not in the site): text
        spans = page.locator(".atlas-sim-list[data-group='2'] > span")
        assert spans.count() == len(other) - len(linked)
        _, layer, unit, _ = linked[0]
        links.first.click()
        page.wait_for_url(f"{served}/{b.slug}/{layer}/{unit}/")
        assert page.locator('meta[name="atlas-model"]').get_attribute("content") == b.slug
        assert f"unit {unit}" in page.locator("h1").inner_text().lower()
