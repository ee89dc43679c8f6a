"""A map of each layer: units laid out in 2-D by their standardized profiles, and the layer's
most typical units.

* ``pca_coords``: PCA by subspace iteration on the units' Gram matrix (FAISS ``PCAMatrix``
  took 115 s on a ViT-B-sized layer, a LAPACK eigensolver 7-30 s, this about 2 s), the
  first two components with fixed signs.
* ``umap_coords``: ``umap-learn`` on the first ``PCA_DIMS`` components, fed the *exact*
  correlation neighbours from the similarity search (``precomputed_knn``), seeded: the same
  inputs give the same map.
* ``neighbour_preservation``: the share of each unit's top-10 correlated units that are among
  its 10 nearest units on the map (what a reader sees as "close").
* ``typical_units``: FAISS k-means on the PCA components; per cluster the unit nearest its
  centre, largest cluster first.
"""

from __future__ import annotations

import warnings

import faiss
import numpy as np

from pipeline.config import LAYER_MAPS

PCA_DIMS = 50
UMAP_NEIGHBOURS = 15
MAP_METHODS = LAYER_MAPS  # umap | pca; the option's values are checked in RelationsConfig


def pca_components(x: np.ndarray, dims: int = PCA_DIMS, iterations: int = 10,
                   seed: int = 0) -> np.ndarray:
    """``(U, n)`` standardized profiles → ``(U, d)`` float32 principal components (``d =
    min(dims, U, n)``): the top eigenvectors of the smaller of the units' Gram matrix and the
    images' covariance, by seeded subspace iteration (BLAS-3 products only: a dense LAPACK
    eigensolver is 5-30x slower here, more so after FAISS's OpenMP threads ran); each axis's
    sign fixed so its largest-magnitude coordinate is positive.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(30, 8)).astype(np.float32)
    >>> y = pca_components(x, 3)
    >>> y.shape, bool(np.allclose(np.abs(y), np.abs(exact_pca(x, 3)), atol=1e-3))
    ((30, 3), True)
    """
    x = np.asarray(x, dtype=np.float32)
    x = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)  # centre over units
    units, n = x.shape
    d = max(1, min(dims, units, n))
    gram = units <= n
    small = (x @ x.T if gram else x.T @ x).astype(np.float64)  # (U, U) or (n, n)
    m = len(small)
    q = min(m, d + 16)
    basis = np.random.default_rng(seed).standard_normal((m, q))
    for _ in range(iterations):
        basis = _orthonormal(_orthonormal(small @ basis))  # CholeskyQR2
    values, vectors = np.linalg.eigh(basis.T @ small @ basis)  # Rayleigh-Ritz, q × q
    vectors = basis @ vectors[:, ::-1][:, :d]
    values = values[::-1][:d]
    y = vectors * np.sqrt(np.maximum(values, 0)) if gram else x.astype(np.float64) @ vectors
    return _fix_signs(y)


def _orthonormal(p: np.ndarray) -> np.ndarray:
    """Orthonormal columns spanning ``p`` (Cholesky QR: one q × q factorization, the rest
    matrix products)."""
    c = p.T @ p
    c += np.eye(len(c)) * 1e-12 * np.trace(c)
    return p @ np.linalg.inv(np.linalg.cholesky(c)).T


