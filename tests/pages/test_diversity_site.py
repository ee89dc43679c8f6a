"""Several images per unit on the site: feature.json's ``diversity`` (format 12; its
``recognisability``, format 13) and the feature page's row of images, from small demo builds
with ``--diversity 2``."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pipeline
from pipeline.index.results import load_examples, load_layer_index
from pipeline.judge import ExampleEmbeddings, load_judge, measure_layer
from pipeline.site import serving
from pipeline.site.assets import expand_record
from pipeline.store import AtlasStore
from tests.conftest import demo_build
from tests.pages.test_browser import browser, recording_page  # noqa: F401 (the fixture)
from tests.pages.test_site import _check


class _Diversity(HTMLParser):
    """The ``<ol class="atlas-diversity">`` lists of a page: their images and texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lists: list[list[dict]] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "ol" and a.get("class") == "atlas-diversity":
            self._in = True
            self.lists.append([])
        elif self._in and tag == "img":
            self.lists[-1].append({"src": a["src"], "alt": a["alt"], "text": ""})

    def handle_endtag(self, tag: str) -> None:
        if tag == "ol":
            self._in = False

    def handle_data(self, data: str) -> None:
        if self._in and self.lists and self.lists[-1]:
            self.lists[-1][-1]["text"] += data


def _build(out: Path, *args: str, judge: str = "none") -> None:
    concepts = out.parent / "concepts.txt"  # a short list: the 20,000 default words take ~30 s
    concepts.write_text("circle\nstripes\nring\ncheckerboard\ndots\nred\nblue\nedge\n")
    demo_build(out, "--layers", "1", "--channels", "0:2", "--dataset", "synthetic:48",
               "--topk", "4", "--judge", judge, "--concepts", str(concepts), *args)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("diversity") / "atlas"
    _build(out, "--steps", "4", "--diversity", "2")
    return out


def _feature_dir(out: Path, unit: int) -> Path:
    return next(p for p in (out / "site").iterdir() if (p / "1" / "0").is_dir()) / "1" / str(unit)


def test_feature_json_has_the_further_images(built: Path):
    schema = json.loads((built / "site" / "schema" / "feature.schema.json").read_text())
    for unit in (0, 1):
        page = _feature_dir(built, unit)
        record = json.loads((page / "feature.json").read_text())
        assert record["format_version"] == 15
        _check(schema, record, str(page))
        div = record["diversity"]
        assert div["images"] == ["visualization.d1.avif"]
        assert (page / div["images"][0]).read_bytes()[4:12] == b"ftypavif"
        assert len(div["activations"]) == 1 and -1 <= div["similarity"] <= 1
        assert "diversity" not in record["recipes"][0]  # the record's own (format 11)
        assert expand_record(record)["recipes"][0]["diversity"] == div
        assert "diversity" in record["recipe"]["objective"]
        assert record["recipe"]["diversity_weight"] > 0
    with pytest.raises(AssertionError):
        _check(schema, {**record, "diversity": {"images": "visualization.d1.avif"}})
    opened = pipeline.open(built / "site").feature(1, 0)
    assert opened["recipes"][0]["diversity"]["images"] == ["visualization.d1.avif"]


def test_feature_page_shows_both_images_with_their_activations(built: Path):
    page = _feature_dir(built, 0)
    record = json.loads((page / "feature.json").read_text())
    parser = _Diversity()
    parser.feed((page / "index.html").read_text())
    assert len(parser.lists) == 1
    shown = parser.lists[0]
    assert [s["src"] for s in shown] == ["visualization.avif", "visualization.d1.avif"]
    assert [s["alt"] for s in shown] == ["Image 1 of 2, recipe default",
                                         "Image 2 of 2, recipe default"]
    for item, act in zip(shown, [record["activation"], *record["diversity"]["activations"]],
                         strict=True):
        assert float(item["text"]) == pytest.approx(act, rel=1e-3, abs=1e-4)
    html = (page / "index.html").read_text()
    assert "mean pairwise Gram similarity" in html and "#several-images-per-unit" in html


def test_one_image_per_unit_has_no_diversity(tmp_path: Path):
    out = tmp_path / "atlas"
    _build(out, "--steps", "2")
    page = _feature_dir(out, 0)
    record = json.loads((page / "feature.json").read_text())
    assert "diversity" not in record and "diversity_weight" not in record["recipe"]
    assert "atlas-diversity" not in (page / "index.html").read_text()
    assert not list(page.glob("*.d1.avif"))


def test_further_images_are_judged_on_the_first_ones_trials(tmp_path: Path):
    """With a judge, each further image has its own 2-AFC, measured on the image stored (the
    judge run again on it here), on the same trials as image 0's; the page states both."""
    out = tmp_path / "atlas"
    _build(out, "--steps", "4", "--diversity", "2", "--judge-trials", "6", judge="demo")
    schema = json.loads((out / "site" / "schema" / "feature.schema.json").read_text())
    store = AtlasStore(out)
    judge = load_judge("demo", "vit_tiny_patch16_224")
    embeddings = ExampleEmbeddings(judge, load_examples(store))
    index = load_layer_index(store, 1)
    for unit in (0, 1):
        page = _feature_dir(out, unit)
        record = json.loads((page / "feature.json").read_text())
        _check(schema, record, str(page))
        first = record["fidelity"]["recognisability"]
        [further] = record["diversity"]["recognisability"]
        assert further["trials"] == first["trials"] == 6
        assert further["afc"] == pytest.approx(further["right"] / 6)
        with Image.open(store.vis_dir(1) / store.vis_image_name(unit, 1)) as im:
            image = np.asarray(im.convert("RGB"))
        [again] = measure_layer(judge, embeddings, index, [unit], image[None],
                                f"{record['model']}/1", 6)
        assert again["right"] == further["right"]
        parser = _Diversity()
        parser.feed((page / "index.html").read_text())
        texts = [item["text"].strip() for item in parser.lists[0]]
        assert texts[0].endswith(f"judge {first['right']} in 6")
        assert texts[1].endswith(f"judge {further['right']} in 6")
    with pytest.raises(AssertionError):
        _check(schema, {**record, "diversity": {**record["diversity"],
                                                "recognisability": [{"trials": 6}]}})


def test_the_images_are_small_tiles_in_one_row_in_chromium(built: Path, browser):  # noqa: F811
    """The page lays the N images out as tiles under the visualization (Material's own list
    style once overrode the grid and drew each at the column's full width)."""
    page_dir = _feature_dir(built, 0)
    path = page_dir.relative_to(built / "site").as_posix()
    with serving(built / "site") as base, recording_page(browser, base) as pg:
        pg.goto(f"{base}/{path}/")
        boxes = pg.evaluate("""() => [...document.querySelectorAll('.atlas-diversity li')]
            .map(li => { const r = li.querySelector('img').getBoundingClientRect();
                         return [r.top, r.width]; })""")
        main = pg.evaluate("document.querySelector('.atlas-vis-img img').getBoundingClientRect()"
                           ".width")
    assert len(boxes) == 2 and boxes[0][0] == boxes[1][0]  # one row
    assert all(40 <= width <= main / 2 for _, width in boxes), (boxes, main)
