"""A synthetic atlas written through the store's own writers, for tests and the site benchmark.

Visualizations are procedural patterns (no optimization) of two recipes (and, on request, the
accentuation ``ACCENT_RECIPE`` with seeds), with attribution maps and fidelity figures with
recognisability (``FAKE_FIDELITY`` names a few units' on purpose); index files follow
``pipeline.index.results`` exactly; labels (top concepts with SoftWPMI-like scores) go through
the store's label writers, for most units (``fake_labels``); relations (similar units within
and across layers and in another model ``TRICKY_MODEL``, a clustered layer map with typical
units) through the store's relations writers, in the arrays of ``pipeline.relations.stage``;
quantile examples in the index files (``fake_quantiles``). A few strings are deliberately
hostile: a class name full of HTML, an example id with odd characters, a second recipe's name
and note with markup, a concept with markup, quotes and ``&`` (``TRICKY_CONCEPT``), another
model's name with markup (``TRICKY_MODEL``).
"""

from __future__ import annotations

import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.models.spec import ModelSpec
from pipeline.store import (
    AtlasStore,
    atomic_save_npz,
    atomic_write_json,
    write_image,
)

TRICKY_CLASS = "<b>\"cat\" & 'dog'</b>"
TRICKY_ID = "odd id #1?x=<i>y</i>&z=\"q\" 'ü'/..\\n.jpg"
FAKE_RECIPE = {"name": "fake", "steps": 1, "lr": 0.1, "note": "procedural, not optimized"}
TRICKY_RECIPE = 'paper <&> "tv"'  # the second recipe's name: markup, quotes, a space
TRICKY_NOTE = "</pre><script>alert(1)</script> & \"q\""
SECOND_RECIPE = {"name": TRICKY_RECIPE, "steps": 2, "lr": 0.05, "note": TRICKY_NOTE}
CHUNK = 64
TRICKY_CONCEPT = "<em>\"stripes\" & 'dots'</em>"  # unit 0's label in every layer
# Concepts by depth, as the paper's progression: colours and textures early, shapes and parts
# in the middle, objects late ("constructor" is a word that is also a JavaScript property).
CONCEPT_TIERS = (
    ("red", "blue", "green", "yellow", "orange", "purple", "stripes", "dots", "grid", "fur",
     "grass", "sand", "wood", "water", "noise"),
    ("circle", "curve", "edge", "corner", "spiral", "ring", "wheel", "eye", "leaf", "window",
     "constructor", "honeycomb", "scales", "feather", "brick"),
    ("dog", "bird", "car", "tree", "face", "house", "boat", "flower", "clock", "bicycle",
     "mountain", "keyboard", "guitar", "bridge", "pizza"),
)
FAKE_LABEL_INFO = {
    "labeler": "demo", "labeler_id": "demo@fake",
    "concepts": {"source": "fake word list", "count": 1 + sum(map(len, CONCEPT_TIERS)),
                 "digest": "fake"},
    "params": {"scale": 10.0, "top_k": 100, "lam": 1.0, "pool": "mean over patch tokens"},
    "probe_images": 48, "fingerprint": "fake-labels-1",
}
IMAGES_SEEN_PER_EXAMPLE = 10  # examples.json's images_seen = n_examples * this
INDEX_FINGERPRINT = "fake-index-1"  # examples.json's; the relations run names it
# Relations: the other atlas's model (similar units across models), k per group, map clusters.
TRICKY_MODEL = "deit<script>alert(\"x\")</script> & 'co'/base"
SIMILAR_K = 6
MAP_CLUSTERS = 8
MAP_PRESERVATION = 0.5713
QUANTILES, QUANTILE_K = 8, 4  # the index defaults

