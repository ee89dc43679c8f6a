"""The 2-AFC task and transferability, on a judge's embeddings.

2-AFC (Borowski et al., ICLR 2021; automated as in the Machine Interpretability Score,
Zimmermann et al., NeurIPS 2024): given a reference image for a unit, pick which of two
dataset images excites the unit more, one of its top examples or one of its bottom examples.
The judge picks the one whose embedding is closer (cosine) to the reference's; a trial is
right when that is the top example (a tie is wrong).

Transferability (MACO, Fel et al., NeurIPS 2023): where one class dominates a unit's top
examples, whether the judge's zero-shot class of the reference is that class.
"""

from __future__ import annotations

import hashlib

import numpy as np

DEFAULT_TRIALS = 20
DOMINANT_SHARE = 0.6  # a class holding this share of the top examples dominates them


def afc_pairs(n_top: int, n_bottom: int, trials: int, key: str) -> np.ndarray:
    """``(min(trials, n_top·n_bottom), 2)`` distinct ``(top, bottom)`` index pairs, drawn
    without replacement by a generator seeded from ``key`` alone (e.g. "model/layer/unit"):
    the same trials for every reference of a unit.

    >>> pairs = afc_pairs(3, 2, 4, "u")
    >>> pairs.shape, bool((pairs == afc_pairs(3, 2, 4, "u")).all())
    ((4, 2), True)
    """
    total = n_top * n_bottom
    if total == 0 or trials <= 0:
        return np.zeros((0, 2), np.int64)
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    picks = np.random.default_rng(seed).permutation(total)[:min(trials, total)]
    return np.stack([picks // n_bottom, picks % n_bottom], axis=1).astype(np.int64)


def afc_right(reference: np.ndarray, top: np.ndarray, bottom: np.ndarray,
              pairs: np.ndarray) -> int:
    """Trials the judge gets right: ``cos(ref, top[i]) > cos(ref, bottom[j])`` for each pair
    ``(i, j)``; embeddings unit-norm, ``reference`` ``(D,)``, ``top``/``bottom`` ``(n, D)``.

    >>> ref = np.array([1.0, 0.0]); top = np.array([[0.8, 0.6]]); bottom = np.array([[0.0, 1.0]])
    >>> afc_right(ref, top, bottom, np.array([[0, 0]]))
    1
    """
    if len(pairs) == 0:
        return 0
    near_top = top[pairs[:, 0]] @ reference
    near_bottom = bottom[pairs[:, 1]] @ reference
    return int((near_top > near_bottom).sum())


def dominant_class(labels: list[int | None]) -> tuple[int, float] | None:
    """``(class, share)`` of the class holding at least ``DOMINANT_SHARE`` of ``labels``
    (None entries count as other classes), or None.

    >>> dominant_class([1, 1, 1, 2, None]), dominant_class([1, 2, None])
    ((1, 0.6), None)
    """
    known = [label for label in labels if label is not None]
    if not labels or not known:
        return None
    values, counts = np.unique(known, return_counts=True)
    best = int(np.argmax(counts))
    share = float(counts[best]) / len(labels)
    return (int(values[best]), share) if share >= DOMINANT_SHARE else None
