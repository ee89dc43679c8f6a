"""Benchmark of the relations (similar units, layer maps) and of the quantile examples.

1. ``index``: the whole index pass on the bundled demo model over ``synthetic:2000`` with
   quantile examples (``--quantiles 8``) against without (``--quantiles 0``), alternated,
   best of ``--repeats``; target: within 15%. Also the extra images the maps pass reads and
   the statistics' own extra time (no model), which do not depend on the machine's load.
2. ``layer``: a ViT-B-sized layer, 3,072 units × 10,000 probe images of random but
   correlated profiles (units in clusters that share latent factors, plus noise), float16 and
   centred as the index stores them. Time and peak memory (above the RSS before) of the
   profiles' standardization, the exact FAISS search (the layer against itself, top-14),
   PCA (50 components, subspace iteration), UMAP and the typical units; the search rate
   scaled to ViT-L (98,304 units: every unit against every unit of the model) and compared
   with the forward over the probe images, to say whether exact search is fast enough; and
   which map reads better: the share of each unit's top-10 correlated units among its 10
   nearest on the map, and sklearn's trustworthiness.
3. ``maps``: the same comparison on the real layers of the demo atlas (its probe profiles).

Usage: ``python scripts/bench_relations.py [--units 3072 --images 10000] [--sections ...]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import add_layer_size_options, proc_status_kb

REPO = Path(__file__).resolve().parent.parent

VIT_L_UNITS = 24 * 4096
VIT_L_FORWARD_FLOP = 2 * 61.6e9  # per 224 px image: ~61.6 GMACs (timm's vit_large_patch16_224)


class Measure:
    """``with Measure(name, rows): ...`` times a step and records its peak memory above the
    resident size before it (VmHWM after resetting it through /proc/self/clear_refs; numpy
    and FAISS allocations alike)."""

    def __init__(self, name: str, rows: list):
        self.name, self.rows = name, rows

    def __enter__(self):
        with contextlib.suppress(OSError):  # reset the peak to the current RSS
            Path("/proc/self/clear_refs").write_text("5")
        self.base = proc_status_kb("VmRSS")
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t
        self.rows.append((self.name, self.seconds,
                          max(0, proc_status_kb("VmHWM") - self.base) / 1024))


def correlated_profiles(units: int, images: int, clusters: int = 48, factors: int = 96,
                        seed: int = 0) -> np.ndarray:
    """``(images, units)`` float16 centred profiles: each unit mixes its cluster's factors,
    a few shared ones and noise."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((images, factors)).astype(np.float32)
    cluster = rng.integers(0, clusters, units)
    centres = rng.standard_normal((clusters, factors)).astype(np.float32)
    sparse = rng.random((clusters, factors)) < 0.08
    loadings = (centres * sparse)[cluster] + 0.3 * rng.standard_normal((units, factors)) \
        .astype(np.float32) * (rng.random((units, factors)) < 0.05)
    x = z @ loadings.T + rng.standard_normal((images, units)).astype(np.float32)
    x = np.maximum(x, 0) - 0.1 * np.maximum(-x, 0)  # GELU-like skew
    return (x - x.mean(0)).astype(np.float16)


def map_quality(x: np.ndarray, pcs: np.ndarray, rows: np.ndarray, scores: np.ndarray,
                seed: int = 0) -> dict[str, dict[str, float]]:
    """Neighbour preservation, trustworthiness and time of both maps of one layer."""
    from sklearn.manifold import trustworthiness

    from pipeline.relations.layout import neighbour_preservation, pca_coords, umap_coords

    out = {}
    for name, make in (("pca", lambda: pca_coords(pcs)),
                       ("umap", lambda: umap_coords(pcs, rows, scores, seed))):
        t = time.perf_counter()
        xy = make()
        seconds = time.perf_counter() - t
        out[name] = {"preservation": neighbour_preservation(xy, rows, 10),
                     "trust": float(trustworthiness(x, xy, n_neighbors=10)),
                     "seconds": seconds}
    return out


