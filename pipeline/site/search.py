"""Static search indexes the browser fetches (relative URLs, no server):

- ``models.json`` at the site root: every model's layers and which units have pages, for the
  ``layer/unit`` jump box on every page;
- ``<slug>/classes.json``: for every dataset class, the units that rank it among their top
  classes (by mean activation over the class), in one file for scripts (it grows with the
  atlas: 3.3 MiB at 100,000 units);
- ``<slug>/classes/index.json`` and its shards ``<slug>/classes/c<n>.json``: the same for the
  header search, bounded (``ClassIndex.head``, ``ClassIndex.shards``): the names, each class's
  unit count and best ``CLASS_TOP`` units, then every class's units in shards of about
  ``SHARD_ENTRIES`` units, fetched only to show more of one class;
- ``<slug>/words/w<n>.json``: the word index, for "search by word": every concept of every
  labelled unit's top concepts, with its units ranked by score, in shards of about
  ``SHARD_ENTRIES`` entries that ``models.json`` lists (``WordIndex``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from pipeline.site import urls
from pipeline.site.data import AtlasView, LayerView
from pipeline.site.overview import LayerSummary
from pipeline.site.urls import SITE_FORMAT_VERSION

SHARD_ENTRIES = 4096  # (concept, unit) entries per word shard: about 80 KiB of JSON, 25 gzipped
CLASS_TOP = 8  # units per class in the class index's head (what the header search shows first)

Models = list[tuple[AtlasView, list[LayerSummary], dict[int, list[int]], dict | None]]


def models_index(atlases: Models) -> dict[str, Any]:
    """The jump index: per model, per layer, its ``kind`` (with ``depth`` for the attention
    kinds), ``path`` (the layer page's site path: its feature pages are ``path + unit + "/"``,
    ``urls.layer_dir``), ``name`` and ``unit_name`` (``urls.layer_name``: "key channels of
    block 3", "key channel {unit} of block 3"), the unit count and (if sparse) the paged
    units; ``classes``: the whole class index's URL (``classes.json``), ``class_index``: the
    header search's (``ClassIndex.head``); ``words``: the word index (``WordIndex.meta``)."""
    models = []
    for atlas, summaries, units_by_layer, words in atlases:
        layers = []
        for s in summaries:
            units = units_by_layer[s.layer]
            dense = units == list(range(s.units))
            layers.append({"layer": s.layer, "kind": s.kind,
                           **({} if s.kind == urls.FFN else {"depth": s.level}),
                           "path": urls.layer_dir(atlas.slug, s) + "/",
                           # by name (urls.layer_name): the browser fills in "{unit}"
                           "name": urls.layer_name(s), "unit_name": urls.layer_name(s, "{unit}"),
                           "module": s.module,
                           "units": s.units, "pages": None if dense else units})
        named = atlas.examples is not None and atlas.examples.class_names is not None
        models.append({"name": atlas.model, "slug": atlas.slug, "weights": atlas.weights,
                       "layers": layers,
                       "classes": f"{atlas.slug}/{urls.CLASSES_JSON}" if named else None,
                       "class_index": urls.class_index(atlas.slug) if named else None,
                       "words": words})
    return {"format_version": SITE_FORMAT_VERSION, "models": models}


def search_hint(words: Iterable[WordEntry], classes: Iterable[tuple[int, float, int, int]],
                class_names: list[str] | None, layer: int | None, unit: int | None) -> str:
    """The header search's placeholder, naming what this atlas holds: its most common label,
    the class most units rank among their top classes, and a layer/unit with a page.

    >>> search_hint([("stripes", 0, 1, 2.0, 1, 0), ("dots", 0, 2, 1.0, 1, 0),
    ...              ("stripes", 1, 3, 1.5, 1, 0)], [(0, 1.0, 0, 1)], ["tabby cat"], 1, 3)
    'Search: stripes, tabby cat, 1/3 or the docs'
    """
    labels = Counter(w[0] for w in words if w[4] == 1)
    counts = Counter(c[0] for c in classes if class_names and 0 <= c[0] < len(class_names))
    parts = [max(labels, key=lambda c: (labels[c], -len(c)))] if labels else []
    if counts:
        parts.append(class_names[max(counts, key=lambda c: (counts[c], -c))])  # type: ignore[index]
    if layer is not None and unit is not None:
        parts.append(f"{layer}/{unit}")
    return "Search: " + ", ".join(parts) + " or the docs" if parts else "Search the docs"


class ClassIndex:
    """Accumulates ``class -> [(layer, unit, mean)]`` over layers.

    >>> ci = ClassIndex(["cat", "dog"])
    >>> ci.extend([(0, 0.5, 1, 7), (0, 0.9, 2, 3), (1, 0.2, 1, 7)])
    >>> ci.to_json()["units"]
    [[2, 3, 1, 7], [1, 7]]
    >>> [(s["first"], s["last"], s["units"], s["split"]) for s in ci.shards(2)]
    [(0, 0, {'0': [2, 3, 1, 7]}, {}), (1, 1, {'1': [1, 7]}, {})]
    >>> ci.top = 1
    >>> head = ci.head("m", ci.shards(2))
    >>> head["counts"], head["top"], head["shards"][1]
    ([2, 1], [[2, 3], [1, 7]], ['m/classes/c1.json', 1, 1, 1])
    """

    def __init__(self, class_names: list[str] | None, top: int = CLASS_TOP):
        self.names = class_names or []
        self.top = top
        self.units: dict[int, list[tuple[float, int, int]]] = defaultdict(list)

    def entries(self, view: LayerView) -> list[tuple[int, float, int, int]]:
        """``(class, mean, layer, unit)`` for every top class of every unit of ``view``."""
        idx = view.index
        if idx is None or not self.names:
            return []
        return [(int(c), float(mean), view.layer, unit) for unit in view.units
                for c, mean in zip(idx.top_classes[unit], idx.top_class_means[unit], strict=True)
                if 0 <= c < len(self.names)]

    def extend(self, entries: list[tuple[int, float, int, int]]) -> None:
        for c, mean, layer, unit in entries:
            self.units[c].append((mean, layer, unit))

    def ranked(self, c: int) -> list[tuple[int, int]]:
        """Class ``c``'s ``(layer, unit)``, best mean first (ties by layer and unit)."""
        return [(layer, unit) for _, layer, unit
                in sorted(self.units.get(c, []), key=lambda t: (-t[0], t[1], t[2]))]

    def to_json(self) -> dict[str, Any]:
        """``{"classes": [name], "units": [[layer, unit, ...] per class, best first]}``."""
        units = [[v for pair in self.ranked(c) for v in pair] for c in range(len(self.names))]
        return {"format_version": SITE_FORMAT_VERSION, "classes": self.names, "units": units}

    def shards(self, shard_entries: int | None = None) -> list[dict[str, Any]]:
        """Every class's units, classes in order, cut into consecutive shards of about
        ``shard_entries`` units (``SHARD_ENTRIES``): ``{"format_version", "first", "last",
        "units": {class: [layer, unit, ...]}, "split": {class: [offset, total]}}`` (``split``:
        a class continued from or into another shard, the rank of its first unit here and its
        unit count). A class with more units than fit continues in the next shards, best
        first, so no shard grows with the atlas."""
        size = max(1, shard_entries or SHARD_ENTRIES)
        out: list[dict[str, Any]] = []
        current: dict[str, Any] | None = None
        for c in range(len(self.names)):
            ranked, offset = self.ranked(c), 0
            while offset < len(ranked):
                if current is None or current["n"] >= size:
                    current = {"format_version": SITE_FORMAT_VERSION, "first": c, "last": c,
                               "units": {}, "split": {}, "n": 0}
                    out.append(current)
                take = ranked[offset:offset + size - current["n"]]
                current["units"][str(c)] = [v for pair in take for v in pair]
                if offset > 0 or len(take) < len(ranked):
                    current["split"][str(c)] = [offset, len(ranked)]
                current["last"] = c
                current["n"] += len(take)
                offset += len(take)
        for shard in out:
            del shard["n"]
        return out

    def head(self, slug: str, shards: list[dict[str, Any]]) -> dict[str, Any]:
        """What the header search fetches first (``classes/index.json``): the names, each
        class's unit count and best ``top`` units (``[layer, unit, ...]``), and the shards as
        ``[url, first class, last class, units]``. Its size grows with the classes, not with
        the units."""
        return {
            "format_version": SITE_FORMAT_VERSION,
            "classes": self.names,
            "counts": [len(self.units.get(c, [])) for c in range(len(self.names))],
            "top": [[v for pair in self.ranked(c)[:self.top] for v in pair]
                    for c in range(len(self.names))],
            "shards": [[urls.class_shard(slug, i), s["first"], s["last"],
                        sum(len(u) // 2 for u in s["units"].values())]
                       for i, s in enumerate(shards)],
        }


def word_key(concept: str) -> str:
    """The key a concept is looked up by: lower case (the browser's ``toLowerCase``)."""
    return concept.lower()


def _js_order(key: str) -> bytes:
    """Sort key giving JavaScript's string order (UTF-16 code units), so that the browser can
    compare its query with a shard's first and last keys."""
    return key.encode("utf-16-be")


def _round(score: float | None) -> float | None:
    return None if score is None else float(f"{score:.4g}")


WordEntry = tuple[str, int, int, float | None, int, int]  # concept, layer, unit, score, rank, thumb


class WordIndex:
    """Accumulates ``concept -> [(layer, unit, score, rank, thumb)]`` over layers and writes it
    as range shards: concepts sorted by ``word_key`` (in JavaScript's order) and cut into
    consecutive shards of about ``shard_entries`` entries, so that a word or a prefix is found
    by comparing it with each shard's first and last key, and one or two shards are fetched.
    A concept with more entries than fit continues in the next shards (its best first), so no
    shard grows with the atlas.

    ``rank``: 1 if the concept is the unit's label (its best concept), 2 for its second, ...;
    ``thumb``: index into ``thumbs`` (the visualization file beside the feature page) or -1.
    """

    def __init__(self, thumbs: list[str], shard_entries: int | None = None):
        self.thumbs = thumbs
        self.shard_entries = max(1, shard_entries or SHARD_ENTRIES)
        self.units: dict[str, list[tuple[float | None, int, int, int, int]]] = defaultdict(list)
        self.labelled: set[tuple[int, int]] = set()

    @staticmethod
    def entries(view: LayerView, thumbs: list[str]) -> list[WordEntry]:
        """Every concept of every labelled unit of ``view`` that has a page."""
        out = []
        for unit in view.labelled:
            thumb = view.thumbnail(unit)
            t = thumbs.index(thumb) if thumb in thumbs else -1
            for rank, c in enumerate(view.concepts(unit), 1):
                out.append((c["concept"], view.layer, unit, c["score"], rank, t))
        return out

    def extend(self, entries: list[WordEntry]) -> None:
        for concept, layer, unit, score, rank, thumb in entries:
            self.units[concept].append((score, layer, unit, rank, thumb))
            self.labelled.add((layer, unit))

    def __len__(self) -> int:
        return sum(map(len, self.units.values()))

    def ranked(self, concept: str) -> list[list]:
        """``[[layer, unit, score, rank, thumb], ...]`` of ``concept``, highest score first
        (ties by layer and unit; units without a score last)."""
        found = sorted(self.units.get(concept, []),
                       key=lambda e: (e[0] is None, -(e[0] or 0.0), e[1], e[2]))
        return [[layer, unit, _round(score), rank, thumb]
                for score, layer, unit, rank, thumb in found]

    def shards(self) -> list[dict[str, Any]]:
        """The shards: ``{"format_version", "first", "last", "words": {concept: ranked
        entries}, "split": {concept: [offset, total]}}`` (``split``: the concepts continued
        from or into another shard, with the rank of their first entry here and their count)."""
        by_key: dict[str, list[str]] = defaultdict(list)
        for concept in self.units:
            by_key[word_key(concept)].append(concept)
        out: list[dict[str, Any]] = []
        current: dict[str, Any] | None = None
        for key in sorted(by_key, key=_js_order):
            for concept in sorted(by_key[key], key=_js_order):
                ranked, offset = self.ranked(concept), 0
                while offset < len(ranked):
                    if current is None or current["n"] >= self.shard_entries:
                        current = {"format_version": SITE_FORMAT_VERSION, "first": key,
                                   "last": key, "words": {}, "split": {}, "n": 0}
                        out.append(current)
                    take = ranked[offset:offset + self.shard_entries - current["n"]]
                    current["words"][concept] = take
                    if offset > 0 or len(take) < len(ranked):
                        current["split"][concept] = [offset, len(ranked)]
                    current["last"] = key
                    current["n"] += len(take)
                    offset += len(take)
        for shard in out:
            del shard["n"]
        return out

    def meta(self, slug: str, shards: list[dict[str, Any]], labeler: str | None
             ) -> dict[str, Any]:
        """``models.json``'s ``words`` of the model: the search page, the labeler, counts, the
        thumbnails' file names and the shards as ``[url, first key, last key, entries]``."""
        return {
            "page": urls.words_dir(slug) + "/",
            "labeler": labeler,
            "concepts": len(self.units),
            "units": len(self.labelled),
            "entries": len(self),
            "thumbs": self.thumbs,
            "shards": [[urls.word_shard(slug, i), s["first"], s["last"],
                        sum(map(len, s["words"].values()))] for i, s in enumerate(shards)],
        }
