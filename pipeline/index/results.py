"""Reading a finished index from the store (the contract between the index and the pages).

Files under ``DIR/index/``::

    examples.json       {"classes": [names] | null, "examples": [{"id", "label", "thumb"}],
                         "images_seen": n, "skipped": [{"id", "reason", "number"}],
                         "dataset", "split", "format_version", "fingerprint", "topk",
                         "layers"}
                        (an example's position in "examples" is its example number; an
                        example that did not decode keeps its place, with "skipped": true)
                        Written last: its presence means the index is complete.
    L{layer:03d}.npz    arrays of one layer, see ``LayerIndex``
    thumbs/             one thumbnail per distinct selected image, thumbs/{number:07d}.png
    work/               checkpoints of an unfinished run (see ``checkpoint``)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.store import AtlasStore, atomic_save_npz, atomic_write_json, read_json

INDEX_FORMAT = 1


@dataclass
class LayerIndex:
    # Row i of every array is the i-th indexed unit: channel ``units[i]`` (all channels of
    # the layer unless --channels picked a subset); use ``unit_row`` to find a channel.
    top_ids: np.ndarray  # (units, k) int64 example numbers, best first; -1 = empty slot
    # (units, k) float32 mean-over-patches activation, descending; -inf in empty slots.
    # Ties are broken to the lower example number.
    top_scores: np.ndarray
    maps: np.ndarray  # (units, k, rows, cols) float32 patch-wise activation of each top example
    hist_counts: np.ndarray  # (units, bins) int64 histogram of scores over all images
    hist_edges: np.ndarray  # (units, bins + 1) float32 bin edges (per unit, power-of-two
    # wide bins covering [min, max]: see ``histogram``)
    mean: np.ndarray  # (units,) float32 mean score over all images
    max: np.ndarray  # (units,) float32 max score
    top_classes: np.ndarray  # (units, c) int64 classes with highest mean score; -1 = none
    top_class_means: np.ndarray  # (units, c) float32 their mean scores; 0 = none
    units: np.ndarray | None = None  # (units,) int64 channel of each row (None: 0..units-1)

    def unit_row(self, unit: int) -> int | None:
        """Row of channel ``unit`` in the arrays, or None if it was not indexed."""
        if self.units is None:
            return unit if 0 <= unit < len(self.top_ids) else None
        hit = np.flatnonzero(self.units == unit)
        return int(hit[0]) if len(hit) else None

    def top(self, row: int) -> list[tuple[int, float]]:
        """``(example number, score)`` of row ``row``'s filled slots, best first."""
        return [(int(i), float(s)) for i, s in zip(self.top_ids[row], self.top_scores[row],
                                                   strict=True) if i >= 0]


@dataclass
class Examples:
    root: Path
    ids: list[str]
    labels: list[int | None]
    thumbs: list[str | None]  # paths relative to DIR/index
    class_names: list[str] | None
    images_seen: int
    skipped: list[dict]

    def thumb_path(self, number: int) -> Path | None:
        rel = self.thumbs[number]
        return None if rel is None else self.root / rel

    def label_name(self, number: int) -> str | None:
        label = self.labels[number]
        if label is None or self.class_names is None:
            return None
        return self.class_names[label]


def index_dir(store: AtlasStore) -> Path:
    return store.root / "index"


def layer_path(store: AtlasStore, layer: int) -> Path:
    return index_dir(store) / f"L{layer:03d}.npz"


def load_examples(store: AtlasStore) -> Examples | None:
    path = index_dir(store) / "examples.json"
    if not path.is_file():
        return None
    d = read_json(path)
    ex = d["examples"]
    return Examples(
        root=index_dir(store),
        ids=[e["id"] for e in ex],
        labels=[e.get("label") for e in ex],
        thumbs=[e.get("thumb") for e in ex],
        class_names=d.get("classes"),
        images_seen=d.get("images_seen", len(ex)),
        skipped=d.get("skipped", []),
    )


def load_layer_index(store: AtlasStore, layer: int) -> LayerIndex | None:
    path = layer_path(store, layer)
    if not path.is_file():
        return None
    with np.load(path) as z:
        return LayerIndex(**{f.name: z[f.name] for f in fields(LayerIndex) if f.name in z.files})


def write_layer_index(store: AtlasStore, layer: int, index: LayerIndex) -> None:
    """Write ``L{layer:03d}.npz`` atomically."""
    arrays = {f.name: getattr(index, f.name) for f in fields(LayerIndex)
              if getattr(index, f.name) is not None}
    atomic_save_npz(layer_path(store, layer), **arrays)


def write_examples(store: AtlasStore, data: dict[str, Any]) -> None:
    """Write ``examples.json`` atomically (last: it marks the index complete)."""
    atomic_write_json(index_dir(store) / "examples.json", data)


def read_examples_json(store: AtlasStore) -> dict[str, Any] | None:
    path = index_dir(store) / "examples.json"
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None
