"""Quantile examples: for each unit, examples from intervals of its activation range, besides
its top-k.

The intervals (up to ``intervals`` between the dataset mean and the max, e.g. 8) are known
only when the scan ends, so the scan keeps a finer, exactly mergeable superset: for every
(unit, histogram bin) the ``k`` examples with the smallest *key*, a fixed 64-bit hash of the
example number (``example_key``, a bijection: no two examples share a key). The bins are the
histogram's power-of-two bins (``histogram``): when its range grows, bins only merge pairwise,
and the ``k`` smallest keys of a merged bin are among the ``k`` smallest of its two halves.
At the end each interval is a run of whole bins from the bin holding the mean to the bin
holding the max, and its examples are the ``k`` smallest keys among its bins' samples: exactly
the ``k`` smallest keys among *all* the examples whose score falls in it. The choice is a
function of the set of (example, score) pairs alone: batch size, resume points and the
number of processes make no difference, and parts merge exactly.

One key for every unit: units that share a region of their range share examples, so the
maps pass re-reads and thumbnails few extra images. Memory ``units × bins × k`` (12 bytes
each: for ViT-B, 3,072 units × 64 bins × 4 = 9 MB per layer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.index.histogram import StreamingHistogram

EMPTY = -1
_NO_KEY = np.iinfo(np.uint64).max


def example_key(numbers: np.ndarray) -> np.ndarray:
    """``uint64`` key of each example number (splitmix64: a bijection).

    >>> example_key(np.array([0, 1, 2])).tolist()
    [16294208416658607535, 10451216379200822465, 10905525725756348110]
    """
    z = np.asarray(numbers).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _smallest(cell: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """Of entries ``(cell, id)``: the order keeping each cell's ``k`` smallest keys, with
    their cell and rank (0 = smallest key)."""
    order = np.lexsort((example_key(ids), cell))
    cell = cell[order]
    starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
    rank = np.arange(len(cell)) - np.repeat(starts, np.diff(np.r_[starts, len(cell)]))
    keep = rank < k
    return order[keep], cell[keep], rank[keep]


class BinSamples:
    """Per (unit, histogram bin): the ``k`` examples with the smallest key, on the grid of the
    ``StreamingHistogram`` it follows (see the module docstring)."""

    def __init__(self, units: int, bins: int, k: int):
        self.units, self.bins, self.k = units, bins, k
        self.ids = np.full((units, bins, k), EMPTY, np.int64)  # by increasing key
        self.scores = np.zeros((units, bins, k), np.float32)
        fresh = StreamingHistogram(units, bins)
        self.exp, self.origin = fresh.exp.copy(), fresh.origin.copy()
        self._worst = np.full((units, bins), _NO_KEY, np.uint64)  # key of the k-th sample

    def _pool(self, cells: np.ndarray, pos: np.ndarray, ids: np.ndarray,
              scores: np.ndarray) -> None:
        """Replace the samples of the flat (unit × bins + bin) ``cells`` with the ``k``
        smallest keys of entries ``(pos = position in cells, id, score)``."""
        keep, pos, rank = _smallest(pos, ids, self.k)
        new_ids = np.full((len(cells), self.k), EMPTY, np.int64)
        new_scores = np.zeros((len(cells), self.k), np.float32)
        new_ids[pos, rank] = ids[keep]
        new_scores[pos, rank] = scores[keep]
        self.ids.reshape(-1, self.k)[cells] = new_ids
        self.scores.reshape(-1, self.k)[cells] = new_scores
        last = new_ids[:, -1]
        self._worst.reshape(-1)[cells] = np.where(last >= 0, example_key(np.maximum(last, 0)),
                                                  _NO_KEY)

    def _update_worst(self) -> None:
        last = self.ids[:, :, -1]
        self._worst = np.where(last >= 0, example_key(np.maximum(last, 0)), _NO_KEY)

    def follow(self, hist: StreamingHistogram) -> None:
        """Move to ``hist``'s grid (coarser or equal: bins merge, samples pool)."""
        moved = (hist.exp != self.exp) | (hist.origin != self.origin)
        rows = np.flatnonzero(moved & (self.ids[:, :, 0] >= 0).any(axis=1))
        if len(rows):
            shift = (hist.exp - self.exp)[rows, None]
            old = self.origin[rows, None] + np.arange(self.bins)
            new = np.clip((old >> shift) - hist.origin[rows, None], 0, self.bins - 1)
            valid = self.ids[rows] >= 0  # (R, bins, k)
            pos = (np.arange(len(rows))[:, None] * self.bins + new)[:, :, None]
            pos = np.broadcast_to(pos, valid.shape)[valid]
            cells = (rows[:, None] * self.bins + np.arange(self.bins)).ravel()
            self._pool(cells, pos, self.ids[rows][valid], self.scores[rows][valid])
        self.exp, self.origin = hist.exp.copy(), hist.origin.copy()

    def add(self, scores: np.ndarray, numbers: np.ndarray, bins: np.ndarray) -> None:
        """Add ``scores`` ``(n, units)`` of examples ``numbers`` whose histogram bins (on the
        grid this follows) are ``bins`` ``(n, units)``."""
        if len(numbers) == 0:
            return
        keys = example_key(numbers)
        cand = keys[:, None] < self._worst[np.arange(self.units)[None, :], bins]
        if not cand.any():
            return
        r, u = np.nonzero(cand)
        cells = u * self.bins + bins[r, u]
        touched, pos = np.unique(cells, return_inverse=True)
        old_ids = self.ids.reshape(-1, self.k)[touched]
        valid = old_ids >= 0
        self._pool(touched, np.concatenate([np.nonzero(valid)[0], pos.ravel()]),
                   np.concatenate([old_ids[valid], np.asarray(numbers, np.int64)[r]]),
                   np.concatenate([self.scores.reshape(-1, self.k)[touched][valid],
                                   scores[r, u].astype(np.float32)]))

    # -- checkpoint / merge ------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        return {"ids": self.ids.copy(), "scores": self.scores.copy(), "exp": self.exp.copy(),
                "origin": self.origin.copy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        for key in ("ids", "scores", "exp", "origin"):
            setattr(self, key, np.array(state[key], dtype=getattr(self, key).dtype))
        self._update_worst()

    @classmethod
    def merge(cls, parts: Sequence[BinSamples], hist: StreamingHistogram) -> BinSamples:
        """The samples of the union of disjoint streams, on the merged histogram's grid."""
        first = parts[0]
        out = cls(first.units, first.bins, first.k)
        out.exp, out.origin = hist.exp.copy(), hist.origin.copy()
        cells, ids, scores = [], [], []
        for p in parts:
            q = cls(p.units, p.bins, p.k)
            q.load(p.state())
            q.follow(hist)
            valid = q.ids >= 0
            cells.append(np.nonzero(valid.reshape(-1, q.k))[0])
            ids.append(q.ids[valid])
            scores.append(q.scores[valid])
        out._pool(np.arange(out.units * out.bins), np.concatenate(cells), np.concatenate(ids),
                  np.concatenate(scores))
        return out

    # -- result ------------------------------------------------------------------------------
    def select(self, hist: StreamingHistogram, mean: np.ndarray, intervals: int,
               k: int | None = None) -> Quantiles:
        """Up to ``intervals`` runs of whole bins from the bin holding ``mean`` to the bin
        holding the max (as equal in bins as can be), and each one's ``k`` examples of
        smallest key, by decreasing score (see the module docstring)."""
        self.follow(hist)
        k = self.k if k is None else min(k, self.k)
        units, bins, q = self.units, self.bins, intervals
        filled = hist.counts > 0
        top = np.where(filled.any(axis=1), bins - 1 - np.argmax(filled[:, ::-1], axis=1), -1)
        inv = np.ldexp(np.float32(1.0), -hist.exp).astype(np.float32)
        low = np.floor(np.asarray(mean, np.float32) * inv).astype(np.int64) - hist.origin
        low = np.clip(low, 0, np.maximum(top, 0))
        m = top - low + 1  # bins from the mean's to the max's (0: no data)
        n = np.minimum(q, np.maximum(m, 0))  # intervals of each unit
        b = np.arange(bins)[None, :]
        inside = (b >= low[:, None]) & (b <= top[:, None])
        which = np.where(inside, (b - low[:, None]) * n[:, None] // np.maximum(m, 1)[:, None],
                         -1)  # interval of each bin
        j = np.arange(q + 1)[None, :]
        bounds = low[:, None] + (j * m[:, None] + n[:, None] - 1) // np.maximum(n, 1)[:, None]
        all_edges = hist.edges()
        edges = np.take_along_axis(all_edges, np.clip(bounds, 0, bins), axis=1)
        edges = np.where(j <= n[:, None], edges, np.nan).astype(np.float32)
        ids = np.full((units * q, k), EMPTY, np.int64)
        scores = np.full((units * q, k), -np.inf, np.float32)
        valid = (self.ids >= 0) & (which >= 0)[:, :, None]
        if valid.any() and q > 0:
            cell = (np.arange(units)[:, None, None] * q + which[:, :, None])
            cell = np.broadcast_to(cell, valid.shape)[valid]
            sid, ssc = self.ids[valid], self.scores[valid]
            keep, cell, _ = _smallest(cell, sid, k)
            sid, ssc = sid[keep], ssc[keep]
            order = np.lexsort((sid, -ssc, cell))  # by decreasing score within each interval
            cell, sid, ssc = cell[order], sid[order], ssc[order]
            starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
            rank = np.arange(len(cell)) - np.repeat(starts, np.diff(np.r_[starts, len(cell)]))
            ids[cell, rank], scores[cell, rank] = sid, ssc
        return Quantiles(edges, ids.reshape(units, q, k), scores.reshape(units, q, k))


