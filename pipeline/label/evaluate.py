"""How often a unit's words name what its top examples are: CLIP-Dissect's accuracy check,
on datasets with classes.

A unit is *class-pure* when at least ``purity`` of its top-k dataset examples share one class.
A concept *names* a class when it equals the class name or is a word of the class name that no
other class name contains ("horizontal" names "horizontal stripes"; "stripes", shared by three
classes, names none of them), singular or plural ("circles" names "circle"). Reported per
layer: how many units are class-pure, and the share of them whose label (top-1) or one of
whose top-3 concepts names their class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from pipeline.index.results import load_examples, load_layer_index
from pipeline.store import AtlasStore


def naming_words(class_names: Sequence[str]) -> list[set[str]]:
    """Per class, the concepts that name it.

    >>> [sorted(w) for w in naming_words(["circle", "horizontal stripes", "vertical stripes"])]
    [['circle'], ['horizontal', 'horizontal stripes'], ['vertical', 'vertical stripes']]
    """
    words = [name.lower().split() for name in class_names]
    counts = Counter(w for ws in words for w in set(ws))
    return [{" ".join(ws)} | {w for w in ws if counts[w] == 1} for ws in words]


def _singular(word: str) -> str:
    for tail, keep in (("sses", "ss"), ("xes", "x"), ("ches", "ch"), ("shes", "sh"), ("s", "")):
        if word.endswith(tail) and not word.endswith("ss"):
            return word[: len(word) - len(tail)] + keep
    return word


def names(concept: str, naming: set[str]) -> bool:
    """Whether ``concept`` (or its singular) is one of ``naming`` (or their singulars).

    >>> names("circles", {"circle"}), names("crosses", {"cross"}), names("dots", {"dot"})
    (True, True, True)
    """
    c = concept.lower()
    return c in naming or _singular(c) in {_singular(w) for w in naming}


def pure_class(top_ids: np.ndarray, labels: Sequence[int | None],
               purity: float) -> int | None:
    """The class of at least ``purity`` of the examples ``top_ids`` (-1: empty), or None.

    >>> pure_class(np.array([0, 1, 2, -1]), [5, 5, 4], 0.6)
    5
    """
    classes = [labels[i] for i in top_ids.tolist() if i >= 0 and labels[i] is not None]
    if not classes:
        return None
    cls, n = Counter(classes).most_common(1)[0]
    return int(cls) if n >= purity * len(classes) else None


def label_accuracy(store: AtlasStore, layers: Sequence[int], purity: float = 0.7,
                   labels: dict[int, dict[int, list[dict]]] | None = None) -> dict | None:
    """``{layer: {"pure_units", "top1", "top3"}}`` (shares of the class-pure units), or None
    when the dataset has no classes. ``labels``: ``{layer: store.labels(layer)}`` (default)."""
    examples = load_examples(store)
    if examples is None or not examples.class_names:
        return None
    naming = naming_words(examples.class_names)
    out = {}
    for layer in layers:
        index = load_layer_index(store, layer)
        unit_labels = labels[layer] if labels is not None else store.labels(layer)
        if index is None or not unit_labels:
            continue
        units = index.units if index.units is not None else np.arange(len(index.top_ids))
        pure = hit1 = hit3 = 0
        for row, unit in enumerate(units.tolist()):
            cls = pure_class(index.top_ids[row], examples.labels, purity)
            if cls is None or cls >= len(naming) or unit not in unit_labels:
                continue
            concepts = [c["concept"].lower() for c in unit_labels[unit]]
            pure += 1
            hit1 += names(concepts[0], naming[cls])
            hit3 += any(names(c, naming[cls]) for c in concepts[:3])
        out[layer] = {"pure_units": pure, "top1": round(hit1 / pure, 4) if pure else None,
                      "top3": round(hit3 / pure, 4) if pure else None}
    return out


def accuracy_table(accuracy: dict) -> str:
    """The figures as a small text table."""
    lines = [f"{'layer':>5}  {'class-pure units':>16}  {'label names class':>17}  "
             f"{'top-3 names class':>17}"]
    for layer, a in accuracy.items():
        t1 = "-" if a["top1"] is None else f"{a['top1']:.0%}"
        t3 = "-" if a["top3"] is None else f"{a['top3']:.0%}"
        lines.append(f"{layer:>5}  {a['pure_units']:>16}  {t1:>17}  {t3:>17}")
    return "\n".join(lines)
