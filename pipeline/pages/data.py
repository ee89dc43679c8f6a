"""What the pages read from an atlas directory, through the store's and the index's readers."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.index.results import (
    Examples,
    LayerIndex,
    layer_path,
    load_examples,
    load_layer_index,
)
from pipeline.models.spec import FFNLayer, ModelSpec
from pipeline.pages.urls import model_slug
from pipeline.store import AtlasStore, read_json


def read_visualizations(store: AtlasStore, layer: int) -> tuple[dict[int, dict], dict[int, dict]]:
    """``({unit: result}, {unit: recipe})`` from the finished chunk files of ``layer``.

    Like ``AtlasStore.vis_results`` but keeps each chunk's ``recipe`` with its units.
    """
    results: dict[int, dict] = {}
    recipes: dict[int, dict] = {}
    for path in sorted(store.vis_dir(layer).glob("chunk-*.json")):
        chunk = read_json(path)
        recipe = chunk.get("recipe") or {}
        for result in chunk["units"]:
            results[result["unit"]] = result
            recipes[result["unit"]] = recipe
    return results, recipes


def indexed_units(store: AtlasStore, layer: int) -> list[int]:
    """The channels the dataset index of ``layer`` covers (none if not indexed)."""
    path = layer_path(store, layer)
    if not path.is_file():
        return []
    with np.load(path) as z:
        if "units" in z.files:
            return [int(u) for u in z["units"]]
        return list(range(int(z["top_ids"].shape[0])))


def by_channel(index: LayerIndex, n_units: int) -> LayerIndex:
    """The index with row ``u`` = channel ``u`` (an index of a ``--channels`` subset stores
    only the selected rows); channels not indexed get empty rows (no examples, zero counts)."""
    if index.units is None:
        return index
    rows = index.units.astype(np.int64)

    def scatter(a: np.ndarray, fill) -> np.ndarray:
        out = np.full((n_units, *a.shape[1:]), fill, dtype=a.dtype)
        out[rows] = a
        return out

    edges = np.broadcast_to(index.hist_edges[:1], (n_units, index.hist_edges.shape[1])).copy()
    edges[rows] = index.hist_edges
    return LayerIndex(
        top_ids=scatter(index.top_ids, -1), top_scores=scatter(index.top_scores, -np.inf),
        maps=scatter(index.maps, 0), hist_counts=scatter(index.hist_counts, 0),
        hist_edges=edges, mean=scatter(index.mean, 0), std=scatter(index.std, 0),
        max=scatter(index.max, 0),
        top_classes=scatter(index.top_classes, -1),
        top_class_means=scatter(index.top_class_means, np.nan), units=None)


def page_units(store: AtlasStore, layer: FFNLayer) -> list[int]:
    """Units of ``layer`` that get a page (visualized or indexed), without loading the maps."""
    vis, _ = read_visualizations(store, layer.index)
    found = set(vis) | set(indexed_units(store, layer.index))
    return sorted(u for u in found if 0 <= u < layer.units)


@dataclass
class LayerView:
    """One FFN layer's results: visualizations (possibly partial) and the dataset index."""

    store: AtlasStore
    spec: FFNLayer
    vis: dict[int, dict]
    recipes: dict[int, dict]
    index: LayerIndex | None

    @property
    def layer(self) -> int:
        return self.spec.index

    @cached_property
    def units(self) -> list[int]:
        """Units that get a page: visualized or indexed."""
        found = set(self.vis)
        if self.index is not None:
            found.update(int(u) for u in np.flatnonzero(self.index.top_ids.max(axis=1) >= 0))
        return sorted(u for u in found if 0 <= u < self.spec.units)

    def vis_path(self, unit: int) -> Path | None:
        result = self.vis.get(unit)
        return None if result is None else self.store.vis_dir(self.layer) / result["image"]

    def activation(self, unit: int) -> float | None:
        result = self.vis.get(unit)
        return None if result is None else float(result["activation"])

    def ranking_scores(self) -> np.ndarray:
        """Per unit of ``units``: dataset max if indexed, else the visualization objective."""
        if self.index is not None:
            return np.array([float(self.index.max[u]) for u in self.units])
        return np.array([self.activation(u) or 0.0 for u in self.units])

    def representatives(self, n: int) -> list[int]:
        """The ``n`` units with the highest ranking score, in unit order."""
        if not self.units:
            return []
        order = np.argsort(-self.ranking_scores(), kind="stable")[:n]
        return sorted(self.units[i] for i in order)

    def top_class_names(self, unit: int, examples: Examples | None, n: int = 3) -> list[str]:
        if self.index is None or examples is None or examples.class_names is None:
            return []
        names = examples.class_names
        return [names[c] for c in self.index.top_classes[unit][:n] if 0 <= c < len(names)]


@dataclass
class AtlasView:
    """An atlas directory as the site sees it; layers are read one at a time."""

    store: AtlasStore
    manifest: dict[str, Any] = field(init=False)
    spec: ModelSpec = field(init=False)

    def __post_init__(self) -> None:
        self.manifest = self.store.manifest()
        self.spec = ModelSpec.from_dict(self.manifest["model"])

    @property
    def model(self) -> str:
        return self.spec.name

    @property
    def slug(self) -> str:
        return model_slug(self.spec.name)

    @property
    def weights(self) -> str:
        return str(self.manifest.get("weights_id", "unknown"))

    @property
    def atlas_version(self) -> str:
        return str(self.manifest.get("atlas_version", "unknown"))

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config") or {}

    @cached_property
    def examples(self) -> Examples | None:
        return load_examples(self.store)

    @property
    def dataset(self) -> str:
        cfg = self.config
        split = cfg.get("split")
        return f"{cfg.get('dataset', 'unknown')}" + (f" ({split})" if split else "")

    def layer(self, index: int) -> LayerView:
        vis, recipes = read_visualizations(self.store, index)
        spec = self.spec.layers[index]
        index_ = load_layer_index(self.store, index)
        return LayerView(self.store, spec, vis, recipes,
                         None if index_ is None else by_channel(index_, spec.units))