@dataclass
class Quantiles:
    """Each unit's intervals and their examples."""

    edges: np.ndarray  # (units, Q + 1) float32 bounds [edges[j], edges[j+1]); NaN past the last
    ids: np.ndarray  # (units, Q, k) int64 example numbers, by decreasing score; -1 = none
    scores: np.ndarray  # (units, Q, k) float32; -inf = none


def brute_force_quantiles(scores: np.ndarray, edges: np.ndarray, k: int) -> np.ndarray:
    """Reference: ``(units, Q, k)`` ids of the ``k`` smallest-key examples of a full ``(n,
    units)`` score matrix in each interval ``edges`` ``(units, Q + 1)`` (as a set: sorted by
    key, -1 padded); for tests."""
    units, q = edges.shape[0], edges.shape[1] - 1
    out = np.full((units, q, k), EMPTY, np.int64)
    keys = example_key(np.arange(len(scores)))
    for u in range(units):
        for j in range(q):
            lo, hi = edges[u, j], edges[u, j + 1]
            if np.isnan(hi):
                break
            hits = np.flatnonzero((scores[:, u] >= lo) & (scores[:, u] < hi))
            hits = hits[np.argsort(keys[hits], kind="stable")][:k]
            out[u, j, :len(hits)] = hits
    return out
