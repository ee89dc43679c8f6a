"""Bytes of the site (issue 23, item 1): feature.json's patch maps as bytes with their scale
(``assets.encode_maps``), read back by ``pipeline.open``; AVIF images; what a feature costs."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image, ImageFilter

import pipeline
from pipeline.index.results import load_layer_index
from pipeline.site import build_site
from pipeline.site.assets import (
    DISPLAY_MIN_PSNR,
    decode_maps,
    decode_record,
    display_bytes,
    encode_maps,
    expand_record,
    heatmap_scale,
)
from pipeline.store import (
    DISPLAY_QUALITIES,
    DISPLAY_SMOOTH_QUALITY,
    AtlasStore,
    display_copy_path,
    psnr,
)
from pipeline.testing.fake import make_fake_atlas, pattern, tiny_spec


def _within(maps: np.ndarray, enc: dict) -> float:
    """Largest error of the decoded maps, in quantization steps."""
    return float(np.abs(decode_maps(enc) - np.nan_to_num(maps)).max() / enc["scale"])


@pytest.mark.parametrize("bits", [8, 4])
def test_maps_round_trip(bits):
    rng = np.random.default_rng(0)
    for maps in (rng.gamma(2.0, 1.0, (16, 14, 14)),  # non-negative: no offset
                 rng.normal(0, 3, (5, 7, 7)),  # negative values: an offset
                 rng.uniform(-0.17, 0.01, (3, 4, 4)),  # GELU's range, nearly all negative
                 rng.normal(0, 1e-6, (2, 3, 3)) + 1e5):  # a large value, tiny spread
        enc = encode_maps(maps.astype(np.float32), bits=bits)
        assert enc["encoding"] == f"uint{bits}-base64" and enc["shape"] == list(maps.shape)
        assert ("offset" in enc) == (maps.min() < 0)
        assert _within(maps, enc) <= 0.5 + 1e-3
        assert enc["scale"] <= (max(maps.max(), 0) - min(maps.min(), 0)) / (2 ** bits - 1) * (
            1 + 1e-5)
        assert json.loads(json.dumps(enc)) == enc  # plain JSON: numbers, strings, lists


def test_maps_edge_cases():
    for value in (0.0, 2.5, -1.25):  # constant maps, all-zero maps among them
        maps = np.full((2, 3, 3), value, np.float32)
        enc = encode_maps(maps)
        assert _within(maps, enc) <= 0.5, value
        if value <= 0:  # 0 and a negative offset are exact
            assert np.array_equal(decode_maps(enc), maps), value
    zero = encode_maps(np.zeros((4, 2, 2)))
    assert "offset" not in zero and set(np.frombuffer(
        base64.b64decode(zero["data"]), np.uint8)) == {0}
    nan = encode_maps(np.array([[np.nan, 1.0]]))  # NaN counts as 0
    assert np.allclose(decode_maps(nan), [[0.0, 1.0]], rtol=0, atol=nan["scale"] / 2)
    empty = encode_maps(np.zeros((0, 14, 14)))
    assert empty["data"] == "" and decode_maps(empty).shape == (0, 14, 14)
    odd = encode_maps(np.arange(9, dtype=np.float32).reshape(1, 3, 3), bits=4)  # 9 nibbles
    assert len(base64.b64decode(odd["data"])) == 5
    assert _within(np.arange(9).reshape(1, 3, 3), odd) <= 0.5 + 1e-6
    shared = encode_maps(np.array([[0.5, 1.0]]), *heatmap_scale(np.array([-1.0, 2.0])))
    assert shared["offset"] == -1.0 and np.allclose(decode_maps(shared), [[0.5, 1.0]], rtol=0,
                                                    atol=shared["scale"] / 2)
    with pytest.raises(ValueError, match="unknown map encoding"):
        decode_maps({**zero, "encoding": "float32"})
    assert decode_record([{"m": zero}, 3]) == [{"m": [[[0.0] * 2] * 2] * 4}, 3]


@pytest.fixture(scope="module")
def demo_shaped(tmp_path_factory):
    """A fake atlas of the demo's shape (64-px images, 8 x 8 patches, top-12, 640 examples,
    quantiles and relations), 12 units in each of its 4 layers, and its site."""
    spec = tiny_spec(img_size=64, patch_size=8, embed_dim=96, depth=4, num_heads=3)
    for layer in spec.layers:
        object.__setattr__(layer, "units", 12)
    store = make_fake_atlas(tmp_path_factory.mktemp("demo") / "atlas", spec, topk=12,
                            n_examples=640, n_classes=12, vis_size=64, thumb_size=64)
    return store, build_site(store, workers=1)


def test_every_image_feature_json_names_is_written(demo_shaped):
    """Each example's thumbnail that a ``feature.json`` names exists, the quantile examples
    the page's script does not show among them (640 examples, each named by a few units)."""
    _, site = demo_shaped
    named = set()
    for path in site.rglob("feature.json"):
        rec = expand_record(json.loads(path.read_text()))
        for url in rec["top"]["image"] + rec["quantiles"]["examples"]["image"]:
            named.add((path.parent / url).resolve())
    missing = [p for p in named if not p.is_file()]
    assert len(named) > 300 and missing == []


