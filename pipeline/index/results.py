"""What the index's files hold, and reading and writing them (the contract between the index
and the stages that read it: label, relations, visualize, site). Where they lie is the store's
(``AtlasStore.index_dir``, ``index_layer_path``, ``examples_path``, ``image_stats_path``,
``probe_path``, ``probe_embeddings_path``, ``thumbs_dir``, ``index_work_dir``).

Files under ``DIR/index/``::

    examples.json       {"classes": [names] | null, "examples": [{"id", "label", "thumb"}],
                         "images_seen": n, "skipped": [{"id", "reason", "number"}],
                         "dataset", "split", "format_version", "fingerprint", "topk",
                         "quantiles", "quantile_k", "layers"}
                        (an example's position in "examples" is its example number; an
                        example that did not decode keeps its place, with "skipped": true)
                        Written last: its presence means the index is complete.
    L{layer:03d}.npz    arrays of one layer, see ``LayerIndex``
    image_stats.npz     statistics of the first ``--stats-images`` dataset images at the
                        model's input size, see ``DatasetImageStats``: ``spectrum``
                        (3, H, W//2+1) float32 mean amplitude spectrum, ``colour_mean`` (3,)
                        and ``colour_cov`` (3, 3) float32 of RGB pixels in [0, 1], ``count``
                        (images measured). Written before examples.json.
    probe/L{layer:03d}.npz  the layer's profiles over the probe set (the first
                        ``--probe-images`` examples that decoded), see ``ProbeProfiles``
    probe/embeddings.npz    an image encoder's (the labeler's) embeddings of the same
                        images, when one ran in the index pass: ``embeddings`` (n, D)
                        float16 unit-norm, ``numbers`` (n,), ``encoder`` (its id)
    thumbs/             one thumbnail per distinct selected image, thumbs/{number:07d}.png
    work/               checkpoints of an unfinished run (see ``checkpoint``)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import AtlasError
from pipeline.store import AtlasStore, atomic_save_npz, atomic_write_json, read_json, read_npz

INDEX_FORMAT = 5  # 2: per-unit std, image_stats.npz; 3: probe profiles; 4: quantile examples;
# 5: whole-layer statistics (layer_*) and bottom-k examples (top_foreground: an optional
# array, added without a bump: readers that do not know it ignore it)
MAPPED = ("maps", "quantile_maps", "bottom_maps")  # the patch maps: most of a layer's bytes


@dataclass
class LayerIndex:
    # Row i of every array is the i-th indexed unit: channel ``units[i]`` (all channels of
    # the layer unless the channels option picked a subset); use ``unit_row`` to find a channel.
    top_ids: np.ndarray  # (units, k) int64 example numbers, best first; -1 = empty slot
    # (units, k) float32 mean-over-patches activation, descending; -inf in empty slots.
    # Ties are broken to the lower example number.
    top_scores: np.ndarray
    maps: np.ndarray  # (units, k, rows, cols) float32 patch-wise activation of each top example
    hist_counts: np.ndarray  # (units, bins) int64 histogram of scores over all images
    hist_edges: np.ndarray  # (units, bins + 1) float32 bin edges (per unit, power-of-two
    # wide bins covering [min, max]: see ``histogram``)
    mean: np.ndarray  # (units,) float32 mean score over all images
    std: np.ndarray  # (units,) float32 population std of the score over all images
    max: np.ndarray  # (units,) float32 max score
    top_classes: np.ndarray  # (units, c) int64 classes with highest mean score; -1 = none
    top_class_means: np.ndarray  # (units, c) float32 their mean scores; 0 = none
    units: np.ndarray | None = None  # (units,) int64 channel of each row (None: 0..units-1)
    # Quantile examples (``quantiles``; None when the index kept none): up to Q intervals
    # [edges[j], edges[j+1]) of whole histogram bins from the bin holding the mean to the bin
    # holding the max, and in each the k examples whose number has the smallest hash.
    quantile_edges: np.ndarray | None = None  # (units, Q + 1) float32; NaN past the last
    quantile_ids: np.ndarray | None = None  # (units, Q, k) int64, by decreasing score; -1 none
    quantile_scores: np.ndarray | None = None  # (units, Q, k) float32; -inf = none
    quantile_maps: np.ndarray | None = None  # (units, Q, k, rows, cols) float32 patch maps
    # The k least activating examples (the 2-AFC's bottom images), least first; ties to the
    # lower example number; -1 / +inf in empty slots.
    bottom_ids: np.ndarray | None = None  # (units, k) int64
    bottom_scores: np.ndarray | None = None  # (units, k) float32, ascending
    bottom_maps: np.ndarray | None = None  # (units, k, rows, cols) float32
    # Statistics of EVERY channel of the layer (index = channel), whatever the channels option
    # selected: what a unit is compared with (selectivity, z-score, z-rank). The per-row
    # ``mean``/``std``/``max``/``hist_*`` above are these arrays' rows ``units``.
    layer_mean: np.ndarray | None = None  # (channels,) float32
    layer_std: np.ndarray | None = None  # (channels,) float32
    layer_max: np.ndarray | None = None  # (channels,) float32
    layer_hist_counts: np.ndarray | None = None  # (channels, bins) int64
    layer_hist_edges: np.ndarray | None = None  # (channels, bins + 1) float32
    # With masks (``--masks``): per top example, ``foreground.FIGURES``: its
    # foreground share and area, and the unit's activation unmasked, with the background and
    # with the foreground replaced by the image's mean colour (NaN: no mask; share and area
    # also NaN without positive activation).
    top_foreground: np.ndarray | None = None  # (units, k, 5) float32

    def unit_row(self, unit: int) -> int | None:
        """Row of channel ``unit`` in the arrays, or None if it was not indexed."""
        if self.units is None:
            return unit if 0 <= unit < len(self.top_ids) else None
        hit = np.flatnonzero(self.units == unit)
        return int(hit[0]) if len(hit) else None

    def whole_layer(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` ``(channels,)`` of every channel of the layer (an index older than
        format 5 only has its indexed rows: channels it lacks get mean 0, std NaN)."""
        if self.layer_mean is not None:
            return self.layer_mean, self.layer_std
        rows = self.units if self.units is not None else np.arange(len(self.mean))
        n = int(rows.max()) + 1 if len(rows) else 0
        mean, std = np.zeros(n, np.float32), np.full(n, np.nan, np.float32)
        mean[rows], std[rows] = self.mean, self.std
        return mean, std

    def top(self, row: int) -> list[tuple[int, float]]:
        """``(example number, score)`` of row ``row``'s filled slots, best first."""
        return [(int(i), float(s)) for i, s in zip(self.top_ids[row], self.top_scores[row],
                                                   strict=True) if i >= 0]

    def quantiles(self, row: int) -> list[dict]:
        """Row ``row``'s intervals: ``[{"interval": (lo, hi), "examples": [(number, score),
        ...], "slots": [slot, ...]}]`` from the mean up, examples by decreasing score
        (``slots`` index ``quantile_maps[row, j]``); empty without quantile examples."""
        if self.quantile_edges is None:
            return []
        edges = self.quantile_edges[row]
        out = []
        for j in range(len(edges) - 1):
            if np.isnan(edges[j + 1]):
                break
            ids, scores = self.quantile_ids[row, j], self.quantile_scores[row, j]
            slots = [s for s in range(len(ids)) if ids[s] >= 0]
            out.append({"interval": (float(edges[j]), float(edges[j + 1])),
                        "examples": [(int(ids[s]), float(scores[s])) for s in slots],
                        "slots": slots})
        return out


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


