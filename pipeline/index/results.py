"""Reading a finished index from the store (the contract between the index and the pages).

Files under ``DIR/index/``::

    examples.json       {"classes": [names] | null, "examples": [{"id", "label", "thumb"}],
                         "images_seen": n, "skipped": [{"id", "reason"}], "dataset", "split"}
                        (an example's position in "examples" is its example number)
    L{layer:03d}.npz    arrays of one layer, see ``LayerIndex``
    thumbs/             one thumbnail per distinct selected image
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.store import AtlasStore, read_json


@dataclass
class LayerIndex:
    top_ids: np.ndarray  # (units, k) int64 example numbers, best first; -1 = empty slot
    top_scores: np.ndarray  # (units, k) float32 mean-over-patches activation, descending
    maps: np.ndarray  # (units, k, rows, cols) float32 patch-wise activation of each top example
    hist_counts: np.ndarray  # (units, bins) int64 histogram of scores over all images
    hist_edges: np.ndarray  # (units, bins + 1) float32 bin edges
    mean: np.ndarray  # (units,) float32 mean score over all images
    max: np.ndarray  # (units,) float32 max score
    top_classes: np.ndarray  # (units, c) int64 classes with highest mean score; -1 = none
    top_class_means: np.ndarray  # (units, c) float32 their mean scores


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
        return LayerIndex(**{k: z[k] for k in LayerIndex.__dataclass_fields__})