def exact_pca(x: np.ndarray, dims: int = PCA_DIMS) -> np.ndarray:
    """Reference for ``pca_components``: the full SVD (slow at layer size; for tests)."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    d = max(1, min(dims, *x.shape))
    return _fix_signs(u[:, :d] * s[:d])


def _fix_signs(y: np.ndarray) -> np.ndarray:
    big = np.abs(y).argmax(axis=0)
    sign = np.sign(y[big, np.arange(y.shape[1])])
    return (y * np.where(sign == 0, 1, sign)).astype(np.float32)


def normalize(xy: np.ndarray) -> np.ndarray:
    """Scale ``(U, 2)`` coordinates into [0, 1] (one scale for both axes: the map keeps its
    aspect), centred on the shorter axis.

    >>> normalize(np.array([[0, 0], [4, 2], [2, 1]], np.float32)).tolist()
    [[0.0, 0.25], [1.0, 0.75], [0.5, 0.5]]
    """
    xy = np.asarray(xy, dtype=np.float64)
    if len(xy) == 0:
        return xy.astype(np.float32)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = float((hi - lo).max()) or 1.0
    out = (xy - lo) / span
    out += (1 - (hi - lo) / span) / 2
    return np.clip(out, 0, 1).astype(np.float32)


def pca_coords(pcs: np.ndarray) -> np.ndarray:
    """The map by PCA: the first two components, normalized (one unit: the centre)."""
    xy = np.zeros((len(pcs), 2), np.float32)
    m = min(2, pcs.shape[1])
    xy[:, :m] = pcs[:, :m]
    return normalize(xy)


def umap_coords(pcs: np.ndarray, knn_rows: np.ndarray, knn_scores: np.ndarray,
                seed: int = 0) -> np.ndarray:
    """The map by UMAP on ``pcs``, with each unit's exact correlation neighbours
    (``knn_rows``/``knn_scores`` ``(U, m)``: rows into ``pcs``, best first, self excluded);
    too few units for UMAP (< 4): PCA."""
    n = len(pcs)
    m = min(UMAP_NEIGHBOURS - 1, knn_rows.shape[1], n - 1)
    if n < 4 or m < 2:
        return pca_coords(pcs)
    import umap  # slow import (numba): only when a map is made

    rows = np.concatenate([np.arange(n)[:, None], knn_rows[:, :m]], axis=1)
    scores = np.concatenate([np.ones((n, 1), np.float32), knn_scores[:, :m]], axis=1)
    bad = rows < 0
    rows = np.where(bad, np.arange(n)[:, None], rows)  # pad with self (distance 0 is ignored)
    dists = np.sqrt(np.maximum(2 - 2 * np.nan_to_num(scores, nan=0.0), 0)).astype(np.float32)
    dists[bad] = 0
    reducer = umap.UMAP(n_neighbors=m + 1, n_components=2, metric="euclidean",
                        random_state=seed, precomputed_knn=(rows, dists, None),
                        init="spectral" if n > m + 2 else "random", verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no transform() without a search index; seed → 1 job
        xy = reducer.fit_transform(np.ascontiguousarray(pcs, dtype=np.float32))
    return normalize(xy)


def map_neighbours(xy: np.ndarray, k: int) -> np.ndarray:
    """``(U, k)`` rows of each unit's nearest units on the map (self excluded)."""
    x = np.ascontiguousarray(xy, dtype=np.float32)
    k = min(k, len(x) - 1)
    if k <= 0:
        return np.zeros((len(x), 0), np.int64)
    _, i = faiss.knn(x, x, k + 1)
    own = i == np.arange(len(x))[:, None]
    own[~own.any(axis=1), -1] = True
    return i[~own].reshape(len(x), k)


def neighbour_preservation(xy: np.ndarray, knn_rows: np.ndarray, k: int = 10) -> float:
    """Mean share of each unit's top-``k`` correlated units (``knn_rows``, best first) found
    among its ``k`` nearest units on the map ``xy``.

    >>> xy = np.array([[0, 0], [0, 1], [5, 5], [5, 6]], np.float32)
    >>> neighbour_preservation(xy, np.array([[1], [0], [3], [2]]), k=1)
    1.0
    """
    k = min(k, knn_rows.shape[1], len(xy) - 1)
    if k <= 0:
        return float("nan")
    near = map_neighbours(xy, k)
    truth = knn_rows[:, :k]
    hits = [len(set(a[a >= 0].tolist()) & set(b.tolist())) / max(1, int((a >= 0).sum()))
            for a, b in zip(truth, near, strict=True)]
    return float(np.mean(hits))


def typical_units(pcs: np.ndarray, n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, sizes)``: for ``n`` k-means clusters of ``pcs``, the row nearest each centre
    and the cluster's size, largest cluster first (ties: lower row).

    >>> pts = np.array([[0, 0], [0, .1], [0, .2], [9, 9], [9, 9.1], [9, 9.5]], np.float32)
    >>> rows, sizes = typical_units(pts, 2)
    >>> rows.tolist(), sizes.tolist()
    ([1, 4], [3, 3])
    """
    x = np.ascontiguousarray(pcs, dtype=np.float32)
    n = min(n, len(x))
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if n == len(x):
        return np.arange(n, dtype=np.int64), np.ones(n, np.int64)
    km = faiss.Kmeans(x.shape[1], n, niter=25, seed=seed + 1234, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=1 << 20)
    km.train(x)
    _, assign = km.index.search(x, 1)
    sizes = np.bincount(assign[:, 0], minlength=n)
    _, nearest = faiss.knn(km.centroids, x, 1)
    rows = nearest[:, 0].astype(np.int64)
    order = np.lexsort((rows, -sizes))
    keep = sizes[order] > 0
    return rows[order][keep], sizes[order][keep].astype(np.int64)