def load_examples(store: AtlasStore) -> Examples | None:
    """The index's examples, or None before the index is complete.

    >>> load_examples(AtlasStore("/nonexistent")) is None
    True
    """
    path = store.examples_path
    if not path.is_file():
        return None
    d = read_json(path)
    ex = d["examples"]
    return Examples(
        root=store.index_dir,
        ids=[e["id"] for e in ex],
        labels=[e.get("label") for e in ex],
        thumbs=[e.get("thumb") for e in ex],
        class_names=d.get("classes"),
        images_seen=d.get("images_seen", len(ex)),
        skipped=d.get("skipped", []),
    )


def load_layer_index(store: AtlasStore, layer: int) -> LayerIndex | None:
    """``layer``'s ``LayerIndex``, or None if it was not indexed. Its patch maps (``MAPPED``)
    are read-only maps of the file: a reader holds the units it reads, not the layer."""
    path = store.index_layer_path(layer)
    if not path.is_file():
        return None
    names = {f.name for f in fields(LayerIndex)}
    arrays = {k: v for k, v in read_npz(path, mapped=MAPPED).items() if k in names}
    if "std" not in arrays:  # an index of format 1 (pages still read it; `index` redoes it)
        arrays["std"] = np.full(len(arrays["mean"]), np.nan, dtype=np.float32)
    return LayerIndex(**arrays)


