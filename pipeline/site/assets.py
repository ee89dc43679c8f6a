"""Cheap renderings of a feature's numbers: histogram as one SVG path, heatmaps as bytes.

Heatmaps are drawn in the browser: each top example's patch map is quantized to uint8 on a
scale shared by the feature's top-k (so overlays compare), base64-encoded into the page, and
painted on a ``rows x cols`` canvas through a fixed colormap that the legend also shows.
Measured against writing one PNG overlay per example (``scripts/bench_site.py``), this costs
no files and no encoder time.
"""

from __future__ import annotations

import base64
import math
import os
from pathlib import Path

import numpy as np

from pipeline.store import atomic_write_bytes

HIST_W, HIST_H = 300, 80


def heatmap_scale(maps: np.ndarray) -> tuple[float, float]:
    """``(lo, hi)`` shared by a feature's maps: ``lo = min(0, min)``, ``hi = max``."""
    if maps.size == 0:
        return 0.0, 1.0
    lo = min(0.0, float(maps.min()))
    hi = float(maps.max())
    return lo, hi if hi > lo else lo + 1.0


def encode_heatmaps(maps: np.ndarray, lo: float, hi: float) -> list[str]:
    """``(k, rows, cols)`` float maps to base64 strings of row-major uint8 values."""
    q = np.clip(np.rint((maps - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    return [base64.b64encode(m.tobytes()).decode("ascii") for m in q]


def encode_heatmaps4(maps: np.ndarray, lo: float, hi: float) -> list[str]:
    """As ``encode_heatmaps`` at 4 bits a patch (16 levels, two patches a byte, high nibble
    first; an odd count ends in a zero nibble): the small quantile thumbnails' overlays, at
    half the bytes."""
    q = np.clip(np.rint((maps - lo) * (15.0 / (hi - lo))), 0, 15).astype(np.uint8)
    out = []
    for m in q.reshape(len(q), -1):
        if len(m) % 2:
            m = np.append(m, np.uint8(0))
        out.append(base64.b64encode(((m[0::2] << 4) | m[1::2]).tobytes()).decode("ascii"))
    return out


def significant_decimals(values: np.ndarray, digits: int = 4) -> int:
    """Decimals that keep ``digits`` significant digits of the largest magnitude in ``values``."""
    top = float(np.abs(values).max()) if values.size else 0.0
    if top == 0.0 or not math.isfinite(top):
        return digits
    return max(0, digits - 1 - math.floor(math.log10(top)))


def histogram_path(counts: np.ndarray) -> str:
    """Bars of ``counts`` (log scale) as one SVG path in a ``HIST_W x HIST_H`` box."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.size == 0:
        return ""
    heights = np.log1p(counts)
    top = heights.max() or 1.0
    width = HIST_W / counts.size
    parts = []
    for i, h in enumerate(heights):
        if h <= 0:
            continue
        bar = h / top * HIST_H
        parts.append(f"M{i * width:.1f} {HIST_H}v{-bar:.1f}h{width * 0.9:.1f}v{bar:.1f}z")
    return "".join(parts)


def clip_histogram(counts: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``counts`` and ``edges`` without the empty bins at either end (all of them when every
    bin is empty), so that the axis spans the scores images reached.

    >>> c, e = clip_histogram(np.array([0, 2, 0, 1, 0, 0]), np.arange(7.0))
    >>> c.tolist(), e.tolist()
    ([2, 0, 1], [1.0, 2.0, 3.0, 4.0])
    """
    counts, edges = np.asarray(counts), np.asarray(edges)
    full = np.flatnonzero(counts)
    if full.size == 0:
        return counts, edges
    lo, hi = int(full[0]), int(full[-1]) + 1
    return counts[lo:hi], edges[lo:hi + 1]


def histogram_x(value: float, edges: np.ndarray) -> float | None:
    """Horizontal position of ``value`` on a histogram drawn over ``edges``."""
    lo, hi = float(edges[0]), float(edges[-1])
    if not (math.isfinite(value) and hi > lo):
        return None
    return round(min(max((value - lo) / (hi - lo), 0.0), 1.0) * HIST_W, 1)


def link_or_copy(src: Path, dst: Path) -> None:
    """Put ``src`` at ``dst`` atomically: a hard link where the file system allows, else a copy.

    Linked files share the store's inode, so they are made world-readable (as pages are).
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        os.link(src, tmp)
    except OSError:
        atomic_write_bytes(dst, Path(src).read_bytes())
        return
    if os.stat(tmp).st_mode & 0o444 != 0o444:
        os.chmod(tmp, 0o644)
    os.replace(tmp, dst)