def bench_layer(units: int, images: int) -> None:
    import faiss

    from pipeline.relations.layout import pca_components, typical_units
    from pipeline.relations.similar import search, standardize

    print(f"\n== one layer: {units} units × {images} probe images (random, correlated) ==")
    prof = correlated_profiles(units, images)
    print(f"profiles as stored: float16 {prof.nbytes / 2**20:.0f} MiB")
    rows_: list = []
    with Measure("standardize", rows_):
        x = standardize(prof)
    with Measure("exact search (top-14)", rows_) as m:
        rows, scores = search(x, x, 14, exclude_self=True)
    search_s = m.seconds
    with Measure("PCA (50 components)", rows_):
        pcs = pca_components(x)
    import umap  # noqa: F401  (numba start-up outside the timing)

    from pipeline.relations.layout import umap_coords

    umap_coords(pcs[:200], rows[:200] % 200, scores[:200], 0)  # JIT warm-up
    with Measure("UMAP (on PCA-50, exact kNN)", rows_):
        umap_coords(pcs, rows, scores, 0)
    with Measure("typical units (k-means 8)", rows_):
        typical_units(pcs)
    print(f"{'step':<30} {'seconds':>8} {'peak MiB':>9}")
    for name, s, mib in rows_:
        print(f"{name:<30} {s:>8.2f} {mib:>9.0f}")
    flop = 2.0 * units * units * images
    rate = flop / search_s
    print(f"exact search: {rate / 1e9:.0f} GFLOP/s achieved ({faiss.omp_get_max_threads()} "
          f"threads)")
    total = 2.0 * VIT_L_UNITS**2 * images
    est = total / rate
    forward = images * VIT_L_FORWARD_FLOP
    print(f"ViT-L, every unit vs every unit of the model ({VIT_L_UNITS} units × {images} "
          f"images): {total / 1e12:.0f} TFLOP, ~{est / 60:.0f} min at this rate "
          f"(~{est / 60 / 24:.1f} min per layer); {total / forward:.2f}x the FLOPs of the "
          f"ViT-L forward over the probe images alone")
    verdict = ("exact search is fast enough: it costs less than indexing the probe images "
               "themselves, so no approximate index or PCA is used"
               if total < forward else
               "exact search costs more than indexing the probe images: consider PCA/IVF")
    print(f"verdict: {verdict}")
    print(f"memory at ViT-L: standardized float32 profiles of all layers "
          f"{VIT_L_UNITS * images * 4 / 2**30:.1f} GiB (held during relate)")
    report_maps(map_quality(x, pcs, rows, scores), "this layer")


def report_maps(q: dict[str, dict[str, float]], where: str) -> None:
    print(f"map of {where}: {'method':<6} {'top-10 kept':>11} {'trustworthiness':>16} "
          f"{'seconds':>8}")
    for name, v in q.items():
        print(f"{'':<{len(where) + 8}}{name:<6} {v['preservation']:>11.2f} {v['trust']:>16.3f} "
              f"{v['seconds']:>8.2f}")
    better = max(q, key=lambda n: q[n]["preservation"])
    print(f"reads better: {better} (keeps {q[better]['preservation']:.0%} of each unit's 10 most "
          f"correlated units among its 10 nearest on the map, against "
          f"{min(v['preservation'] for v in q.values()):.0%})")
    if better == "umap":
        print("  why: a reader takes units drawn side by side to be alike; UMAP is fitted to "
              "each unit's exact correlation neighbours, PCA keeps only the two largest "
              "directions of variance and folds every other one onto them")


def _index(out: Path, quantiles: int, images: int) -> float:
    from pipeline.config import demo_config
    from pipeline.index.stage import run_index
    from pipeline.runtime import prepare

    cfg = demo_config(out=str(out), dataset=f"synthetic:{images}", quantiles=quantiles,
                      labeler=None, device="cpu")
    run = prepare(cfg)
    t = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        run_index(run)
    return time.perf_counter() - t


