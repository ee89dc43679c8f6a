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

Both indexes gather their entries as sorted runs (``Run``), one a layer, which the site stage's
workers write to files and the indexes read as memory maps: the process that writes the shards
holds one concept's or class's entries at a time, never the model's.
"""

from __future__ import annotations

import heapq
import json
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.site import urls
from pipeline.site.data import AtlasView, LayerView
from pipeline.site.overview import LayerSummary
from pipeline.site.urls import SITE_FORMAT_VERSION
from pipeline.store import atomic_file

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
            dense = list(units) == list(range(s.units))
            layers.append({"layer": s.layer, "kind": s.kind,
                           **({} if s.kind == urls.FFN else {"depth": s.level}),
                           "path": urls.layer_dir(atlas.slug, s) + "/",
                           # by name (urls.layer_name): the browser fills in "{unit}"
                           "name": urls.layer_name(s), "unit_name": urls.layer_name(s, "{unit}"),
                           "module": s.module,
                           "units": s.units, "pages": None if dense else list(units)})
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


@dataclass(frozen=True)
class Run:
    """Entries of an index in its order: ``rows`` (``WORD_ROW`` or ``CLASS_ROW``) sorted by
    key, then as the shards list them; key ``i``'s are ``part(i)``. ``keys``: a word run's
    concepts, in the word index's order (its rows' ``concept`` is a position here); None for a
    class run (key ``i`` is class ``i``).

    >>> run = WordIndex.run([("b", 0, 1, 0.5, 1, 0), ("a", 0, 2, None, 1, 0)])
    >>> run.keys.tolist(), run.part(1)["unit"].tolist()
    (['a', 'b'], [1])
    """

    rows: np.ndarray
    starts: np.ndarray
    keys: np.ndarray | None = None

    def part(self, i: int) -> np.ndarray:
        return self.rows[int(self.starts[i]):int(self.starts[i + 1])]

    _FIELDS = ("rows", "starts", "keys")

    def save(self, stem: Path) -> Path:
        """Write the run to files named after ``stem`` (``.rows.npy``, ...), atomically;
        returns ``stem`` for ``load``."""
        for name in self._FIELDS:
            value = getattr(self, name)
            if value is not None:
                with atomic_file(Path(f"{stem}.{name}.npy")) as f:
                    np.save(f, value, allow_pickle=False)
        return Path(stem)

    @classmethod
    def load(cls, stem: Path) -> Run:
        """The run ``save`` wrote, memory-mapped: its entries stay on disk until read."""
        found = {name: np.load(f"{stem}.{name}.npy", mmap_mode="r", allow_pickle=False)
                 for name in cls._FIELDS if Path(f"{stem}.{name}.npy").is_file()}
        return cls(**found)


def _merged_parts(parts: list[np.ndarray], dtype: np.dtype, order: Any) -> np.ndarray:
    """One key's entries from several runs, in their order (``order(rows)``: the rows'
    positions sorted); a single run's part is in order already."""
    if len(parts) == 1:
        return np.asarray(parts[0])
    # the runs' rows are all of ``dtype``: no field-by-field promotion (it cost more than
    # the copy: ~40 us a call, a call per key and pass)
    rows = np.concatenate(parts, dtype=dtype, casting="no") if parts else np.zeros(0, dtype)
    return rows[order(rows)]


