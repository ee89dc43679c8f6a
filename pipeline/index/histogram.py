"""Streaming per-unit histograms that merge exactly, whatever the batching or sharding.

Each unit has ``bins`` bins of width ``w = 2**e`` on the global grid of multiples of ``w``:
bin ``i`` covers ``[(origin + i)·w, (origin + i + 1)·w)`` with ``origin = floor(min / w)``.
``e`` is the smallest exponent for which ``[min, max]`` fits in ``bins`` bins, but no finer
than ``2**-EDGE_BITS`` of the largest magnitude seen (float32 edges stay exact for units that
barely vary) nor than ``2**MIN_EXP`` (units that are always 0). Because the grid of ``2w``
coarsens the grid of ``w`` (every bin nests in one bin of the next width), growing the range
only merges neighbouring bins, and the final counts are a function of the *set* of scores
alone: batch size, order and the number of processes make no difference, and per-process
histograms merge exactly. At least about half of the bins cover the observed range.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MIN_EXP = -60  # narrowest bin of a unit that is always 0
EDGE_BITS = 20  # narrowest bin relative to the largest magnitude: float32 holds 24 bits
DEFAULT_BINS = 64


def fit_exponent(lo: np.ndarray, hi: np.ndarray, bins: int, floor: np.ndarray) -> np.ndarray:
    """Smallest ``e ≥ floor`` (and ≥ the magnitude floor, see the module doc) with
    ``floor(hi / 2**e) - floor(lo / 2**e) ≤ bins - 1``. Depends on ``(lo, hi)`` only, and
    grows with them: the result is the same however the scores arrived."""
    lo, hi = lo.astype(np.float64), hi.astype(np.float64)
    _, mag = np.frexp(np.maximum(np.abs(lo), np.abs(hi)))
    floor = np.maximum(floor, np.maximum(mag.astype(np.int64) - EDGE_BITS, MIN_EXP))
    span = np.maximum(hi - lo, np.finfo(np.float64).tiny)
    guess = np.ceil(np.log2(span / bins)).astype(np.int64) - 1  # a lower bound, minus slack
    e = np.maximum(guess, floor).astype(np.int64)
    while True:
        w = np.ldexp(1.0, e)
        bad = np.floor(hi / w) - np.floor(lo / w) > bins - 1
        if not bad.any():
            return e
        e = e + bad


class StreamingHistogram:
    """``units`` histograms of ``bins`` power-of-two-wide bins (see the module doc)."""

    def __init__(self, units: int, bins: int = DEFAULT_BINS):
        self.units, self.bins = units, bins
        self.counts = np.zeros((units, bins), dtype=np.int64)
        self.exp = np.full(units, MIN_EXP, dtype=np.int64)
        self.origin = np.zeros(units, dtype=np.int64)
        self.lo = np.full(units, np.inf, dtype=np.float32)
        self.hi = np.full(units, -np.inf, dtype=np.float32)
        self._offset = np.arange(units, dtype=np.int64) * bins  # row starts in counts.ravel()

    def _regrid(self, exp: np.ndarray, origin: np.ndarray) -> None:
        """Move counts to a coarser-or-equal grid (``exp ≥ self.exp``)."""
        moved = (exp != self.exp) | (origin != self.origin)
        if moved.any():
            rows = np.flatnonzero(moved)
            shift = (exp - self.exp)[rows, None]
            old = self.origin[rows, None] + np.arange(self.bins)
            new = (old >> shift) - origin[rows, None]  # >> floors: exact bin nesting
            new = np.clip(new, 0, self.bins - 1)  # only empty bins fall outside the range
            counts = np.zeros((len(rows), self.bins), dtype=np.int64)
            np.add.at(counts, (np.arange(len(rows))[:, None], new), self.counts[rows])
            self.counts[rows] = counts
        self.exp, self.origin = exp, origin

    def _grow(self, lo: np.ndarray, hi: np.ndarray) -> None:
        lo, hi = np.minimum(self.lo, lo), np.maximum(self.hi, hi)
        exp = fit_exponent(lo, hi, self.bins, self.exp)
        origin = np.floor(lo.astype(np.float64) / np.ldexp(1.0, exp)).astype(np.int64)
        self._regrid(exp, origin)
        self.lo, self.hi = lo, hi

    def bins_of(self, scores: np.ndarray) -> np.ndarray:
        """``(n, units)`` int64 bin of each score on the current grid (in range for scores
        within [lo, hi])."""
        # x · 2**-e is exact in float32 and |x| / w < 2**(EDGE_BITS + 1): floor is exact too
        inv = np.ldexp(np.float32(1.0), -self.exp).astype(np.float32)
        idx = np.floor(np.asarray(scores, dtype=np.float32) * inv).astype(np.int64)
        idx -= self.origin
        return idx

    def add(self, scores: np.ndarray) -> np.ndarray | None:
        """Count ``scores`` ``(n, units)`` (finite float32); returns their bins
        (``bins_of`` after the grid grew to hold them)."""
        if scores.shape[0] == 0:
            return None
        lo, hi = scores.min(axis=0), scores.max(axis=0)
        if (lo < self.lo).any() or (hi > self.hi).any():
            self._grow(lo, hi)
        idx = self.bins_of(scores)
        self.counts += np.bincount((idx + self._offset).ravel(),
                                   minlength=self.units * self.bins).reshape(self.units, self.bins)
        return idx

    def edges(self) -> np.ndarray:
        """``(units, bins + 1)`` float32 bin edges."""
        w = np.ldexp(1.0, self.exp)[:, None]
        return ((self.origin[:, None] + np.arange(self.bins + 1)) * w).astype(np.float32)

    def subset(self, rows: np.ndarray) -> StreamingHistogram:
        """A copy holding only units ``rows`` (each unit's grid is its own, so it equals the
        histogram of those units' scores alone)."""
        out = StreamingHistogram(len(rows), self.bins)
        out.load({key: getattr(self, key)[rows] for key in ("counts", "exp", "origin", "lo",
                                                            "hi")})
        return out

    # -- checkpoint / merge ------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts.copy(), "exp": self.exp.copy(),
                "origin": self.origin.copy(), "lo": self.lo.copy(), "hi": self.hi.copy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        for key, value in state.items():
            setattr(self, key, np.array(value, dtype=getattr(self, key).dtype))

    @classmethod
    def merge(cls, parts: Sequence[StreamingHistogram]) -> StreamingHistogram:
        out = cls(parts[0].units, parts[0].bins)
        parts = [p for p in parts if np.isfinite(p.lo).all()]  # drop processes that saw nothing
        if not parts:
            return out
        lo = np.minimum.reduce([p.lo for p in parts])
        hi = np.maximum.reduce([p.hi for p in parts])
        out._grow(lo, hi)
        out.exp = np.maximum.reduce([out.exp] + [p.exp for p in parts])
        out.origin = np.floor(out.lo.astype(np.float64) / np.ldexp(1.0, out.exp)).astype(np.int64)
        for p in parts:
            q = cls(p.units, p.bins)
            q.load(p.state())
            q._regrid(out.exp, out.origin)
            out.counts += q.counts
        return out
