"""Words for units: the label stage's results (CLIP-Dissect, SoftWPMI) as the pages use them.

The label stage stores, per unit, its top concepts best first (``store.labels(layer)``) and one
``label.json`` describing the run (``store.label_info()``). A unit's **label** is its best
concept. Concepts are arbitrary strings (a word list or a user's file): every page escapes
them like class names. Everything here tolerates an atlas without labels.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

TOP = 5  # concepts a page shows per unit
METHOD_ANCHOR = "method/#labels"  # the Method page's section on labels (site path)


def _score(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(f"{float(x):.6g}")


def clean(raw: Any, n: int = TOP) -> list[dict[str, Any]]:
    """A unit's stored labels as ``[{"concept": str, "score": float | None}]``, best first
    (the stage's order), at most ``n``; entries without a concept are dropped and non-finite
    scores become ``None``."""
    out = []
    for item in raw or []:
        if not isinstance(item, dict) or not isinstance(item.get("concept"), str):
            continue
        out.append({"concept": item["concept"], "score": _score(item.get("score"))})
        if len(out) == n:
            break
    return out


class ConceptTable(Mapping[int, list[dict[str, Any]]]):
    """A layer's labels (``store.labels``) as ``clean`` gives them, held as arrays: each
    concept string once, a unit's concepts as indices and scores (a dict per concept costs
    some 1.2 KiB a unit at 5 concepts; the arrays some 60 bytes).

    >>> table = ConceptTable({7: [{"concept": "ring", "score": 0.5}, {"score": 1},
    ...                           {"concept": "dots", "score": float("nan")}], 2: []})
    >>> list(table), table[7], table.get(3)
    ([7, 2], [{'concept': 'ring', 'score': 0.5}, {'concept': 'dots', 'score': None}], None)
    """

    def __init__(self, raw: Mapping[int, Any]):
        words: dict[str, int] = {}
        concepts: list[int] = []
        scores: list[float] = []
        ends: list[int] = []
        for unit in raw:
            for item in clean(raw[unit]):
                concepts.append(words.setdefault(item["concept"], len(words)))
                scores.append(math.nan if item["score"] is None else item["score"])
            ends.append(len(concepts))
        self._words = list(words)
        self._rows = {int(u): r for r, u in enumerate(raw)}
        self._ends = np.asarray(ends, np.int64)
        self._concepts = np.asarray(concepts, np.int32)
        self._scores = np.asarray(scores, np.float64)

    def __getitem__(self, unit: int) -> list[dict[str, Any]]:
        r = self._rows[unit]
        start, end = (int(self._ends[r - 1]) if r else 0), int(self._ends[r])
        return [{"concept": self._words[c], "score": None if math.isnan(s) else s}
                for c, s in zip(self._concepts[start:end].tolist(),
                                self._scores[start:end].tolist(), strict=True)]

    def __iter__(self) -> Iterator[int]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def labeler_name(info: dict[str, Any] | None) -> str | None:
    """What made the labels: the labeler spec (``demo``, ``open_clip:ViT-B-16/openai`` or a
    path), or None when the atlas has no labels."""
    if not info:
        return None
    return str(info.get("labeler") or info.get("labeler_id") or "unknown labeler")


def labeler_line(info: dict[str, Any] | None) -> str:
    """``"demo · 1,000 concepts (wordfreq) · 2,000 probe images"``; empty without labels."""
    name = labeler_name(info)
    if name is None:
        return ""
    parts = [name]
    concepts = info.get("concepts") or {}
    if isinstance(concepts, dict) and isinstance(concepts.get("count"), int):
        source = f" ({concepts['source']})" if concepts.get("source") else ""
        parts.append(f"{concepts['count']:,} concepts{source}")
    if isinstance(info.get("probe_images"), int):
        parts.append(f"{info['probe_images']:,} probe images")
    return " · ".join(parts)


def common(best: Iterable[str], n: int) -> list[tuple[str, int]]:
    """The ``n`` most common labels among ``best`` (one per unit): ``(concept, units)``, most
    units first, ties by concept."""
    counts = Counter(best)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
