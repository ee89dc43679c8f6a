"""Similar units: the Pearson correlation of two units' profiles over the probe set, searched
exactly with FAISS.

A profile (``ProbeProfiles``: one unit's scores over the probe images) is standardized to zero
mean and unit norm; the inner product of two standardized profiles is their Pearson
correlation, so an exact inner-product search (``faiss.knn``, the brute-force kernel behind
``IndexFlatIP``: one BLAS product per block and a heap per query) gives every unit's top-k
correlated units. A unit that never varies over the probe set has a zero profile: it
correlates 0 with everything.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from pipeline.index.results import ProbeProfiles


def standardize(profiles: np.ndarray) -> np.ndarray:
    """``(n, units)`` profiles (any float dtype) → ``(units, n)`` float32 rows of zero mean and
    unit norm (zero rows for constant units): inner products are Pearson correlations.

    >>> x = standardize(np.array([[1, 2], [2, 4], [3, 7]], np.float16))
    >>> round(float(x[0] @ x[1]), 4), np.linalg.norm(x, axis=1).round(4).tolist()
    (0.9934, [1.0, 1.0])
    """
    x = np.ascontiguousarray(np.asarray(profiles).T, dtype=np.float32)  # (units, n)
    x -= x.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    norm = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))[:, None]
    scale = np.divide(1.0, norm, out=np.zeros_like(norm),
                      where=norm > 1e-6 * max(1e-30, float(norm.max(initial=0))))
    x *= scale.astype(np.float32)
    return x


@dataclass
class LayerProfiles:
    """One layer's standardized profiles with the channel id of each row."""

    layer: int
    units: np.ndarray  # (U,) int64 channel ids
    x: np.ndarray  # (U, n) float32 standardized (see ``standardize``)

    @classmethod
    def from_probe(cls, layer: int, probe: ProbeProfiles) -> LayerProfiles:
        units = probe.units if probe.units is not None else np.arange(probe.profiles.shape[1])
        return cls(layer, np.asarray(units, dtype=np.int64), standardize(probe.profiles))


def search(queries: np.ndarray, base: np.ndarray, k: int,
           exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products of each query row against ``base`` rows: ``(rows
    (Q, k) int64, scores (Q, k) float32)``, best first; ``-1`` / NaN where ``base`` has fewer
    rows. ``exclude_self``: queries are ``base`` itself and a row never lists itself.

    >>> x = standardize(np.array([[1, 2, 1], [2, 4, 0], [3, 7, 1]], np.float32))
    >>> rows, scores = search(x, x, 1, exclude_self=True)
    >>> rows.ravel().tolist(), [round(s, 3) for s in scores.ravel().tolist()]
    ([1, 0, 1], [0.993, 0.993, 0.115])
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    b = np.ascontiguousarray(base, dtype=np.float32)
    extra = 1 if exclude_self else 0
    want = min(k + extra, len(b))
    rows = np.full((len(q), k), -1, np.int64)
    scores = np.full((len(q), k), np.nan, np.float32)
    if want == 0 or len(q) == 0:
        return rows, scores
    d, i = faiss.knn(q, b, want, metric=faiss.METRIC_INNER_PRODUCT)
    if exclude_self:  # drop the query itself (or the last hit when it ranks below k)
        own = i == np.arange(len(q))[:, None]
        own[~own.any(axis=1), -1] = True
        keep = ~own
        i = i[keep].reshape(len(q), want - 1)
        d = d[keep].reshape(len(q), want - 1)
    m = i.shape[1]
    rows[:, :m], scores[:, :m] = i, d
    return rows, scores


@dataclass
class SimilarGroups:
    """Each unit's top-k per group (a layer of some model): arrays, rows as the query layer."""

    units: np.ndarray  # (U,) int64 channel ids of the query rows
    models: list[str]  # (G,) model of each group
    layers: np.ndarray  # (G,) int64 layer of each group
    ids: np.ndarray  # (U, G, k) int64 channel ids, best first; -1 = none
    scores: np.ndarray  # (U, G, k) float32 Pearson correlations; NaN = none

    def entries(self) -> dict[int, list[dict]]:
        """``{unit: [{"model", "layer", "unit", "score"}, ...]}``, group after group, best
        first within each."""
        out: dict[int, list[dict]] = {}
        for r, unit in enumerate(self.units.tolist()):
            row = []
            for g, (model, layer) in enumerate(zip(self.models, self.layers.tolist(),
                                                   strict=True)):
                for other, score in zip(self.ids[r, g].tolist(), self.scores[r, g].tolist(),
                                        strict=True):
                    if other >= 0:
                        row.append({"model": model, "layer": int(layer), "unit": int(other),
                                    "score": round(float(score), 4)})
            out[int(unit)] = row
        return out


def similar_groups(query: LayerProfiles, bases: list[LayerProfiles], k: int,
                   model: str, same_model: bool = True) -> SimilarGroups:
    """The top-``k`` correlated units of each unit of ``query`` in each of ``bases``
    (``same_model``: a unit is never its own neighbour in its own layer).

    >>> p = LayerProfiles(0, np.array([5, 6, 7]),
    ...                   standardize(np.array([[1, 2, 1], [2, 4, 0], [3, 7, 1]])))
    >>> similar_groups(p, [p], 1, "m").entries()[5]
    [{'model': 'm', 'layer': 0, 'unit': 6, 'score': 0.9934}]
    """
    ids, scores = [], []
    for base in bases:
        own = same_model and base.layer == query.layer
        rows, s = search(query.x, base.x, k, exclude_self=own)
        ids.append(np.where(rows >= 0, base.units[np.maximum(rows, 0)], -1))
        scores.append(s)
    g = len(bases)
    return SimilarGroups(
        units=query.units, models=[model] * g,
        layers=np.array([b.layer for b in bases], np.int64),
        ids=np.stack(ids, axis=1) if g else np.zeros((len(query.units), 0, k), np.int64),
        scores=np.stack(scores, axis=1) if g else np.zeros((len(query.units), 0, k),
                                                           np.float32))


def group_order(layer: int, layers: list[int]) -> list[int]:
    """Groups of a unit of ``layer``: its own layer first, then the others in order.

    >>> group_order(2, [0, 1, 2, 3])
    [2, 0, 1, 3]
    """
    return [layer] + [i for i in layers if i != layer]