ACCENT_RECIPE = {"name": "accent", "steps": 1, "lr": 0.05, "note": "procedural, from a seed"}
JUDGE = "demo labeler (fake)"  # the recognisability's judge
TRIALS = 20  # 2-AFC trials per unit
# Fidelity of chosen units of the primary recipe, in every layer (others: see ``fidelity``).
# None: the unit's result has no "fidelity"; a dict of Nones: measured, nothing known (nor
# recognisability: an atlas from before the evaluate stage).
FAKE_FIDELITY: dict[int, dict | None] = {
    0: {"vs_best_example": 2.1, "z": 4.2, "z_rank": 1,  # trusted, recognisable, transfers
        "recognisability": {"judge": JUDGE, "trials": TRIALS, "right": 17, "afc": 0.85,
                            "best_example": {"right": 15, "afc": 0.75},
                            "transfer": {"class": TRICKY_CLASS, "share": 0.8,
                                         "judged": TRICKY_CLASS, "hit": True}}},
    3: None,  # not measured
    7: {"vs_best_example": None, "z": None, "z_rank": None},
    4: {"vs_best_example": 0.43, "z": 3.0, "z_rank": 2,  # weaker; no better than chance
        "recognisability": {"judge": JUDGE, "trials": TRIALS, "right": 9, "afc": 0.45,
                            "best_example": {"right": 15, "afc": 0.75},
                            "transfer": {"class": "ring", "share": 0.65,
                                         "judged": TRICKY_CLASS, "hit": False}}},
    5: {"vs_best_example": 1.5, "z": 0.8, "z_rank": 40,  # not selective; below its example
        "recognisability": {"judge": JUDGE, "trials": TRIALS, "right": 12, "afc": 0.6,
                            "best_example": {"right": 16, "afc": 0.8}, "transfer": None}},
}


def recognisability(unit: int, recipe: int) -> dict | None:
    """The fake recognisability of ``unit`` for recipe number ``recipe``: 2-AFC over ``TRIALS``
    trials, its best example's, a transfer for every third unit; None (not measured) for units
    ``u % 5 == 1``.

    >>> recognisability(1, 0) is None, recognisability(2, 0)["right"]
    (True, 5)
    """
    if unit % 5 == 1:
        return None
    right = (unit * 13 + recipe * 7) % (TRIALS + 1)
    best = 10 + (unit * 11) % (TRIALS - 9)
    transfer = None
    if unit % 3 == 0:
        cls = f"class {1 + unit % 11}"
        judged = cls if unit % 2 == 0 else f"class {1 + (unit + 1) % 11}"
        transfer = {"class": cls, "share": 0.6 + (unit % 4) / 10, "judged": judged,
                    "hit": judged == cls}
    return {"judge": JUDGE, "trials": TRIALS, "right": right, "afc": right / TRIALS,
            "best_example": {"right": best, "afc": best / TRIALS}, "transfer": transfer}


def fidelity(unit: int, units: int, recipe: int) -> dict | None:
    """The fake fidelity of ``unit`` (of ``units`` in its layer) for recipe number ``recipe``
    (0 primary, 1 second, 2 accentuation), with its ``recognisability`` where measured."""
    if recipe == 0 and unit in FAKE_FIDELITY:
        fixed = FAKE_FIDELITY[unit]
        return None if fixed is None else {**fixed, "of": units}
    h = (unit * 7919 + recipe * 104729) % 1000
    out = {"vs_best_example": round(0.5 + h / 400, 4), "z": round(1 + h / 250, 4),
           "z_rank": 1 + (unit * 53 + recipe * 17) % units, "of": units}
    rec = recognisability(unit, recipe)
    return out if rec is None else {**out, "recognisability": rec}


def accented(unit: int) -> bool:
    """Units the fake accentuation covers (of those visualized): every fourth, from unit 0."""
    return unit % 4 == 0


def seed(unit: int, n_examples: int, activation: float) -> dict[str, Any]:
    """The fake accentuation's seed of ``unit``: example number ``unit % n_examples`` (unit 0:
    the one with the odd id), 3 below the accentuation's ``activation``.

    >>> seed(5, 4, 7.5)
    {'example': 'val/img_00001.JPEG', 'number': 1, 'activation': 4.5}
    """
    n = unit % n_examples
    return {"example": example_id(n), "number": n, "activation": round(activation - 3.0, 4)}


def example_id(n: int) -> str:
    """The dataset id of example number ``n`` (0: ``TRICKY_ID``)."""
    return TRICKY_ID if n == 0 else f"val/img_{n:05d}.JPEG"