def write_layer_index(store: AtlasStore, layer: int, index: LayerIndex) -> None:
    """Write ``L{layer:03d}.npz`` atomically."""
    arrays = {f.name: getattr(index, f.name) for f in fields(LayerIndex)
              if getattr(index, f.name) is not None}
    atomic_save_npz(store.index_layer_path(layer), **arrays)


def write_examples(store: AtlasStore, data: dict[str, Any]) -> None:
    """Write ``examples.json`` atomically (last: it marks the index complete)."""
    atomic_write_json(store.examples_path, data)


# -- dataset image statistics -----------------------------------------------------------------
@dataclass
class DatasetImageStats:
    """Statistics of dataset images at the model's input size, pixels in [0, 1]."""

    spectrum: np.ndarray  # (3, H, W//2+1) float32 mean of |rfft2(image, norm="ortho")|
    colour_mean: np.ndarray  # (3,) float32 mean RGB over all pixels
    colour_cov: np.ndarray  # (3, 3) float32 covariance of RGB over all pixels (as np.cov)
    count: int  # images measured (0: none, every array zero)


def write_image_stats(store: AtlasStore, stats: DatasetImageStats) -> None:
    """Write ``image_stats.npz`` atomically."""
    atomic_save_npz(store.image_stats_path, spectrum=stats.spectrum,
                    colour_mean=stats.colour_mean, colour_cov=stats.colour_cov,
                    count=np.array(stats.count, dtype=np.int64))


def load_image_stats(store: AtlasStore) -> DatasetImageStats | None:
    """The dataset's image statistics, or None if the index has none (absent or older).

    >>> load_image_stats(AtlasStore("/nonexistent")) is None
    True
    """
    path = store.image_stats_path
    if not path.is_file():
        return None
    with np.load(path) as z:
        return DatasetImageStats(spectrum=z["spectrum"], colour_mean=z["colour_mean"],
                                 colour_cov=z["colour_cov"], count=int(z["count"]))


# -- what the visualize stage needs -----------------------------------------------------------
@dataclass
class DatasetIndex:
    """A complete index, as ``require_index`` returns it."""

    layers: dict[int, LayerIndex]  # layer -> its LayerIndex (rows: indexed units)
    image_stats: DatasetImageStats