# The indexes hold their entries as typed columns (some 20-32 bytes an entry), not as Python
# tuples (~150 bytes with their floats and ints), in sorted runs that the site stage's workers
# write to files (``Run``).
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
        self._runs: list[Run] = []
        self._counts = np.zeros(len(self.names), np.int64)  # units per class

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

    def run(self, entries: np.ndarray | Iterable[tuple[int, float, int, int]]) -> Run:
        """``entries`` (``CLASS_ROW`` rows, or tuples) as a run, by class and best mean first
        (ties by layer and unit)."""
        rows = entries if isinstance(entries, np.ndarray) else \
            np.array([tuple(e) for e in entries], dtype=CLASS_ROW)
        rows = rows[np.lexsort((rows["unit"], rows["layer"], -rows["mean"], rows["c"]))]
        return Run(rows, np.searchsorted(rows["c"], np.arange(len(self.names) + 1)))

    def extend(self, entries: np.ndarray | Iterable[tuple[int, float, int, int]]) -> None:
        self.add(self.run(entries))

    def add(self, run: Run) -> None:
        """Take ``run`` (``run``, or ``Run.load``: its entries stay where they are), whose
        units no other run of the index holds (a layer's)."""
        if len(run.rows):
            self._runs.append(run)
            self._counts += np.diff(run.starts)

    def class_counts(self) -> Counter[int]:
        """Units per class."""
        return Counter({c: int(n) for c, n in enumerate(self._counts) if n})

    def _ranked_rows(self, c: int) -> np.ndarray:
        """Class ``c``'s entries, best mean first (ties by layer and unit)."""
        return _merged_parts([run.part(c) for run in self._runs], CLASS_ROW, lambda rows:
                             np.lexsort((rows["unit"], rows["layer"], -rows["mean"])))

    def ranked(self, c: int) -> list[tuple[int, int]]:
        """Class ``c``'s ``(layer, unit)``, best mean first (ties by layer and unit)."""
        if not 0 <= c < len(self.names):
            return []
        found = self._ranked_rows(c)
        return list(zip(found["layer"].tolist(), found["unit"].tolist(), strict=True))

    def to_json(self) -> dict[str, Any]:
        """``{"classes": [name], "units": [[layer, unit, ...] per class, best first]}``."""
        units = [[v for pair in self.ranked(c) for v in pair] for c in range(len(self.names))]
        return {"format_version": SITE_FORMAT_VERSION, "classes": self.names, "units": units}

    def iter_json(self) -> Iterator[str]:
        """``to_json`` as compact JSON (no spaces, as the site writes it), a class at a time:
        the whole index grows with the atlas, so the site stage writes it so.

        >>> ci = ClassIndex(["cat", "dog"])
        >>> ci.extend([(0, 0.5, 1, 7), (1, 0.2, 1, 7)])
        >>> "".join(ci.iter_json()) == json.dumps(ci.to_json(), separators=(",", ":"))
        True
        """
        yield (f'{{"format_version":{SITE_FORMAT_VERSION},"classes":'
               f'{json.dumps(self.names, ensure_ascii=False, separators=(",", ":"))},"units":[')
        for c in range(len(self.names)):
            rows = self._ranked_rows(c)
            pairs = np.stack([rows["layer"], rows["unit"]], 1).ravel().tolist()
            yield ("," if c else "") + "[" + ",".join(map(str, pairs)) + "]"
        yield "]}"

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
            ranked, offset = self._ranked_rows(c), 0
            while offset < len(ranked):
                if current is None or current["n"] >= size:
                    if current is not None:
                        yield _complete(current)
                    current = {"format_version": SITE_FORMAT_VERSION, "first": c, "last": c,
                               "units": {}, "split": {}, "n": 0}
                take = ranked[offset:offset + size - current["n"]]
                current["units"][str(c)] = np.stack([take["layer"], take["unit"]],
                                                    1).ravel().tolist()
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
            "counts": self._counts.tolist(),
            "top": [np.stack([(r := self._ranked_rows(c)[:self.top])["layer"], r["unit"]],
                             1).ravel().tolist() for c in range(len(self.names))],
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


def _concept_order(concept: str) -> tuple[bytes, bytes]:
    """Where a concept stands in the word index: by its key, then by itself, each in
    JavaScript's order."""
    return _js_order(word_key(concept)), _js_order(concept)


