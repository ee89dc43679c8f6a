"""Exact streaming top-k per unit on FAISS result heaps.

FAISS keeps, for every unit, a binary heap of the ``k`` best ``(score, id)`` pairs seen so
far; memory is ``units × k`` whatever the number of images. Ties go to the *lower* example
number, as if the full score matrix were sorted by ``(-score, id)``:

* FAISS' max-heap (``float_maxheap_array_t``, the one ``ResultHeap(keep_max=False)`` uses)
  orders equal values by id, so the element it evicts among tied worst values is the highest
  id; its min-heap (``keep_max=True``) would evict the *lowest*. So we store ``-score`` in a
  max-heap ("keep the k smallest negated scores").
* A new value enters only if strictly better than the heap's worst, so a later equal score
  never displaces an earlier one: ids must arrive in increasing order, which the stream
  guarantees (and ``merge`` arranges per unit).
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

EMPTY_ID = -1
NEUTRAL = np.finfo(np.float32).max  # what FAISS' max-heap holds in an empty slot


class TopK:
    """``units`` heaps of size ``k`` over float32 scores with int64 ids (example numbers)."""

    def __init__(self, units: int, k: int):
        self.units, self.k = int(units), int(k)
        self.neg = np.empty((units, k), dtype=np.float32)  # heap values: -score
        self.ids = np.empty((units, k), dtype=np.int64)
        self._heaps = self._wrap()
        self._heaps.heapify()

    def _wrap(self) -> faiss.float_maxheap_array_t:
        heaps = faiss.float_maxheap_array_t()
        heaps.k, heaps.nh = self.k, self.units
        heaps.val = faiss.swig_ptr(self.neg)
        heaps.ids = faiss.swig_ptr(self.ids)
        return heaps

    def add(self, scores: np.ndarray, ids: np.ndarray) -> None:
        """Add ``scores`` ``(n, units)`` of examples ``ids`` ``(n,)`` (increasing)."""
        n = len(ids)
        if n == 0:
            return
        neg = np.ascontiguousarray(-np.asarray(scores, dtype=np.float32).T)  # (units, n)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        # id_stride = 0: every unit's row of candidates shares the same ids.
        self._heaps.addn_with_ids(n, faiss.swig_ptr(neg), faiss.swig_ptr(ids), 0)

    def add_rows(self, neg: np.ndarray, ids: np.ndarray) -> None:
        """Add per-unit candidates ``(units, m)`` of negated scores and ids; each row's ids
        must be increasing among equal values (``merge`` sorts them)."""
        neg = np.ascontiguousarray(neg, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        self._heaps.addn_with_ids(neg.shape[1], faiss.swig_ptr(neg), faiss.swig_ptr(ids),
                                  neg.shape[1])

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, scores)``, each ``(units, k)``, best first, ties by lower id; empty slots
        hold id -1 and score -inf. The heaps are left intact."""
        order = np.lexsort((self.ids, self.neg), axis=-1)  # by -score, then id
        ids = np.take_along_axis(self.ids, order, axis=-1)
        scores = -np.take_along_axis(self.neg, order, axis=-1)
        empty = ids < 0
        scores[empty] = -np.inf
        ids[empty] = EMPTY_ID
        return ids, scores

    # -- checkpoint / merge ------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        return {"neg": self.neg.copy(), "ids": self.ids.copy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        """Restore heaps saved by ``state`` (same shape), in place."""
        self.neg[...] = state["neg"]
        self.ids[...] = state["ids"]

    @classmethod
    def merge(cls, parts: Sequence[TopK]) -> TopK:
        """The top-k of the union of disjoint streams, exactly as one stream would give."""
        first = parts[0]
        out = cls(first.units, first.k)
        neg = np.concatenate([p.neg for p in parts], axis=1)
        ids = np.concatenate([p.ids for p in parts], axis=1)
        neg = np.where(ids < 0, NEUTRAL, neg)
        order = np.argsort(np.where(ids < 0, np.iinfo(np.int64).max, ids), axis=1, kind="stable")
        out.add_rows(np.take_along_axis(neg, order, 1), np.take_along_axis(ids, order, 1))
        return out


def brute_force_topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: ``(ids, scores)`` ``(units, k)`` from a full ``(n, units)`` score matrix,
    sorted by ``(-score, id)``; for tests and checks."""
    n = scores.shape[0]
    ids = np.broadcast_to(np.arange(n), (scores.shape[1], n))
    order = np.lexsort((ids, -scores.T.astype(np.float32)), axis=-1)[:, :k]
    top_scores = np.take_along_axis(scores.T.astype(np.float32), order, -1)
    return order.astype(np.int64), top_scores