def test_reader_maps_match_the_atlas(demo_shaped):
    store, site = demo_shaped
    for atlas in (pipeline.open(site), pipeline.open(store.root)):
        for layer in (0, 3):
            index = load_layer_index(AtlasStore(store.root), layer)
            for unit in (0, 5):
                record = atlas.feature(layer, unit)
                slots = [s for s, n in enumerate(index.top_ids[unit]) if n >= 0]
                top = np.asarray(record["top"]["maps"], np.float32)
                assert top.shape == (len(slots), 8, 8)
                raw = json.loads((site / record["permalink"] / "feature.json").read_text()) \
                    if atlas.path == site else None
                step = (raw or {"top": {"maps": encode_maps(index.maps[unit, slots])}})[
                    "top"]["maps"]["scale"]
                assert np.abs(top - index.maps[unit, slots]).max() <= step / 2 + 1e-6
                assert record["top"]["example"] == [int(index.top_ids[unit, s]) for s in slots]
                q = np.asarray(record["quantiles"]["examples"]["maps"])
                assert q.shape == (len(record["quantiles"]["examples"]["id"]), 8, 8)


def test_site_images_are_avif(demo_shaped):
    store, site = demo_shaped
    record = pipeline.open(site).feature(0, 0)
    folder = site / record["permalink"]
    for name in (record["visualization"], record["attribution"], record["top"]["image"][0]):
        data = (folder / name).read_bytes()
        assert name.endswith(".avif") and data[4:12] == b"ftypavif", name
        with Image.open(folder / name) as shown:
            assert shown.format == "AVIF" and shown.size == (64, 64)
    assert not list(site.rglob("*.png"))[:1] or all(  # PNGs only of the theme and handbook
        "assets" in p.parts for p in site.rglob("*.png"))
    assert all("assets" in p.parts for p in site.rglob("*.webp"))  # the handbook's sheets
    assert list((store.root / "visualize").rglob("*.png"))  # the atlas keeps its PNGs


def _decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def test_display_copy_keeps_38_db_at_the_quality_the_rule_picks():
    """The display copy's PSNR, recomputed here by hand, is at least 38 dB, and its quality
    is the one the rule picks from every candidate's PSNR, brute force: the first of the
    ladder that keeps 38 dB, or the lower smooth quality where the ladder's first keeps 6 dB
    more and it keeps 38; for a smooth, a busy and a noise image."""
    rng = np.random.default_rng(1)
    coarse = rng.integers(64, 192, (4, 4, 3), dtype=np.uint8)
    smooth = Image.fromarray(coarse).resize((64, 64), Image.BILINEAR).filter(
        ImageFilter.GaussianBlur(3))
    busy = Image.fromarray(pattern(3, 64))
    noise = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    picked = []
    for img in (smooth, busy, noise):
        data, db = display_bytes(img)
        pixels = np.asarray(img)
        mse = np.mean((_decoded(data).astype(np.float64) - pixels) ** 2)
        assert db == pytest.approx(10 * np.log10(255.0 ** 2 / mse)) and db >= DISPLAY_MIN_PSNR
        encoded = {}
        for q in (DISPLAY_SMOOTH_QUALITY, *DISPLAY_QUALITIES):
            buf = io.BytesIO()
            img.save(buf, format="AVIF", quality=q, subsampling="4:4:4", speed=8, max_threads=1)
            encoded[q] = (buf.getvalue(), psnr(_decoded(buf.getvalue()), pixels))
        first = next((q for q in DISPLAY_QUALITIES if encoded[q][1] >= DISPLAY_MIN_PSNR),
                     DISPLAY_QUALITIES[-1])
        if (first == DISPLAY_QUALITIES[0] and encoded[first][1] >= DISPLAY_MIN_PSNR + 6
                and encoded[DISPLAY_SMOOTH_QUALITY][1] >= DISPLAY_MIN_PSNR):
            first = DISPLAY_SMOOTH_QUALITY
        assert data == encoded[first][0], (first, {q: e[1] for q, e in encoded.items()})
        picked.append(first)
        png = io.BytesIO()
        img.save(png, format="PNG")
        assert len(data) < len(png.getvalue()) or first == DISPLAY_QUALITIES[-1]
        assert display_bytes(img) == (data, db)  # deterministic
    assert picked[0] == DISPLAY_SMOOTH_QUALITY and picked[1] != DISPLAY_SMOOTH_QUALITY