def _best_first(rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """``np.lexsort`` keys (last is first) of word entries: highest score first, entries
    without a score last, ties by layer and unit."""
    none = np.isnan(rows["score"])
    return rows["unit"], rows["layer"], -np.where(none, 0.0, rows["score"]), none


def _word_entries(rows: np.ndarray) -> list[list]:
    """``[[layer, unit, score, rank, thumb], ...]`` of word rows (``ranked``'s)."""
    return [[layer, unit, None if score != score else _round(score), rank, thumb]
            for layer, unit, score, rank, thumb in zip(
                rows["layer"].tolist(), rows["unit"].tolist(), rows["score"].tolist(),
                rows["rank"].tolist(), rows["thumb"].tolist(), strict=True)]


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
        self.concepts: dict[str, None] = {}  # every concept, once (the vocabulary)
        self._runs: list[Run] = []
        self._labels: Counter[str] = Counter()  # units per label (their best concept)
        self._units = self._entries = 0

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

    @staticmethod
    def run(entries: WordRows | Iterable[WordEntry]) -> Run:
        """``entries`` (``entries``'s, or ``WordEntry`` tuples) as a run: by concept in the
        shards' order (``_concept_order``), then highest score first (ties by layer and unit;
        entries without a score last)."""
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
        by_order = sorted(range(len(names)), key=lambda i: _concept_order(names[i]))
        position = np.zeros(len(names), np.int32)
        position[by_order] = np.arange(len(names), dtype=np.int32)
        rows = rows.copy()
        rows["concept"] = position[rows["concept"]] if len(names) else rows["concept"]
        rows = rows[np.lexsort((*_best_first(rows), rows["concept"]))]
        keys = np.array([names[i] for i in by_order], dtype=str)
        return Run(rows, np.searchsorted(rows["concept"], np.arange(len(names) + 1)), keys)

    def extend(self, entries: WordRows | Iterable[WordEntry]) -> None:
        self.add(self.run(entries))

    def add(self, run: Run) -> None:
        """Take ``run`` (``run``, or ``Run.load``: its entries stay where they are), whose
        units no other run of the index holds (a layer's)."""
        if not len(run.rows):
            return
        self._runs.append(run)
        keys = run.keys.tolist()  # type: ignore[union-attr]
        self.concepts.update(dict.fromkeys(keys))
        self._entries += len(run.rows)
        best = np.bincount(run.rows["concept"][run.rows["rank"] == 1], minlength=len(keys))
        self._labels.update({keys[c]: int(n) for c in np.flatnonzero(best) for n in [best[c]]})
        self._units += len(np.unique(run.rows["layer"].astype(np.int64) << 32
                                     | run.rows["unit"].astype(np.int64)))

    def __len__(self) -> int:
        return self._entries

    @property
    def units(self) -> int:
        """Labelled units with an entry."""
        return self._units

    def label_counts(self) -> Counter[str]:
        """Units per label (their best concept)."""
        return Counter(self._labels)

    def _ranked_rows(self, parts: list[np.ndarray]) -> np.ndarray:
        """One concept's entries from ``parts`` (of runs), highest score first."""
        return _merged_parts(parts, WORD_ROW, lambda rows: np.lexsort(_best_first(rows)))

    def _merged(self) -> Iterator[tuple[str, np.ndarray]]:
        """Every concept in the shards' order with its entries, highest score first: the runs
        walked side by side, one concept's entries read at a time."""
        runs = self._runs
        heap = [(_concept_order(str(run.keys[0])), i, 0)  # type: ignore[index]
                for i, run in enumerate(runs) if len(run.keys)]  # type: ignore[arg-type]
        heapq.heapify(heap)
        while heap:
            order, parts, concept = heap[0][0], [], ""
            while heap and heap[0][0] == order:
                _, i, k = heapq.heappop(heap)
                keys = runs[i].keys
                concept = str(keys[k])  # type: ignore[index]
                parts.append(runs[i].part(k))
                if k + 1 < len(keys):  # type: ignore[arg-type]
                    heapq.heappush(heap, (_concept_order(str(keys[k + 1])), i, k + 1))  # type: ignore[index]
            yield concept, self._ranked_rows(parts)

    def ranked(self, concept: str) -> list[list]:
        """``[[layer, unit, score, rank, thumb], ...]`` of ``concept``, highest score first
        (ties by layer and unit; units without a score last)."""
        if concept not in self.concepts:
            return []
        parts = [run.part(int(k)) for run in self._runs
                 for k in np.flatnonzero(run.keys == concept)]  # type: ignore[operator]
        return _word_entries(self._ranked_rows(parts))

    def shards(self) -> list[dict[str, Any]]:
        """The shards: ``{"format_version", "first", "last", "words": {concept: ranked
        entries}, "split": {concept: [offset, total]}}`` (``split``: the concepts continued
        from or into another shard, with the rank of their first entry here and their count)."""
        return list(self.iter_shards())

    def iter_shards(self) -> Iterator[dict[str, Any]]:
        """``shards``, each made when the previous one is taken."""
        current: dict[str, Any] | None = None
        for concept, ranked in self._merged():
            key, offset = word_key(concept), 0
            while offset < len(ranked):
                if current is None or current["n"] >= self.shard_entries:
                    if current is not None:
                        yield _complete(current)
                    current = {"format_version": SITE_FORMAT_VERSION, "first": key,
                               "last": key, "words": {}, "split": {}, "n": 0}
                take = _word_entries(ranked[offset:offset + self.shard_entries - current["n"]])
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
