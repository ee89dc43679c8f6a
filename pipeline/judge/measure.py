"""Recognisability of a layer's reference images (visualizations, or baselines: best
examples, noise), measured by a judge against the index's top and bottom examples.

For each unit: the 2-AFC over ``trials`` (top, bottom) pairs of its examples, the top-1
example left out of the pool (it is the best-example baseline's reference); the same pairs
with its best dataset example as the reference; and transferability where one class
dominates its top examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from pipeline.index.results import Examples, LayerIndex
from pipeline.judge.afc import DEFAULT_TRIALS, afc_pairs, afc_right, dominant_class
from pipeline.judge.judge import Judge


def load_thumb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class ExampleEmbeddings:
    """The judge's embeddings of the index's example thumbnails, each computed once."""

    def __init__(self, judge: Judge, examples: Examples):
        self.judge, self.examples = judge, examples
        self._cache: dict[int, np.ndarray] = {}

    def available(self, numbers: Sequence[int]) -> list[int]:
        """The ``numbers`` whose thumbnail exists."""
        out = []
        for n in numbers:
            path = self.examples.thumb_path(int(n)) if 0 <= n < len(self.examples.ids) else None
            if path is not None and path.is_file():
                out.append(int(n))
        return out

    def __call__(self, numbers: Sequence[int]) -> np.ndarray:
        """``(len(numbers), D)`` embeddings (thumbnails must exist: see ``available``)."""
        missing = sorted({int(n) for n in numbers} - set(self._cache))
        if missing:
            pixels = np.stack([load_thumb(self.examples.thumb_path(n)) for n in missing])
            for n, e in zip(missing, self.judge.embed(pixels), strict=True):
                self._cache[n] = e
        if not len(numbers):
            return np.zeros((0, 0), np.float32)
        return np.stack([self._cache[int(n)] for n in numbers])


def measure_layer(judge: Judge, embeddings: ExampleEmbeddings, index: LayerIndex,
                  units: Sequence[int], images: np.ndarray, key: str,
                  trials: int = DEFAULT_TRIALS) -> list[dict[str, Any] | None]:
    """Per unit, its ``fidelity.recognisability`` with ``images[i]`` (uint8 ``(H, W, 3)``) as
    unit ``units[i]``'s reference, or None where the index lacks its examples. ``key``
    (e.g. "model/layer") seeds each unit's trials with the unit number.

    >>> from pipeline.judge.afc import afc_pairs
    >>> len(afc_pairs(15, 16, DEFAULT_TRIALS, "m/0/3"))
    20
    """
    examples = embeddings.examples
    refs = judge.embed(np.asarray(images)) if len(units) else None
    out: list[dict[str, Any] | None] = []
    transfer_rows: list[tuple[int, int, float]] = []
    for i, unit in enumerate(units):
        row = index.unit_row(unit)
        if row is None or index.bottom_ids is None:
            out.append(None)
            continue
        top = embeddings.available([n for n in index.top_ids[row] if n >= 0])
        bottom = embeddings.available([n for n in index.bottom_ids[row] if n >= 0])
        if len(top) < 2 or not bottom:
            out.append(None)
            continue
        pairs = afc_pairs(len(top) - 1, len(bottom), trials, f"{key}/{unit}")
        top_e, bottom_e = embeddings(top[1:]), embeddings(bottom)
        right = afc_right(refs[i], top_e, bottom_e, pairs)
        best = afc_right(embeddings([top[0]])[0], top_e, bottom_e, pairs)
        n = len(pairs)
        out.append({"judge": judge.id, "trials": n, "right": right, "afc": right / n,
                    "best_example": {"right": best, "afc": best / n}, "transfer": None})
        dominant = dominant_class([examples.labels[t] for t in top])
        if dominant is not None and examples.class_names:
            transfer_rows.append((i, *dominant))
    if transfer_rows:
        names = list(examples.class_names)
        judged = judge.classify(np.asarray(images)[[r[0] for r in transfer_rows]], names)
        for (i, cls, share), guess in zip(transfer_rows, judged, strict=True):
            out[i]["transfer"] = {"class": names[cls], "share": share,
                                  "judged": names[int(guess)], "hit": int(guess) == cls}
    return out