def require_index(store: AtlasStore, layers: list[int],
                  fingerprint: str | None = None) -> DatasetIndex:
    """The complete index of ``layers`` with the dataset's image statistics, or an
    ``AtlasError`` saying what is missing and how to make it.

    ``fingerprint`` (``IndexJob.from_run(run).fingerprint``), when given, must match the
    index's: an index made with other options does not count.

    >>> require_index(AtlasStore("/nonexistent"), [3])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pipeline.errors.AtlasError: /nonexistent has no dataset index for layer 3: ...
    """
    root = store.root
    fix = ("the visualization recipe needs the dataset's statistics and fidelity is measured "
           "against the index; run the index stage on it (same options) first, or build the "
           "whole atlas")

    def missing(what: str) -> AtlasError:
        return AtlasError(f"{root} {what}: {fix}")

    data = store.index_info()
    if data is None:
        state = "an unfinished" if store.index_work_dir.is_dir() else "no"
        raise missing(f"has {state} dataset index for {_layer_words(layers)}")
    if data.get("format_version") != INDEX_FORMAT:
        raise missing(f"has a dataset index of an older format "
                      f"({data.get('format_version')}, this version reads {INDEX_FORMAT})")
    if fingerprint is not None and data.get("fingerprint") != fingerprint:
        raise missing("has a dataset index made with other options (model, weights, "
                      "dataset, channels, topk, max_images or stats_images)")
    indexed = set(data.get("layers") or [])
    absent = [i for i in layers if i not in indexed or not store.index_layer_path(i).is_file()]
    if absent:
        raise missing(f"has no dataset index for {_layer_words(absent)}")
    images = load_image_stats(store)
    if images is None:
        raise missing("has a dataset index without image statistics (image_stats.npz)")
    loaded = {i: load_layer_index(store, i) for i in layers}
    return DatasetIndex({i: li for i, li in loaded.items() if li is not None}, images)


def _layer_words(layers: list[int]) -> str:
    return f"layer{'' if len(layers) == 1 else 's'} {', '.join(str(i) for i in layers)}"


# -- the probe set ----------------------------------------------------------------------------
@dataclass
class ProbeProfiles:
    """One layer's scores over the probe images, centred per unit and stored as float16."""

    numbers: np.ndarray  # (n,) int64 example numbers of the rows, increasing
    profiles: np.ndarray  # (n, units) float16 score − the unit's mean over these n images
    mean: np.ndarray  # (units,) float32 that mean
    units: np.ndarray | None = None  # (units,) int64 channel of each column (as LayerIndex)

    def scores(self) -> np.ndarray:
        """``(n, units)`` float32 scores (to float16 precision around the mean)."""
        return self.profiles.astype(np.float32) + self.mean


def write_probe(store: AtlasStore, layer: int, numbers: np.ndarray, scores: np.ndarray,
                units: np.ndarray) -> None:
    """Write one layer's ``ProbeProfiles`` from raw float32 ``scores`` (n, units)."""
    mean = scores.astype(np.float64).mean(0).astype(np.float32) if len(scores) else \
        np.zeros(scores.shape[1], np.float32)
    atomic_save_npz(store.probe_path(layer), numbers=numbers.astype(np.int64),
                    profiles=(scores - mean).astype(np.float16), mean=mean,
                    units=units.astype(np.int64))


def load_probe(store: AtlasStore, layer: int) -> ProbeProfiles | None:
    path = store.probe_path(layer)
    if not path.is_file():
        return None
    with np.load(path) as z:
        return ProbeProfiles(z["numbers"], z["profiles"], z["mean"], z["units"])


def write_probe_embeddings(store: AtlasStore, encoder: str, numbers: np.ndarray,
                           embeddings: np.ndarray) -> None:
    atomic_save_npz(store.probe_embeddings_path, numbers=numbers.astype(np.int64),
                    embeddings=embeddings.astype(np.float16), encoder=np.array(encoder))


def load_probe_embeddings(store: AtlasStore, encoder: str) -> tuple[np.ndarray,
                                                                    np.ndarray] | None:
    """``(numbers, embeddings float32)`` made by ``encoder`` in the index pass, or None."""
    path = store.probe_embeddings_path
    if not path.is_file():
        return None
    with np.load(path) as z:
        if str(z["encoder"]) != encoder:
            return None
        return z["numbers"], z["embeddings"].astype(np.float32)