def attribution(seed: int, size: int) -> np.ndarray:
    """A grayscale ``(size, size)`` uint8 map: one soft blob, different for every seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cy, cx = rng.uniform(0.25, 0.75, 2)
    blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 0.05)
    return (blob * 255).astype(np.uint8)


def tiny_spec(name: str = "vit_tiny_patch16_224", **model_kwargs: Any) -> ModelSpec:
    """The registry's spec of a (small, random) ``vit_tiny_patch16_224``, or of the timm model
    ``name`` (``deit_tiny_patch16_224``: another model of the same shape)."""
    from pipeline.models import create_model, spec_for

    return spec_for(create_model(name, "random", model_kwargs), name, model_kwargs)


def pattern(seed: int, size: int) -> np.ndarray:
    """A smooth colourful ``(size, size, 3)`` uint8 image, different for every seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    freq = rng.uniform(2, 12, size=(3, 2)).astype(np.float32)
    phase = rng.uniform(0, 6.3, size=3).astype(np.float32)
    chans = [np.sin(freq[c, 0] * x * 6.3 + freq[c, 1] * y * 6.3 + phase[c]) for c in range(3)]
    return ((np.stack(chans, -1) * 0.5 + 0.5) * 255).astype(np.uint8)


def _write_vis_layer(root: str, layer: int, units: int, size: int, layer_units: int,
                     accent_examples: int = 0) -> None:
    """Both recipes of one layer: the primary visualizes ``units`` units, with attribution
    maps in even layers only; the second recipe every other unit of those, always with maps;
    with ``accent_examples`` (the dataset's size), the accentuation every fourth, with maps
    and seeds."""
    store = AtlasStore(root)
    recipes = (FAKE_RECIPE, SECOND_RECIPE) + ((ACCENT_RECIPE,) if accent_examples else ())
    for r, recipe in enumerate(recipes):
        for start in range(0, units, CHUNK):
            ids = [u for u in range(start, min(start + CHUNK, units))
                   if r == 0 or (r == 1 and u % 2 == 0) or (r == 2 and accented(u))]
            if not ids:
                continue
            results = []
            for u in ids:
                result = {"unit": u, "activation": float(5 + r + (u * 7919 % 1000) / 100)}
                fid = fidelity(u, layer_units, r)
                if fid is not None:
                    result["fidelity"] = fid
                if r == 2:
                    result["seed"] = seed(u, accent_examples, result["activation"])
                results.append(result)
            images = [pattern(layer * 100003 + u + r * 7777, size) for u in ids]
            maps = None
            if r >= 1 or layer % 2 == 0:
                maps = [attribution(layer * 100003 + u + r, size) for u in ids]
            store.write_vis_chunk(layer, start, dict(recipe), results, images, maps)


def unlabelled(unit: int) -> bool:
    """Units the fake leaves without labels: every tenth, from unit 9."""
    return unit % 10 == 9


def fake_labels(layer: int, n_layers: int, units: int) -> dict[int, list[dict[str, Any]]]:
    """``{unit: [{"concept", "score"}, ...]}`` best first: five concepts (unit 2: two) drawn
    from the tier of the layer's depth, unit 0's best being ``TRICKY_CONCEPT``; units for
    which ``unlabelled`` holds are left out."""
    tier = CONCEPT_TIERS[min(len(CONCEPT_TIERS) - 1, layer * len(CONCEPT_TIERS) // n_layers)]
    out = {}
    for u in range(units):
        if unlabelled(u):
            continue
        rng = np.random.default_rng(layer * 100003 + u + 17)
        concepts = [tier[i] for i in rng.choice(len(tier), 5, replace=False)]
        if u == 0:
            concepts = [TRICKY_CONCEPT, *concepts[:4]]
        concepts = concepts[:2 if u == 2 else 5]
        scores = rng.uniform(1.0, 5.0) - np.cumsum(rng.uniform(0.05, 0.5, len(concepts)))
        out[u] = [{"concept": c, "score": round(float(x), 4)}
                  for c, x in zip(concepts, scores, strict=True)]
    return out


def _write_label_layer(root: str, layer: int, n_layers: int, units: int) -> None:
    AtlasStore(root).write_labels(layer, FAKE_LABEL_INFO["fingerprint"],
                                  fake_labels(layer, n_layers, units))


def _write_index_layer(root: str, layer: int, units: int, grid: tuple[int, int], topk: int,
                       n_examples: int, n_classes: int, bins: int, quantiles: bool) -> None:
    rng = np.random.default_rng(1000 + layer)
    k = min(topk, n_examples)
    top_ids = np.argsort(rng.random((units, n_examples)), axis=1)[:, :k].astype(np.int64)
    top_ids[0, 0] = 0  # unit 0's best example is the one with the odd id
    top_ids[0, 1:] = np.arange(1, k)
    if units > 1 and k > 2:
        top_ids[1, k - 2:] = -1  # unit 1 has two empty slots
    top_scores = np.sort(rng.gamma(2.0, 1.0, (units, k)).astype(np.float32), axis=1)[:, ::-1]
    top_scores = np.where(top_ids < 0, np.float32(0), top_scores).astype(np.float32)
    rows, cols = grid
    yy, xx = np.mgrid[0:rows, 0:cols]
    cy = rng.uniform(0, rows, (units, k, 1, 1))
    cx = rng.uniform(0, cols, (units, k, 1, 1))
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.1 * rows * cols + 1))
    maps = (blob * top_scores[:, :, None, None] * 2 - 0.1).astype(np.float32)
    lo = rng.uniform(-0.2, 0, units).astype(np.float32)
    hi = top_scores[:, 0] + 0.01
    hist_edges = np.linspace(lo, hi, bins + 1, axis=1).astype(np.float32)
    hist_counts = rng.poisson(np.exp(-np.linspace(0, 6, bins)) * 400, (units, bins))
    c = min(5, n_classes)
    top_classes = np.argsort(rng.random((units, n_classes)), axis=1)[:, :c].astype(np.int64)
    top_classes[0] = np.arange(c)  # unit 0's top class is the HTML one
    top_class_means = np.sort(rng.random((units, c)).astype(np.float32), axis=1)[:, ::-1]
    mean = (top_scores.mean(axis=1) * 0.2).astype(np.float32)
    extra = fake_quantiles(layer, mean, top_scores[:, 0], n_examples, grid) if quantiles else {}
    atomic_save_npz(
        AtlasStore(root).index_layer_path(layer),
        top_ids=top_ids, top_scores=np.ascontiguousarray(top_scores), maps=maps,
        hist_counts=hist_counts.astype(np.int64), hist_edges=hist_edges,
        mean=mean, max=top_scores[:, 0].copy(),
        top_classes=top_classes, top_class_means=np.ascontiguousarray(top_class_means), **extra,
    )


