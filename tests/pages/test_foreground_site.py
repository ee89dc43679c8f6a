"""feature.json's foreground from --masks: brute force per unit, and the same whatever the
index batch size."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipeline.data.synthetic import export_imagefolder
from pipeline.index.results import load_examples, load_layer_index
from pipeline.store import AtlasStore
from tests.conftest import demo_build


def _build(tmp_path, name, batch):
    out = tmp_path / name
    concepts = tmp_path / "concepts.txt"  # a short list: the 20,000 default words take ~30 s
    concepts.write_text("circle\nstripes\nring\ncheckerboard\nred\nblue\n")
    demo_build(out, "--layers", "2", "--channels", "0:3", "--steps", "2",
               "--dataset", f"imagefolder:{tmp_path / 'img'}", "--masks", str(tmp_path / "masks"),
               "--topk", "5", "--index-batch-size", str(batch), "--concepts", str(concepts))
    pages = sorted(out.glob("site/*/2/*/feature.json"), key=lambda p: int(p.parent.name))
    return out, [json.loads(p.read_text())["foreground"] for p in pages]


def test_foreground_in_feature_json(tmp_path):
    export_imagefolder(tmp_path / "img", 60, "validation", 64, masks=tmp_path / "masks")
    out, found = _build(tmp_path, "a", 7)
    assert len(found) == 3 and all(f["examples"] == 5 for f in found)
    assert _build(tmp_path, "b", 32)[1] == found
    store = AtlasStore(out)
    index, ids = load_layer_index(store, 2), load_examples(store).ids
    for unit, f in enumerate(found):  # brute force: pixel by pixel at the 8x8 grid
        shares, areas = [], []
        for j, n in enumerate(index.top_ids[unit]):
            # the demo model's eval transform: resize to 71 (crop_pct 0.9), centre crop 64
            with Image.open(tmp_path / "masks" / ids[n]) as im:
                big = np.asarray(im.convert("L").resize((71, 71), Image.NEAREST)) > 0
            mask = big[4:68, 4:68]
            amap = np.clip(index.maps[unit, j], 0, None)
            fg = np.array([[mask[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8].mean() >= 0.5
                            for c in range(8)] for r in range(8)])
            shares.append((amap * fg).sum() / amap.sum())
            areas.append(fg.mean())
        assert f["share"] == pytest.approx(np.mean(shares), abs=6e-5)  # 4 decimals
        assert f["area"] == pytest.approx(np.mean(areas), abs=6e-5)
        assert f["background_masked"] is None or f["background_masked"] > 0
        page = (next(out.glob(f"site/*/2/{unit}/index.html"))).read_text()
        assert "positive activation falls on the object" in page
        assert f"{f['share']:.0%}" in page and f"{f['area']:.0%}" in page
    layer_page = next(out.glob("site/*/2/index.html")).read_text()
    assert '<option value="f">by foreground share' in layer_page
    grid = json.loads(next(out.glob("site/*/2/units.json")).read_text())  # the grid's data
    assert sum(f is not None for f in grid["foreground"]) == 3
    assert grid["units"] == [0, 1, 2]
    for unit, f in enumerate(found):
        assert grid["foreground"][unit] == pytest.approx(f["share"], abs=1e-4)
        assert grid["area"][unit] == pytest.approx(f["area"], abs=1e-4)


def test_findings_carry_foreground(tmp_path):
    export_imagefolder(tmp_path / "img", 36, "validation", 64, masks=tmp_path / "masks")
    out, found = _build(tmp_path, "a", 16)
    data = json.loads(next(out.glob("site/*/findings/findings.json")).read_text())
    (layer,) = data["layers"]
    assert layer["foreground"] == pytest.approx(np.mean([f["share"] for f in found]), abs=1e-4)
    assert layer["area"] == pytest.approx(np.mean([f["area"] for f in found]), abs=1e-4)
    assert any("on the object" in v for v in data["verdicts"])
    ratios = [f["background_masked"] for f in found if f["background_masked"] is not None]
    # the median over units: one unit with a near-zero activation would swamp a mean
    assert ratios and layer["background_masked"] == pytest.approx(np.median(ratios), abs=1e-4)
    assert any("masking it leaves" in v for v in data["verdicts"])
    # the demo model classifies the demo's classes: its accuracy with either region masked
    c = data["classifier"]
    assert c is not None and c["examples"] == 36
    # the image folder numbers its classes alphabetically, the demo's head in its card's
    # order: scored by name, the model is as accurate as its card says (92.8%), not at chance
    assert c["accuracy"] > 0.8
    assert c == AtlasStore(out).experiments()["classifier"]
    assert any("the classifier loses" in v for v in data["verdicts"])
    page = next(out.glob("site/*/findings/index.html")).read_text()
    assert "The classifier without background or object" in page
