"""Foreground share, area, map entropy and masking against brute force on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.index.foreground import (
    foreground_share,
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
    assert got.to_dict() == {"share": None, "area": None, "examples": 0}


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