def fake_quantiles(layer: int, mean: np.ndarray, top: np.ndarray, n_examples: int,
                   grid: tuple[int, int], q: int = QUANTILES, k: int = QUANTILE_K,
                   ) -> dict[str, np.ndarray]:
    """``LayerIndex``'s quantile arrays: ``q`` equal intervals from each unit's mean to its
    max (unit 1: 3 intervals; unit 2: none), ``k`` examples each (the last interval of unit 0:
    one, the one with the odd id), scores inside their interval, by decreasing score."""
    rng = np.random.default_rng(5000 + layer)
    units = len(mean)
    rows, cols = grid
    edges = np.linspace(mean, top, q + 1, axis=1).astype(np.float32)  # (units, q + 1)
    counts = np.full(units, q)
    if units > 2:
        counts[1], counts[2] = 3, 0
    past = np.arange(q + 1)[None, :] > counts[:, None]
    edges[past] = np.nan
    ids = np.full((units, q, k), -1, np.int64)
    scores = np.full((units, q, k), -np.inf, np.float32)
    maps = np.zeros((units, q, k, rows, cols), np.float32)
    for u in range(units):
        for j in range(counts[u]):
            n = k if not (u == 0 and j == counts[u] - 1) else 1
            ids[u, j, :n] = [0] if n == 1 else rng.choice(n_examples, n, replace=False)
            lo, hi = float(edges[u, j]), float(edges[u, j + 1])
            s = np.sort(rng.uniform(lo, lo + (hi - lo) * 0.999, n))[::-1]
            scores[u, j, :n] = s
            maps[u, j, :n] = rng.uniform(0, 1, (n, rows, cols)) * s[:, None, None]
    return {"quantile_edges": edges, "quantile_ids": ids, "quantile_scores": scores,
            "quantile_maps": maps}


