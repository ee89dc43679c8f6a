"""Foreground share, area, map entropy and masking against brute force on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.index.foreground import (
    foreground_share,
    normalized_entropies,
    normalized_entropy,
    patch_foreground,
    replace_region,
)


def _brute(maps, masks, grid):
    """Pixel by pixel, patch by patch, example by example, with plain loops."""
    rows, cols = grid
    shares, areas = [], []
    for amap, mask in zip(maps, masks, strict=True):
        if mask is None:
            continue
        h, w = len(mask), len(mask[0])
        ph, pw = h // rows, w // cols
        pos = fg_pos = 0.0
        fg_patches = 0
        for r in range(rows):
            for c in range(cols):
                obj = sum(mask[y][x] != 0 for y in range(r * ph, (r + 1) * ph)
                          for x in range(c * pw, (c + 1) * pw))
                is_fg = obj >= 0.5 * ph * pw
                fg_patches += is_fg
                a = max(float(amap[r][c]), 0.0)
                pos += a
                fg_pos += a if is_fg else 0.0
        if pos > 0:
            shares.append(fg_pos / pos)
            areas.append(fg_patches / (rows * cols))
    if not shares:
        return None, None, 0
    return sum(shares) / len(shares), sum(areas) / len(areas), len(shares)


@pytest.mark.parametrize("seed", range(5))
def test_share_and_area_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    grid, size, k = (3, 4), (12, 16), 6
    maps = rng.normal(size=(k, *grid))
    maps[0] = -1.0  # no positive activation: left out
    masks = [None if i == 1 else (rng.random(size) < rng.random()).astype(np.uint8) * 255
             for i in range(k)]
    masks[2] = np.zeros(size, np.uint8)  # all background: share 0, area 0
    masks[2][:2, :2] = 1  # exactly half of patch (0, 0): foreground
    fg = np.stack([np.zeros(grid) if m is None else patch_foreground(m, grid) for m in masks])
    got = foreground_share(maps, fg, np.array([m is not None for m in masks]))
    share, area, n = _brute(maps, masks, grid)
    assert got.examples == n == k - 2
    assert got.share == pytest.approx(share) and got.area == pytest.approx(area)


def test_no_usable_example():
    got = foreground_share(np.ones((2, 2, 2)), np.ones((2, 2, 2)), np.array([False, False]))
    assert got.to_dict() == {"share": None, "area": None, "examples": 0,
                             "background_masked": None, "foreground_masked": None}


def test_entropy_and_masking_by_hand():
    amap = np.array([[1.0, 1.0], [2.0, -3.0]])
    p = [0.25, 0.25, 0.5]
    assert normalized_entropy(amap) == pytest.approx(-sum(x * math.log(x) for x in p)
                                                     / math.log(4))
    img = np.random.default_rng(0).random((3, 4, 4)).astype(np.float32)
    mask = np.zeros((4, 4))
    mask[1:3, 1:3] = 7
    for region in ("background", "foreground"):
        out = replace_region(img, mask, region)
        for y in range(4):
            for x in range(4):
                replaced = (mask[y, x] == 0) == (region == "background")
                want = img.reshape(3, -1).mean(1) if replaced else img[:, y, x]
                np.testing.assert_allclose(out[:, y, x], want, rtol=1e-6)


def test_masks_through_the_models_transform_and_a_layer(tmp_path):
    from PIL import Image

    from pipeline.data.synthetic import make_mask
    from pipeline.index.foreground import layer_foreground, load_mask

    cfg = {"input_size": (3, 32, 32), "interpolation": "bicubic", "crop_pct": 1.0,
           "crop_mode": "center", "mean": (0.5,) * 3, "std": (0.5,) * 3}
    path = tmp_path / "m.png"
    make_mask(0, 1, 64).save(path)
    got = load_mask(path, cfg)
    want = np.asarray(make_mask(0, 1, 64).resize((32, 32), Image.NEAREST)) > 0
    assert got.shape == (32, 32) and np.array_equal(got, want)
    assert load_mask(tmp_path / "none.png", cfg) is None
    rng = np.random.default_rng(0)
    ids = np.array([[0, 1, 2], [2, 0, -1]])
    maps = rng.normal(size=(2, 3, 4, 4))
    masks = {0: got, 1: None, 2: ~got}
    out = layer_foreground(ids, maps, masks.get)
    for row, f in enumerate(out):  # brute force per unit
        keep = [j for j, n in enumerate(ids[row]) if n >= 0 and masks[n] is not None]
        share, area, n = _brute([maps[row, j] for j in keep],
                                [masks[ids[row, j]].astype(int).tolist() for j in keep], (4, 4))
        assert f.examples == n and f.share == pytest.approx(share)
        assert f.area == pytest.approx(area)


def test_entropies_of_many_maps_at_once_against_brute_force():
    """``normalized_entropies`` (the findings' per-layer pass) gives each map's entropy as a
    plain loop over its patches does, NaN for a map with no positive activation, in the
    maps' leading shape."""
    rng = np.random.default_rng(3)
    maps = rng.normal(size=(5, 4, 3, 3))
    maps[1, 2] = -1.0  # nothing positive
    maps[2, 0] = 0.0
    maps[3, 1] = 0.0
    maps[3, 1, 2, 2] = 4.0  # one patch: entropy 0
    got = normalized_entropies(maps)
    assert got.shape == (5, 4)
    for u in range(5):
        for j in range(4):
            p = [max(x, 0.0) for x in maps[u, j].ravel()]
            if sum(p) == 0:
                assert math.isnan(got[u, j]) and normalized_entropy(maps[u, j]) is None
                continue
            p = [x / sum(p) for x in p]
            want = -sum(x * math.log(x) for x in p if x > 0) / math.log(9)
            assert got[u, j] == pytest.approx(want, abs=1e-12)
            assert normalized_entropy(maps[u, j]) == pytest.approx(want, abs=1e-12)
    assert got[3, 1] == 0.0
