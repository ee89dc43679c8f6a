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

from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

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


def search_hint(labels: Counter[str], classes: Counter[int], class_names: list[str] | None,
                layer: int | None, unit: int | None) -> str:
    """The header search's placeholder, naming what this atlas holds: its most common label
    (``labels``: units per label, ``WordIndex.label_counts``), the class most units rank among
    their top classes (``ClassIndex.class_counts``), and a layer/unit with a page.

    >>> search_hint(Counter({"stripes": 2, "dots": 1}), Counter({0: 1}), ["tabby cat"], 1, 3)
    'Search: stripes, tabby cat, 1/3 or the docs'
    """
    counts = Counter({c: n for c, n in classes.items()
                      if class_names and 0 <= c < len(class_names)})
    parts = [max(labels, key=lambda c: (labels[c], -len(c)))] if labels else []
    if counts:
        parts.append(class_names[max(counts, key=lambda c: (counts[c], -c))])  # type: ignore[index]
    if layer is not None and unit is not None:
        parts.append(f"{layer}/{unit}")
    return "Search: " + ", ".join(parts) + " or the docs" if parts else "Search the docs"


# The indexes hold their entries as typed columns (some 24-28 bytes an entry), not as Python
# tuples (~150 bytes with their floats and ints), and the workers hand them over so: the site
# stage's main process holds every entry of a model at once.
CLASS_ROW = np.dtype([("c", "<i4"), ("mean", "<f8"), ("layer", "<i4"), ("unit", "<i4")])