def fake_map(units: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A clustered 2-D layout of ``units`` scaled into [0, 1] (one scale for both axes), and
    the typical unit of each cluster (nearest its centre), largest cluster first, with sizes."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (MAP_CLUSTERS, 2))
    cluster = rng.integers(0, MAP_CLUSTERS, len(units))
    xy = centres[cluster] + rng.normal(0, 0.05, (len(units), 2))
    xy -= xy.min(0)
    xy = (xy / max(float(xy.max()), 1e-9)).astype(np.float32)
    found = []
    for c in range(MAP_CLUSTERS):
        members = np.flatnonzero(cluster == c)
        if len(members):
            mid = xy[members].mean(0)
            best = members[np.argmin(((xy[members] - mid) ** 2).sum(1))]
            found.append((-len(members), int(best)))
    found.sort()
    return (xy, units[[b for _, b in found]].astype(np.int64),
            np.array([-n for n, _ in found], np.int64))


def _similar(rng: np.random.Generator, units: int, pool: int, k: int, own: bool,
             ) -> tuple[np.ndarray, np.ndarray]:
    """``(ids (units, k), scores (units, k))``: random distinct channels of ``pool`` (never the
    unit itself when ``own``), by decreasing correlation; unit 3's last two slots empty."""
    ids = np.full((units, k), -1, np.int64)
    scores = np.full((units, k), np.nan, np.float32)
    for u in range(units):
        choice = rng.choice(pool - 1 if own else pool, min(k, pool - own), replace=False)
        if own:
            choice = choice + (choice >= u)
        ids[u, :len(choice)] = choice
        scores[u, :len(choice)] = np.sort(rng.uniform(-0.2, 0.99, len(choice)))[::-1]
    if units > 3:
        ids[3, k - 2:], scores[3, k - 2:] = -1, np.nan
    return ids, scores


def fake_relations(layer: int, spec: ModelSpec, groups: list[int]) -> dict[str, np.ndarray]:
    """One layer's relations file as ``relate_layer`` writes it: every channel of ``layer``,
    ``SIMILAR_K`` similar units in each layer of ``groups`` (its own first), a map and typical
    units."""
    rng = np.random.default_rng(9000 + layer)
    units = np.arange(spec.layers[layer].units, dtype=np.int64)
    ids, scores = zip(*(_similar(rng, len(units), spec.layers[g].units, SIMILAR_K, g == layer)
                        for g in groups), strict=True)
    xy, typical, sizes = fake_map(units, 9100 + layer)
    return {
        "units": units, "model": np.array(spec.name),
        "similar_layers": np.array(groups, np.int64),
        "similar_units": np.stack(ids, 1), "similar_scores": np.stack(scores, 1),
        "map_xy": xy, "map_method": np.array("umap"),
        "map_preservation": np.array(MAP_PRESERVATION),
        "typical_units": typical, "typical_sizes": sizes,
    }


def fake_across(layer: int, spec: ModelSpec, other_layers: int = 2,
                other_units: int = 64, model: str = TRICKY_MODEL) -> dict[str, np.ndarray]:
    """Similar units of ``layer`` in another model, ``model`` (as ``relate_atlases`` writes
    them): ``other_layers`` layers of ``other_units`` channels."""
    rng = np.random.default_rng(9500 + layer)
    units = np.arange(spec.layers[layer].units, dtype=np.int64)
    ids, scores = zip(*(_similar(rng, len(units), other_units, 3, False)
                        for _ in range(other_layers)), strict=True)
    return {"units": units, "model": np.array(model),
            "similar_layers": np.arange(other_layers, dtype=np.int64),
            "similar_units": np.stack(ids, 1), "similar_scores": np.stack(scores, 1)}


def _write_relations(root: str, spec: ModelSpec, layers: list[int]) -> None:
    """Relations of ``layers`` (each related to every layer of the model, as if all were
    indexed, so links to units without a page occur), then the run's description (format 1
    of ``pipeline.relations.stage``; the other atlas's folder named as its ``model_slug``
    does: not imported here, as it loads torch)."""
    store = AtlasStore(root)
    fingerprint = "fake-relations-1"
    everything = [layer.index for layer in spec.layers]
    for layer in layers:
        groups = [layer] + [i for i in everything if i != layer]
        store.write_relations(layer, fingerprint, fake_relations(layer, spec, groups))
        store.write_relations_across(re.sub(r"[^A-Za-z0-9._-]+", "_", TRICKY_MODEL), layer,
                                     "fake-across-1",
                                     fake_across(layer, spec))
    store.write_relations_info({
        "format_version": 1, "fingerprint": fingerprint,
        "index": INDEX_FINGERPRINT, "model": spec.name, "k": SIMILAR_K, "map": "umap",
        "layers": list(layers), "probe_images": 40,
        "maps": {str(i): {"method": "umap", "preservation": MAP_PRESERVATION} for i in layers},
    })


def _write_examples(store: AtlasStore, n_examples: int, n_classes: int, thumb: int) -> None:
    classes = [TRICKY_CLASS] + [f"class {i} ({'ab' * (i % 3)})" for i in range(1, n_classes)]
    examples = []
    for n in range(n_examples):
        ex_id = example_id(n)
        rel = f"thumbs/{n:05d}.png"
        write_image(store.index_dir / rel, pattern(7 + n, thumb))
        examples.append({"id": ex_id, "label": n % n_classes, "thumb": rel})
    atomic_write_json(store.examples_path, {
        "classes": classes, "examples": examples,
        "images_seen": n_examples * IMAGES_SEEN_PER_EXAMPLE, "skipped": [],
        "dataset": "synthetic:fake", "split": "validation", "fingerprint": INDEX_FINGERPRINT,
    })


def make_fake_atlas(root: str | Path, spec: ModelSpec, *, topk: int = 8, n_examples: int = 48,
                    n_classes: int = 12, vis_size: int | None = None, thumb_size: int = 32,
                    vis_units: int | None = None, index_layers: list[int] | None = None,
                    bins: int = 32, workers: int = 1, labels: bool = True,
                    relations: bool = True, model_kwargs: dict[str, Any] | None = None,
                    weights_id: str = "random(seed=0)", accent: bool = False) -> AtlasStore:
    """Write a complete synthetic atlas of ``spec`` under ``root``.

    ``vis_units``: visualize only the first n units of each layer (default all), with the
    primary recipe ``FAKE_RECIPE``; the second, ``SECOND_RECIPE``, visualizes the even ones;
    ``index_layers``: layers with dataset index files (default all); ``labels``: label every
    unit of every layer (``fake_labels``: units without a page too, and a few left out);
    ``relations``: quantile examples in the index, and similar units, layer maps and typical
    units of every indexed layer (without: the atlas as it was before issue 12);
    ``model_kwargs``, ``weights_id``: what the atlas records of the model's creation and weights
    (they make its page slug: two fakes of one model need different ones to share a site);
    ``accent``: a third recipe, the accentuation ``ACCENT_RECIPE``, of every fourth visualized
    unit (``accented``), each with its ``seed``.
    """
    store = AtlasStore(root)
    config = {"model": spec.name, "weights": "random", "dataset": "synthetic:fake",
              "split": "validation", "topk": topk,
              "recipe": ",".join(r["name"] for r in (FAKE_RECIPE, SECOND_RECIPE)
                                 + ((ACCENT_RECIPE,) if accent else ())), "steps": 1,
              "model_kwargs": dict(model_kwargs or {})}
    store.init(config, spec.to_dict(), weights_id)
    store.write_vis_order(config["recipe"].split(","))  # as the visualize stage records it
    size = vis_size or spec.input_size[-1]
    _write_examples(store, n_examples, n_classes, thumb_size)
    indexed = range(len(spec.layers)) if index_layers is None else index_layers
    jobs = []
    with ProcessPoolExecutor(workers) as pool:
        for layer in spec.layers:
            units = layer.units if vis_units is None else min(vis_units, layer.units)
            jobs.append(pool.submit(_write_vis_layer, str(root), layer.index, units, size,
                                    layer.units, n_examples if accent else 0))
            if layer.index in indexed:
                jobs.append(pool.submit(_write_index_layer, str(root), layer.index, layer.units,
                                        layer.grid, topk, n_examples, n_classes, bins,
                                        relations))
            if labels:
                jobs.append(pool.submit(_write_label_layer, str(root), layer.index,
                                        len(spec.layers), layer.units))
        for job in jobs:
            job.result()
    if labels:  # the run's description last, as the label stage does
        store.write_label_info({**FAKE_LABEL_INFO, "probe_images": n_examples})
    if relations and indexed:
        _write_relations(str(root), spec, sorted(indexed))
    return store


def main() -> None:
    """``python -m pipeline.testing.fake OUT``: a small fake atlas (then ``vit-atlas site``)."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("out", type=Path)
    p.add_argument("--full", action="store_true",
                   help="every unit of vit_tiny_patch16_224 (12 x 768) instead of a 2-layer toy")
    args = p.parse_args()
    spec = tiny_spec() if args.full else tiny_spec(img_size=32, patch_size=8, depth=2,
                                                   embed_dim=48, num_heads=2)
    make_fake_atlas(args.out, spec, topk=16 if args.full else 8, vis_size=64 if args.full
                    else None, workers=2)
    print(f"fake atlas in {args.out}: build it with `vit-atlas site --out {args.out}`")


if __name__ == "__main__":
    main()