def test_display_copy_of_an_odd_mode_image():
    """Greyscale and palette images come out as RGB AVIF of the same pixels (38 dB)."""
    grey = Image.fromarray(pattern(5, 32)[..., 0])
    for img in (grey, grey.convert("P")):
        data, db = display_bytes(img)
        assert db >= DISPLAY_MIN_PSNR and data[4:12] == b"ftypavif"
        assert psnr(_decoded(data), np.asarray(img.convert("RGB"))) >= DISPLAY_MIN_PSNR


def test_site_links_the_display_copies_the_stages_wrote(demo_shaped, tmp_path):
    """The visualize and index stages write each image's AVIF beside its PNG; the site links
    it. An atlas from before those copies (or with the WebP ones of format 13) gets the very
    same bytes, encoded by the site."""
    import hashlib

    store, site = demo_shaped
    record = pipeline.open(site).feature(2, 3)
    folder = site / record["permalink"]
    png = store.vis_dir(2) / store.vis_image_name(3)
    copy = display_copy_path(png)
    with Image.open(png) as image:
        assert copy.read_bytes() == display_bytes(image)[0]
    shown = folder / record["visualization"]
    assert shown.read_bytes() == copy.read_bytes() and shown.stat().st_ino == copy.stat().st_ino
    thumbs = list((store.index_dir / "thumbs").glob("*.png"))
    assert thumbs and all(display_copy_path(p).is_file() for p in thumbs)

    def digests(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in root.rglob("*") if p.is_file()}

    older = tmp_path / "older"
    shutil.copytree(store.root, older, ignore=shutil.ignore_patterns("site", "*.avif"))
    assert not list(older.rglob("*.avif"))
    for png in sorted((older / "index" / "thumbs").glob("*.png"))[:3]:  # format 13's WebP copies
        with Image.open(png) as image:
            image.save(png.with_suffix(".webp"), lossless=True)
    assert digests(build_site(AtlasStore(older), workers=1)) == digests(site)


def _feature_bytes(site, record) -> dict[str, int]:
    folder = site / record["permalink"]
    return {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}


def test_demo_shaped_feature_bytes(demo_shaped):
    """What one feature's own files take at the demo's shape (the fake's images: smooth
    sinusoids, AVIF at 38 dB). Bytes, not time."""
    _, site = demo_shaped
    atlas = pipeline.open(site)
    sizes = [_feature_bytes(site, atlas.feature(layer, unit))
             for layer in atlas.layers for unit in atlas.units(layer)]
    js = max(s["feature.json"] for s in sizes)
    assert js <= 10 * 1024  # was ~27 KiB with decimal maps (format 9), ~11 KiB in format 10
    page = max(s["index.html"] for s in sizes)
    # the lean page (no heatmaps, Material's icons in atlas.css): was 34; its header's search,
    # palette and settings from shared scripts: ~25 -> ~23
    assert page <= 24 * 1024
    images = max(sum(n for name, n in s.items() if name.endswith(".avif")) for s in sizes)
    assert images <= 13 * 1024  # up to 4 images: 7.2 KiB a feature (13.4 as format 13's WebP)
    total = max(sum(s.values()) for s in sizes)
    assert total <= 46 * 1024  # 56 KiB before, with format 13's WebP


@pytest.mark.xfail(strict=True, reason="issue 23's target, reached by the real demo atlas "
                   "(29.8 KiB) but not by this fake at the demo's shape: ~38 KiB (bench_site "
                   "--bytes), of which the page's HTML ~13 KiB, feature.json ~9 KiB and the "
                   "fake's procedural AVIF images and thumbnails ~13.5 KiB, noise that "
                   "compresses far worse than real images (6.6 KiB on the real atlas)")
def test_demo_shaped_feature_within_30_kib(demo_shaped):
    _, site = demo_shaped
    atlas = pipeline.open(site)
    sizes = [sum(_feature_bytes(site, atlas.feature(layer, unit)).values())
             for layer in atlas.layers for unit in atlas.units(layer)]
    assert max(sizes) <= 30 * 1024


def test_site_leaves_out_theme_files_no_page_loads(demo_shaped):
    """Material's source maps and its search's other languages (some 2.2 MB) are not copied;
    what a page loads is (``theme_files``)."""
    from pipeline.site.theme_files import search_files

    _, site = demo_shaped
    assert not list(site.rglob("*.map"))
    assert not (site / "assets" / "javascripts" / "lunr").exists()
    assert list((site / "assets" / "javascripts").glob("bundle.*.min.js"))
    assert list((site / "assets" / "javascripts" / "workers").glob("search.*.min.js"))
    page = (site / pipeline.open(site).feature(0, 0)["permalink"] / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="((?:\.\./)+assets/[^"]+)"', page):
        assert (site / pipeline.open(site).feature(0, 0)["permalink"] / ref).resolve().is_file()
    assert search_files(["de"]) == {"assets/javascripts/lunr/min/lunr.de.min.js",
                                    "assets/javascripts/lunr/min/lunr.stemmer.support.min.js"}