def bench_index(images: int, repeats: int, tmp: Path) -> Path:
    print(f"\n== index pass, demo model, synthetic:{images}: quantile examples vs none ==")
    times: dict[int, list[float]] = {0: [], 8: []}
    last = tmp
    for r in range(repeats):
        for q in ((0, 8) if r % 2 == 0 else (8, 0)):
            last = tmp / f"q{q}-{r}"
            times[q].append(_index(last, q, images))
    bare, withq = min(times[0]), min(times[8])
    print(f"bare index pass      {bare:>7.2f} s (best of {repeats})")
    print(f"with quantiles (8×4) {withq:>7.2f} s")
    ratio = withq / bare
    print(f"quantiles / bare     {ratio:>7.2f}x  (target ≤ 1.15: "
          f"{'met' if ratio <= 1.15 else 'NOT met'})")
    from pipeline.index.results import load_layer_index
    from pipeline.store import AtlasStore

    store, top, extra, layers = AtlasStore(tmp / "q8-0"), set(), set(), 0
    while (li := load_layer_index(store, layers)) is not None:
        top |= set(li.top_ids[li.top_ids >= 0].tolist())
        extra |= set(li.quantile_ids[li.quantile_ids >= 0].tolist())
        layers += 1
    print(f"maps pass reads {len(top | extra)} images with quantile examples, {len(top)} "
          f"without (+{len(extra - top) / max(1, len(top)):.0%}); quantile examples are "
          f"{len(extra)} distinct images (one hash for every unit)")
    print(f"statistics alone (no model): {stats_overhead(images):.2f} s more per "
          f"{images} images over the demo's {layers} layers")
    return last


def stats_overhead(images: int, units: int = 384, layers: int = 4, batch: int = 128) -> float:
    """Seconds the quantile samples add to the scan's statistics (random scores)."""
    from pipeline.index.stats import LayerStats

    rng = np.random.default_rng(0)
    scores = (rng.gamma(1.5, size=(images, units)) * rng.uniform(0.1, 5, units) - 0.3)
    scores = scores.astype(np.float32)
    spent = {}
    for qk in (0, 4):
        t = time.perf_counter()
        for _ in range(layers):
            s = LayerStats(units, 12, 12, quantile_k=qk)
            for a in range(0, images, batch):
                idx = np.arange(a, min(a + batch, images))
                s.update(scores[idx], idx, idx % 12)
            s.quantiles(8)
        spent[qk] = time.perf_counter() - t
    return spent[4] - spent[0]


def bench_demo_maps(atlas: Path) -> None:
    from pipeline.index.results import load_probe
    from pipeline.relations.layout import pca_components
    from pipeline.relations.similar import search, standardize
    from pipeline.store import AtlasStore

    store = AtlasStore(atlas)
    layer = 0
    results = []
    while (p := load_probe(store, layer)) is not None:
        x = standardize(p.profiles)
        rows, scores = search(x, x, 14, exclude_self=True)
        results.append(map_quality(x, pca_components(x), rows, scores))
        layer += 1
    print(f"\n== maps of the demo atlas's {layer} layers ({x.shape[0]} units × {x.shape[1]} "
          f"probe images) ==")
    mean = {m: {k: float(np.mean([r[m][k] for r in results])) for k in results[0][m]}
            for m in results[0]}
    report_maps(mean, "demo layers (mean)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_layer_size_options(p)
    p.add_argument("--index-images", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--sections", nargs="*", default=["layer", "index", "maps"],
                   choices=["layer", "index", "maps"])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:  # the index first: FAISS's threads slow it
        atlas = None
        if "index" in args.sections or "maps" in args.sections:
            atlas = bench_index(args.index_images, max(1, args.repeats if "index" in
                                                        args.sections else 1), Path(tmp))
        if "layer" in args.sections:
            bench_layer(args.units, args.images)
        if "maps" in args.sections:
            bench_demo_maps(atlas)


if __name__ == "__main__":
    main()
