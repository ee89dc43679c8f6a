"""The ``relations`` stage (``vit-atlas relations``, alias ``relate``): similar units, a 2-D
map and the typical units of every layer, from the index's probe profiles, into
``DIR/relations``.

Per layer ``DIR/relations/L{layer:03d}.npz`` holds (rows: the layer's indexed units)::

    units            (U,) int64 channel ids
    model            str, the atlas's model name
    similar_layers   (G,) int64 layer of each group: the unit's own layer, then the others
    similar_units    (U, G, k) int64 most correlated channels per group, best first; -1 none
    similar_scores   (U, G, k) float32 their Pearson correlations over the probe set
    map_xy           (U, 2) float32 the layer map, in [0, 1]
    map_method       str, umap | pca
    map_preservation float, share of the top-10 correlated units among the 10 nearest on the map
    typical_units    (T,) int64 channels nearest the k-means centres, largest cluster first
    typical_sizes    (T,) int64 their clusters' sizes
    fingerprint      str, the relations run (index, k, layers, map)

Each layer is written atomically when done, with the run's fingerprint, so a rerun (after
``kill -9`` too) skips finished layers and a changed index redoes them. ``relate_atlases``
links two atlases indexed over the same probe set (for ``publish``).
"""

from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from pipeline import distributed, ids
from pipeline.errors import AtlasError
from pipeline.ids import say
from pipeline.ids import slug as ids_slug
from pipeline.index.results import INDEX_FORMAT, load_probe
from pipeline.relations.layout import (
    MAP_METHODS,
    UMAP_NEIGHBOURS,
    neighbour_preservation,
    pca_components,
    pca_coords,
    typical_units,
    umap_coords,
)
from pipeline.relations.similar import LayerProfiles, group_order, similar_groups
from pipeline.runtime import Run
from pipeline.store import AtlasStore

RELATIONS_FORMAT = 1
TYPICAL_UNITS = 8
PRESERVATION_K = 10




def model_name(store: AtlasStore) -> str:
    return str(store.manifest()["model"]["name"])


def require_profiles(store: AtlasStore, layers: list[int] | None = None,
                     ) -> tuple[dict, dict[int, LayerProfiles]]:
    """The finished index's ``examples.json`` and the standardized profiles of ``layers``
    (default: every indexed layer), or an ``AtlasError`` naming the stage to run."""
    root = store.root
    data = store.index_info()
    if data is None:
        raise AtlasError(f"{root} has no finished dataset index: relations are computed from "
                         "its probe profiles; run the index stage on it first")
    indexed = list(data.get("layers") or [])
    layers = indexed if layers is None else [i for i in layers if i in indexed]
    probes = {i: load_probe(store, i) for i in layers}
    absent = [i for i, p in probes.items() if p is None]
    if data.get("format_version", 0) < 3 or absent:
        raise AtlasError(f"{root}'s index has no probe profiles"
                         + (f" for layers {absent}" if absent else "")
                         + f" (an older index, format {data.get('format_version')}; this "
                         f"version writes {INDEX_FORMAT}): rerun the index stage on it")
    if not layers:
        raise AtlasError(f"{root}'s index holds none of the selected layers: run the index "
                         "stage on it with the same layers", option="layers")
    return data, {i: LayerProfiles.from_probe(i, p) for i, p in probes.items()}


def run_relations(run: Run) -> None:
    """Relate the units of every selected layer of ``run``'s atlas (needs its index; see
    the module docstring). Runs on the main process; other ranks wait."""
    if distributed.is_main():
        rel = run.config.relations
        relate(run.store, run.layers, k=rel.similar_k, method=rel.layer_map,
               seed=run.config.seed)
    distributed.barrier()


def relate(store: AtlasStore, layers: list[int] | None = None, k: int = 8,
           method: str = "umap", seed: int = 0) -> None:
    """Write ``DIR/relations`` for ``layers`` of the atlas in ``store`` (skipping layers
    already done by the same run)."""
    if method not in MAP_METHODS:
        raise AtlasError(f"layer_map must be one of {', '.join(MAP_METHODS)}, not {method!r}",
                         option="layer_map")
    if k < 1:
        raise AtlasError(f"similar_k must be at least 1, not {k}", option="similar_k")
    data, profiles = require_profiles(store, layers)
    order = sorted(profiles)
    numbers = [p.x.shape[1] for p in profiles.values()]
    model = model_name(store)
    fingerprint = ids.fingerprint({"format": RELATIONS_FORMAT, "index": data.get("fingerprint"),
                                   "k": k, "layers": order, "map": method, "seed": seed,
                                   "typical": TYPICAL_UNITS})
    info = store.relations_info() or {}
    maps = info.get("maps", {}) if info.get("fingerprint") == fingerprint else {}
    todo = [i for i in order if not store.relations_done(i, fingerprint)]

    def write_info() -> None:
        store.write_relations_info({
            "format_version": RELATIONS_FORMAT, "fingerprint": fingerprint,
            "index": data.get("fingerprint"), "model": model, "k": k, "map": method,
            "layers": order, "probe_images": int(numbers[0]), "maps": maps,
        })

    write_info()
    if not todo:
        say(f"relate: complete for this configuration ({store.relations_dir}), nothing to do")
        return
    t0 = time.perf_counter()
    for i in tqdm(todo, desc="relations", unit="layer", dynamic_ncols=True):
        arrays = relate_layer(profiles[i], [profiles[j] for j in group_order(i, order)], k,
                              model, method, seed)
        store.write_relations(i, fingerprint, arrays)
        maps[str(i)] = {"method": method,
                        "preservation": round(float(arrays["map_preservation"]), 4)}
    write_info()
    say(f"relate: {len(todo)} layers, {sum(len(p.units) for p in profiles.values())} units "
         f"over {numbers[0]} probe images in {time.perf_counter() - t0:.1f} s "
         f"-> {store.relations_dir}")