class ClassIndex:
    """Accumulates ``class -> [(layer, unit, mean)]`` over layers.

    >>> ci = ClassIndex(["cat", "dog"])
    >>> ci.extend([(0, 0.5, 1, 7), (0, 0.9, 2, 3), (1, 0.2, 1, 7)])
    >>> ci.to_json()["units"]
    [[2, 3, 1, 7], [1, 7]]
    >>> [(s["first"], s["last"], s["units"], s["split"]) for s in ci.shards(2)]
    [(0, 0, {'0': [2, 3, 1, 7]}, {}), (1, 1, {'1': [1, 7]}, {})]
    >>> ci.top = 1
    >>> head = ci.head("m", [ci.shard_row(s) for s in ci.shards(2)])
    >>> head["counts"], head["top"], head["shards"][1]
    ([2, 1], [[2, 3], [1, 7]], ['m/classes/c1.json', 1, 1, 1])
    """

    def __init__(self, class_names: list[str] | None, top: int = CLASS_TOP):
        self.names = class_names or []
        self.top = top
        self._parts: list[np.ndarray] = []
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # rows by class, best first

    def entries(self, view: LayerView) -> np.ndarray:
        """``(class, mean, layer, unit)`` for every top class of every unit of ``view``, as
        rows of ``CLASS_ROW``."""
        idx = view.index
        if idx is None or not self.names or not view.units:
            return np.zeros(0, CLASS_ROW)
        units = np.asarray(view.units, dtype=np.int64)
        classes, means = idx.top_classes[units], idx.top_class_means[units]
        keep = (classes >= 0) & (classes < len(self.names))
        out = np.zeros(int(keep.sum()), CLASS_ROW)
        out["c"], out["mean"] = classes[keep], means[keep]
        out["layer"], out["unit"] = view.layer, np.broadcast_to(units[:, None], keep.shape)[keep]
        return out

    def extend(self, entries: np.ndarray | Iterable[tuple[int, float, int, int]]) -> None:
        rows = entries if isinstance(entries, np.ndarray) else \
            np.array([tuple(e) for e in entries], dtype=CLASS_ROW)
        if len(rows):
            self._parts.append(rows)
            self._sorted = None

    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        """Every entry, by class and best mean first (ties by layer and unit), and where each
        class's entries begin."""
        if self._sorted is None:
            rows = np.concatenate(self._parts) if self._parts else np.zeros(0, CLASS_ROW)
            rows = rows[np.lexsort((rows["unit"], rows["layer"], -rows["mean"], rows["c"]))]
            self._parts = [rows]
            self._sorted = rows, np.searchsorted(rows["c"], np.arange(len(self.names) + 1))
        return self._sorted

    def class_counts(self) -> Counter[int]:
        """Units per class."""
        _, starts = self._table()
        return Counter({c: int(n) for c, n in enumerate(np.diff(starts)) if n})

    def ranked(self, c: int) -> list[tuple[int, int]]:
        """Class ``c``'s ``(layer, unit)``, best mean first (ties by layer and unit)."""
        rows, starts = self._table()
        if not 0 <= c < len(self.names):
            return []
        found = rows[starts[c]:starts[c + 1]]
        return list(zip(found["layer"].tolist(), found["unit"].tolist(), strict=True))

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
        return list(self.iter_shards(shard_entries))

    def iter_shards(self, shard_entries: int | None = None) -> Iterator[dict[str, Any]]:
        """``shards``, each made when the previous one is taken."""
        size = max(1, shard_entries or SHARD_ENTRIES)
        current: dict[str, Any] | None = None
        for c in range(len(self.names)):
            ranked, offset = self.ranked(c), 0
            while offset < len(ranked):
                if current is None or current["n"] >= size:
                    if current is not None:
                        yield _complete(current)
                    current = {"format_version": SITE_FORMAT_VERSION, "first": c, "last": c,
                               "units": {}, "split": {}, "n": 0}
                take = ranked[offset:offset + size - current["n"]]
                current["units"][str(c)] = [v for pair in take for v in pair]
                if offset > 0 or len(take) < len(ranked):
                    current["split"][str(c)] = [offset, len(ranked)]
                current["last"] = c
                current["n"] += len(take)
                offset += len(take)
        if current is not None:
            yield _complete(current)

    @staticmethod
    def shard_row(shard: dict[str, Any]) -> list[int]:
        """What ``head`` lists of a shard: ``[first class, last class, units]``."""
        return [shard["first"], shard["last"], sum(len(u) // 2 for u in shard["units"].values())]

    def head(self, slug: str, rows: list[list[int]]) -> dict[str, Any]:
        """What the header search fetches first (``classes/index.json``): the names, each
        class's unit count and best ``top`` units (``[layer, unit, ...]``), and the shards
        (``rows``: ``shard_row`` of each) as ``[url, first class, last class, units]``. Its
        size grows with the classes, not with the units."""
        return {
            "format_version": SITE_FORMAT_VERSION,
            "classes": self.names,
            "counts": np.diff(self._table()[1]).tolist(),
            "top": [[v for pair in self.ranked(c)[:self.top] for v in pair]
                    for c in range(len(self.names))],
            "shards": [[urls.class_shard(slug, i), *row] for i, row in enumerate(rows)],
        }


def _complete(shard: dict[str, Any]) -> dict[str, Any]:
    """A shard as written: without the entry count kept while it was filled."""
    del shard["n"]
    return shard


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
# the word index's entries as the workers hand them over: the concepts, and rows whose
# "concept" is a position in that list ("score" NaN: none)
WORD_ROW = np.dtype([("concept", "<i4"), ("layer", "<i4"), ("unit", "<i4"), ("score", "<f8"),
                     ("rank", "<i4"), ("thumb", "<i4")])
WordRows = tuple[list[str], np.ndarray]


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
        self.concepts: dict[str, int] = {}  # concept -> its number in the rows
        self._parts: list[np.ndarray] = []
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # rows by concept, best first

    @staticmethod
    def entries(view: LayerView, thumbs: list[str]) -> WordRows:
        """Every concept of every labelled unit of ``view`` that has a page."""
        names: dict[str, int] = {}
        rows = array("d")  # layer, unit, score, rank, thumb, concept: 6 numbers an entry
        for unit in view.labelled:
            thumb = view.thumbnail(unit)
            t = thumbs.index(thumb) if thumb in thumbs else -1
            for rank, c in enumerate(view.concepts(unit), 1):
                score = np.nan if c["score"] is None else c["score"]
                rows.extend((view.layer, unit, score, rank, t,
                             names.setdefault(c["concept"], len(names))))
        table = np.frombuffer(rows, dtype=np.float64).reshape(-1, 6)
        out = np.zeros(len(table), WORD_ROW)
        for i, key in enumerate(("layer", "unit", "score", "rank", "thumb", "concept")):
            out[key] = table[:, i]
        return list(names), out

    def extend(self, entries: WordRows | Iterable[WordEntry]) -> None:
        if isinstance(entries, tuple) and len(entries) == 2 and \
                isinstance(entries[1], np.ndarray):
            names, rows = entries
        else:  # WordEntry tuples
            listed = list(entries)
            names = list(dict.fromkeys(e[0] for e in listed))
            where = {n: i for i, n in enumerate(names)}
            rows = np.array([(where[c], layer, unit, np.nan if score is None else score, rank,
                              thumb) for c, layer, unit, score, rank, thumb in listed],
                            dtype=WORD_ROW)
        if not len(rows):
            return
        ids = np.array([self.concepts.setdefault(n, len(self.concepts)) for n in names],
                       dtype=np.int32)
        rows = rows.copy()
        rows["concept"] = ids[rows["concept"]]
        self._parts.append(rows)
        self._sorted = None

    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        """Every entry, by concept number and highest score first (ties by layer and unit;
        entries without a score last), and where each concept's entries begin."""
        if self._sorted is None:
            rows = np.concatenate(self._parts) if self._parts else np.zeros(0, WORD_ROW)
            none = np.isnan(rows["score"])
            order = np.lexsort((rows["unit"], rows["layer"],
                                -np.where(none, 0.0, rows["score"]), none, rows["concept"]))
            rows = rows[order]
            self._parts = [rows]
            self._sorted = rows, np.searchsorted(rows["concept"],
                                                 np.arange(len(self.concepts) + 1))
        return self._sorted

    def __len__(self) -> int:
        return int(sum(len(p) for p in self._parts))

    @property
    def units(self) -> int:
        """Labelled units with an entry."""
        rows = self._table()[0]
        return len(np.unique(rows["layer"].astype(np.int64) << 32 | rows["unit"]))

    def label_counts(self) -> Counter[str]:
        """Units per label (their best concept)."""
        rows = self._table()[0]
        names = list(self.concepts)
        found = Counter(rows["concept"][rows["rank"] == 1].tolist())
        return Counter({names[c]: n for c, n in found.items()})

    def ranked(self, concept: str) -> list[list]:
        """``[[layer, unit, score, rank, thumb], ...]`` of ``concept``, highest score first
        (ties by layer and unit; units without a score last)."""
        if concept not in self.concepts:
            return []
        rows, starts = self._table()
        c = self.concepts[concept]
        found = rows[starts[c]:starts[c + 1]]
        return [[layer, unit, None if score != score else _round(score), rank, thumb]
                for layer, unit, score, rank, thumb in zip(
                    found["layer"].tolist(), found["unit"].tolist(), found["score"].tolist(),
                    found["rank"].tolist(), found["thumb"].tolist(), strict=True)]

    def shards(self) -> list[dict[str, Any]]:
        """The shards: ``{"format_version", "first", "last", "words": {concept: ranked
        entries}, "split": {concept: [offset, total]}}`` (``split``: the concepts continued
        from or into another shard, with the rank of their first entry here and their count)."""
        return list(self.iter_shards())

    def iter_shards(self) -> Iterator[dict[str, Any]]:
        """``shards``, each made when the previous one is taken."""
        by_key: dict[str, list[str]] = defaultdict(list)
        for concept in self.concepts:
            by_key[word_key(concept)].append(concept)
        current: dict[str, Any] | None = None
        for key in sorted(by_key, key=_js_order):
            for concept in sorted(by_key[key], key=_js_order):
                ranked, offset = self.ranked(concept), 0
                while offset < len(ranked):
                    if current is None or current["n"] >= self.shard_entries:
                        if current is not None:
                            yield _complete(current)
                        current = {"format_version": SITE_FORMAT_VERSION, "first": key,
                                   "last": key, "words": {}, "split": {}, "n": 0}
                    take = ranked[offset:offset + self.shard_entries - current["n"]]
                    current["words"][concept] = take
                    if offset > 0 or len(take) < len(ranked):
                        current["split"][concept] = [offset, len(ranked)]
                    current["last"] = key
                    current["n"] += len(take)
                    offset += len(take)
        if current is not None:
            yield _complete(current)

    @staticmethod
    def shard_row(shard: dict[str, Any]) -> list[Any]:
        """What ``meta`` lists of a shard: ``[first key, last key, entries]``."""
        return [shard["first"], shard["last"], sum(map(len, shard["words"].values()))]

    def meta(self, slug: str, rows: list[list[Any]], labeler: str | None) -> dict[str, Any]:
        """``models.json``'s ``words`` of the model: the search page, the labeler, counts, the
        thumbnails' file names and the shards (``rows``: ``shard_row`` of each) as ``[url,
        first key, last key, entries]``."""
        return {
            "page": urls.words_dir(slug) + "/",
            "labeler": labeler,
            "concepts": len(self.concepts),
            "units": self.units,
            "entries": len(self),
            "thumbs": self.thumbs,
            "shards": [[urls.word_shard(slug, i), *row] for i, row in enumerate(rows)],
        }
