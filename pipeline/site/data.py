"""What the pages read from an atlas directory, through the store's and the index's readers."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.index.results import (
    Examples,
    LayerIndex,
    load_examples,
    load_layer_index,
)
from pipeline.models.spec import FFNLayer, ModelSpec
from pipeline.site import labels as labelling
from pipeline.site.card import ModelCard, read_card
from pipeline.site.fidelity import clean
from pipeline.site.urls import atlas_slug, diversity_file, recipe_files
from pipeline.store import AtlasStore, SimilarUnits

ACCENT = "accent"  # the feature-accentuation recipe: a second view, from a dataset seed


def clean_seed(seed: Any) -> dict[str, Any] | None:
    """An accentuation's seed ``{"example": id, "number": n, "activation": a}`` checked
    (the activation rounded to 6 significant digits); ``None`` when missing or malformed.

    >>> clean_seed({"example": "val/1.JPEG", "number": 1, "activation": 2.1234567})
    {'example': 'val/1.JPEG', 'number': 1, 'activation': 2.12346}
    >>> clean_seed({"example": "x", "number": 1, "activation": float("nan")}) is None
    True
    """
    if not isinstance(seed, dict):
        return None
    example, number, act = seed.get("example"), seed.get("number"), seed.get("activation")
    if isinstance(number, bool) or not isinstance(number, int) or isinstance(act, bool) \
            or not isinstance(act, (int, float)) or not math.isfinite(act):
        return None
    return {"example": str(example) if example is not None else str(number), "number": number,
            "activation": float(f"{float(act):.6g}")}


def indexed_units(store: AtlasStore, layer: int) -> list[int]:
    """The channels the dataset index of ``layer`` covers (none if not indexed)."""
    path = store.index_layer_path(layer)
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
        top_class_means=scatter(index.top_class_means, np.nan), units=None,
        **({} if index.quantile_edges is None else {
            "quantile_edges": scatter(index.quantile_edges, np.nan),
            "quantile_ids": scatter(index.quantile_ids, -1),
            "quantile_scores": scatter(index.quantile_scores, -np.inf),
            "quantile_maps": scatter(index.quantile_maps, 0)}),
        **({} if index.top_foreground is None else {
            "top_foreground": scatter(index.top_foreground, np.nan)}))


def page_units(store: AtlasStore, layer: FFNLayer) -> list[int]:
    """Units of ``layer`` that get a page (visualized by any recipe, or indexed), without
    loading the maps."""
    found = set(indexed_units(store, layer.index))
    for recipe in store.vis_recipes():
        found.update(store.vis_results(layer.index, recipe, lazy=True))
    return sorted(u for u in found if 0 <= u < layer.units)


def compact_units(units: Sequence[int]) -> Sequence[int]:
    """Sorted ``units`` as a ``range`` where they are consecutive (every unit of a layer, or a
    ``--channels`` span), else as a list: a few bytes whatever the layer's width, for the
    site's per-layer unit lists that every process holds and every task is sent
    (``SiteInfo.units_by_layer``), and membership without a set.

    >>> compact_units([3, 4, 5]), compact_units([0, 2]), compact_units([])
    (range(3, 6), [0, 2], [])
    """
    if units and units[-1] - units[0] == len(units) - 1:
        return range(units[0], units[-1] + 1)
    return list(units)


class UnitFiles(Mapping[int, str]):
    """A read-only ``{unit: file name}`` of one layer, where the names are few (a recipe's
    visualization file): a byte a unit, the name's number (``AtlasView.thumbnails``; a dict
    held some 100 bytes a unit, for every layer of the model in each process).

    >>> files = UnitFiles({4: "a.avif", 1: "b.avif", 2: "a.avif"})
    >>> files.get(4), files.get(0), files.get(99), sorted(files.items())
    ('a.avif', None, None, [(1, 'b.avif'), (2, 'a.avif'), (4, 'a.avif')])
    """

    _NONE = 255

    def __init__(self, found: Mapping[int, str]):
        self._names: list[str] = sorted(set(found.values()))
        if len(self._names) >= self._NONE:
            raise ValueError(f"{len(self._names)} file names for one layer: at most 254")
        number = {name: i for i, name in enumerate(self._names)}
        self._codes = bytearray([self._NONE]) * (max(found, default=-1) + 1)
        for unit, name in found.items():
            self._codes[unit] = number[name]
        self._len = len(found)

    def __getitem__(self, unit: int) -> str:
        code = self._codes[unit] if 0 <= unit < len(self._codes) else self._NONE
        if code == self._NONE:
            raise KeyError(unit)
        return self._names[code]

    def get(self, unit: int, default: Any = None) -> Any:  # type: ignore[override]
        if 0 <= unit < len(self._codes) and (code := self._codes[unit]) != self._NONE:
            return self._names[code]
        return default

    def __iter__(self) -> Iterator[int]:
        return (u for u, code in enumerate(self._codes) if code != self._NONE)

    def __len__(self) -> int:
        return self._len


@dataclass
class LayerView:
    """One FFN layer's results: visualizations (possibly partial) and the dataset index.

    ``vis``: ``{recipe: {unit: result}}`` (``store.vis_results``, read chunk by chunk as
    pages ask for units) of every recipe of the atlas, the primary one first; ``files``:
    ``{recipe: (visualization, attribution)}`` file names beside a feature page
    (``urls.recipe_files``); ``labels``: ``{unit: [{"concept", "score"}, ...]}`` best first
    (``store.labels``, held as a ``labels.ConceptTable``), empty when the layer was not
    labelled;
    ``similar``: ``{unit: [{"model", "layer", "unit", "score"}, ...]}`` (``store.similar``:
    own layer, other layers, other models; best first in each group), empty before
    ``relate``; ``map``: the layer map with its typical units (``store.layer_map``) or None.
    """

    store: AtlasStore
    spec: FFNLayer
    vis: dict[str, Mapping[int, dict]]
    index: LayerIndex | None
    files: dict[str, tuple[str, str]] = field(default_factory=dict)
    labels: Mapping[int, list[dict[str, Any]]] = field(default_factory=dict)
    similar: Mapping[int, list[dict[str, Any]]] = field(default_factory=dict)
    map: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.files:
            self.files = recipe_files(list(self.vis))

    @property
    def layer(self) -> int:
        return self.spec.index

    @property
    def recipes(self) -> list[str]:
        """The atlas's recipes, primary first."""
        return list(self.vis)

    @property
    def primary(self) -> str | None:
        return next(iter(self.vis), None)

    @cached_property
    def visualized(self) -> set[int]:
        """Units with a visualization of any recipe."""
        return set().union(*self.vis.values()) if self.vis else set()

    @cached_property
    def units(self) -> list[int]:
        """Units that get a page: visualized or indexed."""
        found = set(self.visualized)
        if self.index is not None:
            found.update(int(u) for u in np.flatnonzero(self.index.top_ids.max(axis=1) >= 0))
        return sorted(u for u in found if 0 <= u < self.spec.units)

    def result(self, unit: int, recipe: str | None = None) -> dict | None:
        """``unit``'s result of ``recipe`` (default: the primary recipe), if any."""
        recipe = self.primary if recipe is None else recipe
        return self.vis.get(recipe, {}).get(unit) if recipe is not None else None

    def results(self, unit: int) -> list[tuple[str, dict]]:
        """``(recipe, result)`` of every recipe that visualized ``unit``, primary first."""
        return [(r, res[unit]) for r, res in self.vis.items() if unit in res]

    def thumbnail(self, unit: int) -> str | None:
        """The visualization file the grids show for ``unit``: the first recipe's that has one,
        an accentuation (``ACCENT``) only when no other recipe visualized the unit (which
        recipes did is known without reading their results: grids ask in any unit order)."""
        found = sorted((r for r, res in self.vis.items() if unit in res),
                       key=lambda r: r == ACCENT)
        return self.files[found[0]][0] if found else None

    @property
    def accented(self) -> bool:
        """Whether the atlas has the accentuation recipe besides a primary one (the layer
        page's tiles can then show it)."""
        return ACCENT in self.vis and self.primary != ACCENT

    def accent(self, unit: int) -> str | None:
        """``unit``'s accentuation file beside its page, if it has one."""
        return self.files[ACCENT][0] if unit in self.vis.get(ACCENT, {}) else None

    def best_example(self, unit: int) -> int | None:
        """Number of ``unit``'s best dataset example, None without one."""
        if self.index is None:
            return None
        n = int(self.index.top_ids[unit, 0])
        return n if n >= 0 else None

    def vis_path(self, unit: int, recipe: str | None = None) -> Path | None:
        result = self.result(unit, recipe)
        if result is None:
            return None
        return self.store.vis_dir(self.layer, recipe or self.primary) / result["image"]

    def diversity_files(self, unit: int, recipe: str | None = None) -> list[tuple[Path, str]]:
        """``unit``'s further images of ``recipe`` (``--diversity N``): (the atlas's file, its
        name beside the feature page), images 1 … N-1; empty for one image per unit."""
        recipe = recipe or self.primary
        result = self.result(unit, recipe)
        images = ((result or {}).get("diversity") or {}).get("images") or []
        folder = self.store.vis_dir(self.layer, recipe)
        return [(folder / name, diversity_file(self.files[recipe][0], k))
                for k, name in enumerate(images, 1)]

    def attribution_path(self, unit: int, recipe: str | None = None) -> Path | None:
        result = self.result(unit, recipe)
        if result is None or not result.get("attribution"):
            return None
        return self.store.vis_dir(self.layer, recipe or self.primary) / result["attribution"]

    def activation(self, unit: int, recipe: str | None = None) -> float | None:
        result = self.result(unit, recipe)
        return None if result is None else float(result["activation"])

    def fidelity(self, unit: int, recipe: str | None = None) -> dict[str, Any] | None:
        """The measured fidelity (``fidelity.clean``), ``None`` when not measured."""
        result = self.result(unit, recipe)
        return None if result is None else clean(result.get("fidelity"))

    def ranking_scores(self) -> np.ndarray:
        """Per unit of ``units``: dataset max if indexed, else the visualization objective (of
        the first recipe that visualized it)."""
        if self.index is not None:
            return np.array([float(self.index.max[u]) for u in self.units])
        return np.array([float(found[0][1]["activation"]) if (found := self.results(u)) else 0.0
                         for u in self.units])

    def representatives(self, n: int) -> list[int]:
        """The ``n`` units with the highest ranking score, in unit order."""
        if not self.units:
            return []
        order = np.argsort(-self.ranking_scores(), kind="stable")[:n]
        return sorted(self.units[i] for i in order)

    def concepts(self, unit: int) -> list[dict[str, Any]]:
        """``unit``'s top concepts ``[{"concept", "score"}]`` best first (``labels.clean``);
        empty when it has none."""
        return labelling.clean(self.labels.get(unit))

    def label(self, unit: int) -> str | None:
        """``unit``'s label: its best concept, if it was labelled."""
        found = self.concepts(unit)
        return found[0]["concept"] if found else None

    @cached_property
    def labelled(self) -> list[int]:
        """Units that get a page and have a label."""
        return [u for u in self.units if self.label(u) is not None]

    def similar_to(self, unit: int) -> list[dict[str, Any]]:
        """``unit``'s similar units ``[{"model", "layer", "unit", "score"}]`` in the store's
        order (groups: own layer, other layers, other models; best first within each)."""
        return self.similar.get(unit, [])

    def similar_columns(self, unit: int) -> tuple[list[str], list[int], list[int], list[float]]:
        """``similar_to``'s entries as columns: models, layers, units, scores (the store's
        ``SimilarUnits.columns``: no dict per entry)."""
        if unit not in self.similar:
            return [], [], [], []
        if isinstance(self.similar, SimilarUnits):
            return self.similar.columns(unit)
        rows = self.similar[unit]
        return ([r["model"] for r in rows], [r["layer"] for r in rows],
                [r["unit"] for r in rows], [r["score"] for r in rows])

    def similar_count(self, unit: int) -> int:
        """How many similar units ``unit`` has (``len(similar_to(unit))``)."""
        if unit not in self.similar:
            return 0
        if isinstance(self.similar, SimilarUnits):
            return self.similar.count(unit)
        return len(self.similar[unit])

    def quantiles(self, unit: int) -> list[dict[str, Any]]:
        """``unit``'s quantile intervals from the mean up (``LayerIndex.quantiles``: interval,
        examples ``(number, score)``, slots into ``quantile_maps[unit, j]``); empty when the
        index kept none."""
        if self.index is None or self.index.quantile_edges is None:
            return []
        return self.index.quantiles(unit)

    @property
    def typical(self) -> list[dict[str, int]]:
        """The layer's typical units ``[{"unit", "size"}]``, largest cluster first (empty
        without a map)."""
        return list(self.map["typical"]) if self.map else []

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

    recipes: list[str] = field(init=False)
    _thumbs: dict[int, UnitFiles] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.manifest = self.store.manifest()
        self.spec = ModelSpec.from_dict(self.manifest["model"])
        self.recipes = self.store.vis_recipes()

    @cached_property
    def label_info(self) -> dict[str, Any] | None:
        """The labelling run (``store.label_info()``): labeler, concept set, parameters; None
        when the atlas has no labels."""
        return self.store.label_info()

    @cached_property
    def relations_info(self) -> dict[str, Any] | None:
        """The relations run (``store.relations_info()``): k, map method, probe images; None
        before the ``relations`` stage."""
        return self.store.relations_info()

    def thumbnails(self, layer: int) -> Mapping[int, str]:
        """``{unit: visualization file}`` of ``layer`` (the first recipe that visualized each
        unit, as ``LayerView.thumbnail``), read once per layer, one byte a unit
        (``UnitFiles``): similar units link to other layers' thumbnails, so a process may
        hold every layer's."""
        cache = self._thumbs
        if layer not in cache:
            files = recipe_files(self.recipes)
            found: dict[int, str] = {}
            order = sorted(self.recipes, key=lambda r: r == ACCENT)  # accent: only if alone
            for recipe in reversed(order):  # the primary's last: it wins
                found.update(dict.fromkeys(self.store.vis_results(layer, recipe, lazy=True),
                                           files[recipe][0]))
            cache[layer] = UnitFiles(found)
        return cache[layer]

    @property
    def labeler(self) -> str | None:
        """What made the labels (``labels.labeler_name``), None without labels."""
        return labelling.labeler_name(self.label_info)

    @property
    def model(self) -> str:
        return self.spec.name

    @property
    def slug(self) -> str:
        """The model-and-weights URL segment (``urls.atlas_slug``)."""
        return atlas_slug(self.spec.name, self.weights, self.config.get("model_kwargs"),
                          self.spec.pretrained_tag)

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
    def card(self) -> ModelCard:
        """What the weights' model card says (``pipeline.site.card``; empty when none)."""
        return read_card(self.config.get("weights")) or ModelCard()

    @cached_property
    def examples(self) -> Examples | None:
        return load_examples(self.store)

    @property
    def dataset(self) -> str:
        cfg = self.config
        split = cfg.get("split")
        return f"{cfg.get('dataset', 'unknown')}" + (f" ({split})" if split else "")

    def layer(self, index: int) -> LayerView:
        vis = {recipe: self.store.vis_results(index, recipe, lazy=True)
               for recipe in self.recipes}
        spec = self.spec.layers[index]
        index_ = load_layer_index(self.store, index)
        related = self.relations_info is not None
        return LayerView(self.store, spec, vis,
                         None if index_ is None else by_channel(index_, spec.units),
                         recipe_files(self.recipes),
                         labelling.ConceptTable(self.store.labels(index))
                         if self.label_info is not None else {},
                         self.store.similar(index) if related else {},
                         self.store.layer_map(index) if related else None)