def relate_layer(query: LayerProfiles, bases: list[LayerProfiles], k: int, model: str,
                 method: str = "umap", seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays of one layer's relations file (``bases[0]`` is the layer itself).

    >>> rng = np.random.default_rng(0)
    >>> from pipeline.relations.similar import standardize
    >>> p = LayerProfiles(0, np.arange(6), standardize(rng.normal(size=(20, 6))))
    >>> a = relate_layer(p, [p], 2, "m", "pca")
    >>> a["similar_units"].shape, a["map_xy"].shape, str(a["map_method"])
    ((6, 1, 2), (6, 2), 'pca')
    """
    wide = max(k, UMAP_NEIGHBOURS - 1, PRESERVATION_K)
    groups = similar_groups(query, bases, wide, model)
    own_ids, own_scores = groups.ids[:, 0], groups.scores[:, 0]  # channel ids, best first
    rows = np.where(own_ids >= 0, np.searchsorted(query.units, np.maximum(own_ids, 0)), -1)
    pcs = pca_components(query.x)
    xy = umap_coords(pcs, rows, own_scores, seed) if method == "umap" else pca_coords(pcs)
    typical, sizes = typical_units(pcs, TYPICAL_UNITS, seed)
    return {
        "units": query.units, "model": np.array(model), "similar_layers": groups.layers,
        "similar_units": groups.ids[:, :, :k], "similar_scores": groups.scores[:, :, :k],
        "map_xy": xy, "map_method": np.array(method),
        "map_preservation": np.array(neighbour_preservation(xy, rows, PRESERVATION_K)),
        "typical_units": query.units[typical], "typical_sizes": sizes,
    }


# -- across atlases ---------------------------------------------------------------------------
def check_same_probe(a: AtlasStore, b: AtlasStore) -> None:
    """Raise ``AtlasError`` unless ``a`` and ``b`` were indexed over the same probe set: the
    same dataset and split, and the same probe images (numbers and ids)."""
    da, db = a.index_info(), b.index_info()
    if da is None or db is None:
        missing = a.root if da is None else b.root
        raise AtlasError(f"{missing} has no finished dataset index: run the index stage on "
                         "it first")
    for key in ("dataset", "split"):
        if da.get(key) != db.get(key):
            raise AtlasError(f"{a.root} and {b.root} were indexed over different {key}s "
                             f"({da.get(key)!r}, {db.get(key)!r}): their units cannot be "
                             "compared")
    if not da.get("layers") or not db.get("layers"):
        raise AtlasError("an atlas has no probe profiles: rerun the index stage on it")
    pa, pb = load_probe(a, da["layers"][0]), load_probe(b, db["layers"][0])
    if pa is None or pb is None:
        raise AtlasError("an atlas has no probe profiles: rerun the index stage on it")
    ids_a = [da["examples"][n]["id"] for n in pa.numbers.tolist()]
    ids_b = [db["examples"][n]["id"] for n in pb.numbers.tolist()]
    if not np.array_equal(pa.numbers, pb.numbers) or ids_a != ids_b:
        raise AtlasError(f"{a.root} and {b.root} have different probe sets "
                         f"({len(pa.numbers)} and {len(pb.numbers)} images): index both "
                         "with the same probe_images", option="probe_images")


def similar_across(a: AtlasStore, b: AtlasStore, k: int = 8) -> dict[int, dict[int, list]]:
    """For every indexed layer of ``a``: ``{unit: [{"model", "layer", "unit", "score"}]}``,
    its top-``k`` correlated units in each layer of ``b`` (same probe set required)."""
    return {layer: groups.entries() for layer, groups in _across(a, b, k).items()}


def _across(a: AtlasStore, b: AtlasStore, k: int):
    check_same_probe(a, b)
    _, pa = require_profiles(a)
    _, pb = require_profiles(b)
    name = model_name(b)
    bases = [pb[j] for j in sorted(pb)]
    return {i: similar_groups(pa[i], bases, k, name, same_model=False) for i in sorted(pa)}


def relate_atlases(a: AtlasStore, b: AtlasStore, k: int = 8) -> None:
    """Store each atlas's similar units in the other (``DIR/relations/across/<model>/``), so
    that ``store.similar(layer)`` lists them after its own model's groups."""
    for x, y in ((a, b), (b, a)):
        dx, dy = x.index_info() or {}, y.index_info() or {}
        fingerprint = ids.fingerprint({"format": RELATIONS_FORMAT,
                                       "index": dx.get("fingerprint"),
                                       "other": dy.get("fingerprint"), "k": k})
        slug = ids_slug(model_name(y))
        todo = _across(x, y, k)
        for layer, groups in tqdm(todo.items(), desc=f"relate: {slug}", unit="layer",
                                  dynamic_ncols=True):
            x.write_relations_across(slug, layer, fingerprint, {
                "units": groups.units, "model": np.array(groups.models[0]),
                "similar_layers": groups.layers, "similar_units": groups.ids,
                "similar_scores": groups.scores})
