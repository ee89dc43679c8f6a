"""Benchmark the site stage on a synthetic atlas of every unit of vit_tiny (12 x 768 = 9,216).

For each size it writes a fake atlas (procedural visualizations of two recipes, the second
for every other unit, with attribution maps and fidelity figures; random index data in the
exact store formats, see ``pipeline/testing/fake.py``), then builds the site in a fresh process
and reports feature pages/s over the whole stage (Markdown, mkdocs, feature.json, assets),
peak memory (ru_maxrss of the builder and of its worker processes) and bytes per feature page.
A second, smaller size shows how memory scales with the page count. It also times the
alternative of writing one PNG overlay per top example, which the site avoids.

Relations (similar units, quantile examples, the layer maps): the fake atlas has them, so the
page and feature.json sizes above include them; it also reports the built layer maps'
``map.json`` sizes, those of a 4,096-unit layer (``--map-units``, as ViT-L's FFN), and the
layer page's first paint and map drawn in headless Chromium (``--no-browser`` to skip).

Word index: the sizes of the built site's shards and of ``models.json`` (what one word search
fetches), and, without building pages, of the index of a 100,000-unit atlas (``--word-units``)
with the fake's 46 concepts (each labels thousands of units: the worst case for one concept)
and with 20,000 Zipf-distributed concepts (closer to CLIP-Dissect over a word list).

    .venv/bin/python scripts/bench_site.py                 # 9,216 and 2,304 features
    .venv/bin/python scripts/bench_site.py --units 64 --small-units 16   # quick
    .venv/bin/python scripts/bench_site.py --large     # 102,400 features, 4,096-unit layers
    .venv/bin/python scripts/bench_site.py --codecs atlas-demo   # the site's image encoding
    .venv/bin/python scripts/bench_site.py --memory    # memory at 9,216 and 36,864 features
    .venv/bin/python scripts/bench_site.py --bytes --bytes-atlas atlas-demo  # the size targets
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import MemorySampler, proc_status_kb

REPO = Path(__file__).resolve().parent.parent


def build_child(root: str) -> None:
    """Run in a fresh interpreter: build the site of ``root`` and print figures as JSON."""
    import logging

    import mkdocs.commands.build  # noqa: F401  (imports are not part of the stage's time)

    from pipeline.site.build import build_site
    from pipeline.store import AtlasStore

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("pipeline.site.build").setLevel(logging.INFO)
    rss_before = proc_status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    t0, c0 = time.perf_counter(), os.times()
    with MemorySampler() as sampler:
        site = build_site(AtlasStore(root))
    wall = time.perf_counter() - t0
    c1 = os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    cpu_children = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    print(json.dumps({
        "site": str(site), "wall_s": wall, "cpu_main_s": cpu, "cpu_workers_s": cpu_children,
        "maxrss_main_kb": proc_status_kb("VmHWM"),
        "maxrss_main_before_kb": rss_before,
        "maxrss_workers_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "sampled_kb": sampler.peaks,
    }))


def page_sizes(site: Path, slug: str) -> tuple[int, float, int, float]:
    pages = list((site / slug).glob("*/*/index.html"))
    sizes = np.array([p.stat().st_size for p in pages])
    js = np.array([p.with_name("feature.json").stat().st_size for p in pages])
    return len(pages), float(sizes.mean()), int(sizes.max()), float(js.mean())


def _kib(n: float) -> str:
    return f"{n / 1024:.2f} KiB" if n < 10 * 1024 else f"{n / 1024:.1f} KiB"


def shard_stats(blobs: list[bytes], models_json: bytes, entries: list[int]) -> dict:
    """Sizes of word-index shards (raw and gzip, as a server would send them)."""
    raw = np.array([len(b) for b in blobs])
    gz = np.array([len(gzip.compress(b, 6)) for b in blobs])
    return {"shards": len(blobs), "entries": int(sum(entries)), "max_entries": max(entries),
            "raw_mean": float(raw.mean()), "raw_max": int(raw.max()), "raw_total": int(raw.sum()),
            "gz_mean": float(gz.mean()), "gz_max": int(gz.max()),
            "models_json": len(models_json), "models_json_gz": len(gzip.compress(models_json, 6))}


def site_word_index(site: Path) -> dict | None:
    """Shard sizes of a built site (None if it has no labels)."""
    models_json = (site / "models.json").read_bytes()
    words = json.loads(models_json)["models"][0]["words"]
    if not words:
        return None
    blobs = [(site / url).read_bytes() for url, *_ in words["shards"]]
    return {**shard_stats(blobs, models_json, [n for *_, n in words["shards"]]),
            "concepts": words["concepts"], "units": words["units"]}


def word_index_at_scale(units: int, vocabulary: int | None, layers: int = 12) -> dict:
    """The word index of ``units`` labelled units (``layers`` layers, five concepts each),
    without pages: concepts of the fake atlas (``vocabulary=None``) or ``vocabulary`` synthetic
    words drawn with Zipf-like frequencies. Also times building the shards."""
    from pipeline.site.search import WordIndex
    from pipeline.site.urls import SITE_FORMAT_VERSION
    from pipeline.testing.fake import fake_labels

    per_layer = -(-units // layers)
    index = WordIndex(["visualization.png"])
    rng = np.random.default_rng(0)
    words = None
    if vocabulary:
        words = [f"w{i:05d}{'abcdefghij'[i % 10] * (1 + i % 7)}" for i in range(vocabulary)]
        p = 1.0 / np.arange(1, vocabulary + 1) ** 0.9
        p /= p.sum()
    for layer in range(layers):
        n = min(per_layer, units - layer * per_layer)
        if vocabulary:
            picks = rng.choice(vocabulary, size=(n, 8), p=p)
            labels = {}
            for u in range(n):
                concepts = list(dict.fromkeys(words[i] for i in picks[u]))[:5]
                top = rng.uniform(1, 5)
                labels[u] = [{"concept": c, "score": round(top - 0.3 * k, 4)}
                             for k, c in enumerate(concepts)]
        else:
            labels = fake_labels(layer, layers, n)
        index.extend([(c["concept"], layer, u, c["score"], rank, 0)
                      for u, cs in labels.items() for rank, c in enumerate(cs, 1)])
    t = time.perf_counter()
    shards = index.shards()
    blobs = [json.dumps(s, ensure_ascii=False, separators=(",", ":")).encode() for s in shards]
    seconds = time.perf_counter() - t
    meta = index.meta("vit_model", [index.shard_row(s) for s in shards], "demo")
    models_json = json.dumps({"format_version": SITE_FORMAT_VERSION, "models": [
        {"words": meta}]}, ensure_ascii=False, separators=(",", ":")).encode()
    return {**shard_stats(blobs, models_json, [n for *_, n in meta["shards"]]),
            "concepts": meta["concepts"], "units": meta["units"], "build_s": seconds}


def report_words(name: str, w: dict | None) -> None:
    if w is None:
        print(f"  {name}: no labels")
        return
    print(f"  {name}: {w['units']:,} labelled units, {w['concepts']:,} concepts, "
          f"{w['entries']:,} entries in {w['shards']} shards (at most {w['max_entries']:,} "
          f"entries each)" + (f", built in {w['build_s']:.1f} s" if "build_s" in w else ""))
    print(f"         shard JSON {_kib(w['raw_mean'])} mean, {_kib(w['raw_max'])} max "
          f"(gzip {_kib(w['gz_mean'])} mean, {_kib(w['gz_max'])} max), {_kib(w['raw_total'])} "
          f"in all; models.json {_kib(w['models_json'])} (gzip {_kib(w['models_json_gz'])}); "
          f"a word search fetches models.json + 1 shard = at most "
          f"{_kib(w['models_json'] + w['raw_max'])} ({_kib(w['models_json_gz'] + w['gz_max'])} "
          "gzip)")


def map_json_at_scale(units: int) -> dict:
    """``map.json`` of a ``units``-unit layer (the fake's clustered layout, every unit
    visualized), raw and gzip."""
    from types import SimpleNamespace

    from pipeline.site.overview import map_record
    from pipeline.testing.fake import fake_map

    ids = np.arange(units, dtype=np.int64)
    xy, typical, sizes = fake_map(ids, 0)
    layer_map = {"method": "umap", "preservation": 0.57,
                 "units": [{"unit": int(u), "x": round(float(p[0]), 4),
                            "y": round(float(p[1]), 4)} for u, p in zip(ids, xy, strict=True)],
                 "typical": [{"unit": int(u), "size": int(n)}
                             for u, n in zip(typical, sizes, strict=True)]}
    view = SimpleNamespace(map=layer_map, units=list(range(units)), layer=0,
                           thumbnail=lambda u: "visualization.png")
    atlas = SimpleNamespace(recipes=["default"], model="vit_large_patch16_224")
    blob = json.dumps(map_record(atlas, view), ensure_ascii=False,
                      separators=(",", ":")).encode()
    return {"units": units, "raw": len(blob), "gz": len(gzip.compress(blob, 6))}


def site_maps(site: Path, slug: str) -> dict | None:
    """Sizes of the built site's layer maps (None: the atlas has none)."""
    blobs = [p.read_bytes() for p in sorted((site / slug).glob("*/map.json"))]
    if not blobs:
        return None
    return {"maps": len(blobs), "units": len(json.loads(blobs[0])["units"]),
            "raw_max": max(map(len, blobs)), "gz_max": max(len(gzip.compress(b, 6))
                                                            for b in blobs)}


def layer_page_paint(site: Path, slug: str, runs: int = 3) -> dict | None:
    """Layer 0's page in headless Chromium over a local server: first contentful paint and
    the time until the map is drawn (map.json fetched and painted), median of ``runs`` cold
    loads; None without Chromium or Playwright."""
    chromium = "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not os.path.exists(chromium):
        return None
    import threading

    from pipeline.site import make_server

    server = make_server(site, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{slug}/0/"
    fcp, drawn = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            for _ in range(runs):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                page.goto(url)
                page.wait_for_selector(".atlas-map-canvas[data-drawn-ms]", timeout=60_000)
                drawn.append(float(page.get_attribute(".atlas-map-canvas", "data-drawn-ms"))
                             / 1e3)  # the page's own clock, from navigation start
                fcp.append(page.evaluate("""() => (performance.getEntriesByName(
                    'first-contentful-paint')[0] || {startTime: NaN}).startTime""") / 1e3)
                context.close()
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return {"fcp_s": float(np.median(fcp)), "map_drawn_s": float(np.median(drawn)),
            "html": (site / slug / "0" / "index.html").stat().st_size}


def png_overlay_cost(maps: np.ndarray, n: int = 300) -> float:
    """Seconds per feature to colour-map and encode each top example's heatmap as a PNG."""
    from PIL import Image

    lut = (np.stack([np.linspace(0, 1, 256) ** p for p in (0.5, 1.5, 3)], 1) * 255).astype(np.uint8)
    t = time.perf_counter()
    for unit in range(n):
        m = maps[unit % len(maps)]
        q = np.clip((m - m.min()) / (np.ptp(m) + 1e-9) * 255, 0, 255).astype(np.uint8)
        for k in range(m.shape[0]):
            buf = io.BytesIO()
            Image.fromarray(lut[q[k]]).save(buf, format="PNG")
    return (time.perf_counter() - t) / n


def disk_usage(path: Path) -> dict:
    """Files under ``path``: their count, their bytes and the disk they take (allocated
    blocks: small files round up to the file system's block)."""
    files = size = blocks = 0
    for d, _, names in os.walk(path):
        for name in names:
            st = os.lstat(os.path.join(d, name))
            files += 1
            size += st.st_size
            blocks += st.st_blocks * 512
    return {"files": files, "bytes": size, "disk": blocks}


def run_size(units: int, topk: int, examples: int, workers: int, keep: bool,
             browser: bool = True, model_kwargs: dict | None = None,
             image_size: int = 64) -> dict:
    """Every layer of ``tiny_spec(**model_kwargs)`` restricted to its first ``units``
    channels: write the fake atlas (``image_size``-pixel images), build its site in a fresh
    process, measure."""
    from pipeline.index.results import load_layer_index
    from pipeline.site.data import AtlasView
    from pipeline.store import AtlasStore
    from pipeline.testing.fake import make_fake_atlas, tiny_spec

    spec = tiny_spec(**(model_kwargs or {}))
    for layer in spec.layers:  # restrict every layer to its first `units` channels
        object.__setattr__(layer, "units", min(units, layer.units))
    root = Path(tempfile.mkdtemp(prefix=f"bench-site-{spec.total_units}-"))
    t = time.perf_counter()
    make_fake_atlas(root, spec, topk=topk, n_examples=examples, n_classes=1000,
                    vis_size=image_size, thumb_size=image_size, workers=workers)
    gen = time.perf_counter() - t
    proc = subprocess.run([sys.executable, __file__, "--child", str(root)], check=True,
                          capture_output=True, text=True)
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    child["phases"] = " ".join(line.split("; ", 1)[-1] for line in proc.stderr.splitlines()
                               if "feature pages;" in line)
    site = Path(child["site"])
    slug = AtlasView(AtlasStore(root)).slug
    n, mean_html, max_html, mean_json = page_sizes(site, slug)
    idx = load_layer_index(AtlasStore(root), 0)
    png = png_overlay_cost(idx.maps) if idx is not None else float("nan")
    words = site_word_index(site)
    maps = site_maps(site, slug)
    paint = layer_page_paint(site, slug) if browser else None
    result = {
        "features": n, "layers": len(spec.layers), "layer_units": spec.layers[0].units,
        "generate_s": gen, **child, "disk_site": disk_usage(site),
        "disk_atlas": disk_usage(root), "disk_model": disk_usage(site / slug),
        "pages_per_s": n / child["wall_s"],
        "cpu_pages_per_s": n / (child["cpu_main_s"] + child["cpu_workers_s"]),
        "html_mean_b": mean_html, "html_max_b": max_html, "json_mean_b": mean_json,
        "png_overlays_s_per_feature": png, "words": words, "maps": maps, "paint": paint,
    }
    if keep:
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return result


def report(r: dict) -> None:
    mb = 1 / 1024
    print(f"  {r['layers']} layers x {r['layer_units']:,} units:")
    print(f"  {r['features']:>6} feature pages in {r['wall_s']:.1f} s wall "
          f"= {r['pages_per_s']:.0f} feature pages/s "
          f"(CPU: main {r['cpu_main_s']:.1f} s + workers {r['cpu_workers_s']:.1f} s; "
          f"{r['cpu_pages_per_s']:.0f} pages per CPU-second)")
    print(f"         phases (wall): {r['phases']}")
    print(f"         peak RSS main {r['maxrss_main_kb'] * mb:.0f} MiB "
          f"(+{(r['maxrss_main_kb'] - r['maxrss_main_before_kb']) * mb:.0f} MiB over its "
          f"{r['maxrss_main_before_kb'] * mb:.0f} MiB after imports), "
          f"largest worker {r['maxrss_workers_kb'] * mb:.0f} MiB (ru_maxrss, incl. shared)")
    print(f"         sampled peaks: {_resident(r)}")
    print(f"         feature page HTML {r['html_mean_b'] / 1024:.1f} KiB mean, "
          f"{r['html_max_b'] / 1024:.1f} KiB max; feature.json {r['json_mean_b'] / 1024:.1f} KiB"
          f" mean; fake atlas written in {r['generate_s']:.1f} s")
    print(f"         PNG overlays instead of canvas would add "
          f"{r['png_overlays_s_per_feature'] * 1e3:.2f} ms of encoding per feature "
          f"(~{r['png_overlays_s_per_feature'] * r['features']:.1f} CPU-s here)")
    for name, key in (("site", "disk_site"), ("its model's folder", "disk_model"),
                      ("atlas (sources, site included)", "disk_atlas")):
        d = r[key]
        print(f"         {name}: {d['files']:,} files, {d['bytes'] / 2**20:,.0f} MiB "
              f"({d['disk'] / 2**20:,.0f} MiB on disk), "
              f"{d['bytes'] / r['features'] / 1024:.1f} KiB per feature")
    report_words("word index", r["words"])
    m = r["maps"]
    if m:
        print(f"         layer maps: {m['maps']} map.json of {m['units']} units, at most "
              f"{_kib(m['raw_max'])} ({_kib(m['gz_max'])} gzip)")
    if r["paint"]:
        pt = r["paint"]
        print(f"         layer page ({_kib(pt['html'])} HTML) in Chromium: first contentful "
              f"paint {pt['fcp_s'] * 1e3:.0f} ms, map drawn {pt['map_drawn_s'] * 1e3:.0f} ms "
              "after navigation start (median of 3 cold loads, local server; a "
              f"{r['layer_units']:,}-unit layer)")


def memory_bench(sizes: list[tuple[int, int]], topk: int, examples: int, workers: int,
                 keep: bool) -> None:
    """The site stage's peak memory at several page counts (``sizes``: fakes of ``(depth,
    width)``, layers of ``width`` units, ViT-B/16's 3,072 by default): the main process's
    peak above its imports, the largest worker's, and what each further feature page adds to
    the main process's, from the smallest size (the baseline) to each larger one. A deeper
    fake also has more similar units a feature (some in every layer); a wider one the same."""
    print(f"site memory: ViT-B/16-shaped fakes (top-{topk}, 2 recipes, 16-px images), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    results = []
    for depth, width in sorted(sizes, key=lambda s: (s[0] * s[1], s)):
        r = run_size(width, topk, examples, workers, keep, False,
                     {"embed_dim": max(768, width // 4), "num_heads": 12, "depth": depth},
                     image_size=16)
        results.append(r)
        own = (r["maxrss_main_kb"] - r["maxrss_main_before_kb"]) / 1024
        print(f"  {depth} x {width:,} units, {r['features']:>7,} features: {r['wall_s']:.1f} s, "
              f"{r['pages_per_s']:.0f} pages/s; peak main {r['maxrss_main_kb'] / 1024:.0f} MiB "
              f"({own:.0f} MiB above its imports), largest worker "
              f"{r['maxrss_workers_kb'] / 1024:.0f} MiB; {_resident(r)}")
    base = results[0]
    for r in results[1:]:
        pages = r["features"] / base["features"]
        grown = (r["maxrss_main_kb"] - r["maxrss_main_before_kb"]) - (
            base["maxrss_main_kb"] - base["maxrss_main_before_kb"])
        per = grown * 1024 / (r["features"] - base["features"])
        left = (2**30 - r["maxrss_main_kb"] * 1024) / max(per, 1.0)
        reach = (f"at that rate it reaches 1 GiB near {r['features'] + left:,.0f} features"
                 if per > 0 else "it does not grow with the pages")
        print(f"  {pages:.1f}x the pages of {base['features']:,}: the main process's peak "
              f"grows {grown / 1024:.0f} MiB, {per / 1024:.2f} KiB per feature page; {reach}; "
              f"largest worker "
              f"{r['maxrss_workers_kb'] / max(1, base['maxrss_workers_kb']):.2f}x")


def _resident(r: dict) -> str:
    """The sampled peaks (``MemorySampler``) of a build: anonymous memory (what a process
    holds) and resident file pages (page cache: mapped index files, libraries)."""
    s = r.get("sampled_kb") or {}
    return ", ".join(f"{role} anonymous {s.get(f'{role} RssAnon', 0) / 1024:.0f} MiB + file "
                     f"{s.get(f'{role} RssFile', 0) / 1024:.0f} MiB" for role in ("main", "worker"))


PARTS = ("page HTML", "feature.json", "visualization images", "thumbnails", "layer data",
         "search index", "shared assets")


def _part(rel: Path, slug: str) -> str:
    """Which part of the site a file (path relative to the site) is."""
    parts = rel.parts
    if parts[0] != slug:
        return "search index" if parts[0] == "search" else "shared assets"
    if parts[1] == "examples":
        return "thumbnails"
    if parts[1] in ("words", "classes") or rel.name == "classes.json":
        return "search index"
    if rel.name == "feature.json":
        return "feature.json"
    if rel.suffix in (".avif", ".webp", ".png") and len(parts) >= 4:
        return "visualization images"
    if rel.name == "index.html" and len(parts) >= 4 and parts[-2].isdigit() and (
            parts[-3].isdigit() or len(parts) >= 5):
        return "page HTML"
    return "layer data" if len(parts) >= 3 else "shared assets"


def _legacy_json(record: dict) -> int:
    """Bytes of ``record`` in format 9's layout (rows of objects, maps as decimal lists to 4
    significant digits of the largest value): the baseline of feature.json."""
    import math

    from pipeline.site.assets import decode_maps, expand_record

    def rows(cols: dict) -> list[dict]:
        keys = [k for k in cols if k not in ("maps", "thumb", "thumbs")]  # format 15's thumbs
        out = [dict(zip(keys, r, strict=True)) for r in zip(*(cols[k] for k in keys), strict=True)]
        if "maps" in cols:
            maps = decode_maps(cols["maps"])
            top = float(np.abs(maps).max()) if maps.size else 0.0
            dec = 4 - 1 - math.floor(math.log10(top)) if top > 0 else 4
            for r, m in zip(out, maps, strict=True):
                r["heatmap"] = np.round(m.astype(np.float64), max(0, dec)).tolist()
        return out

    record = expand_record(record)  # format 11's inferred fields, written out
    old = {k: v for k, v in record.items() if k != "class_names"}  # format 15's, written out
    old["histogram"] = {k: v for k, v in (record["histogram"] or {}).items() if k != "range"} \
        if record["histogram"] else None
    for key in ("top", "labels", "similar", "top_classes"):
        old[key] = rows(record[key])
    ex = rows(record["quantiles"]["examples"])
    old["quantiles"] = [{"interval": iv, "examples": [e for e in ex if e["interval"] == j]}
                        for j, iv in enumerate(record["quantiles"]["intervals"])]
    return len(json.dumps(old, ensure_ascii=False, separators=(",", ":")).encode())


def site_parts(site: Path, slug: str, root: Path) -> dict:
    """Bytes of each part of a built site (``PARTS``), and the baseline of the parts whose
    former form can be measured here: feature.json in format 9's layout (``_legacy_json``),
    the images as the atlas's PNGs (what the site linked before)."""
    from pipeline.site.urls import IMAGE_SUFFIX
    from pipeline.store import AtlasStore

    after = dict.fromkeys(PARTS, 0)
    for path in site.rglob("*"):
        if path.is_file():
            after[_part(path.relative_to(site), slug)] += path.stat().st_size
    before = {"feature.json": sum(_legacy_json(json.loads(p.read_bytes()))
                                  for p in site.glob(f"{slug}/**/feature.json")),
              "visualization images": sum(p.stat().st_size for p in
                                          (Path(root) / "visualize").rglob("*.png")),
              "thumbnails": sum(AtlasStore(root).index_dir.joinpath("thumbs").joinpath(
                  f"{int(p.stem[1:]):05d}.png").stat().st_size
                  for p in (site / slug / "examples").glob(f"e*{IMAGE_SUFFIX}"))}
    return {"after": after, "before": before}


def report_parts(name: str, r: dict, features: int, scale: float = 1.0,
                 shared_scale: dict | None = None) -> dict:
    """Print the table of what each part costs, per feature and in total (× ``scale``: the
    whole model from a sample of it; ``shared_scale``: other factors for parts that do not
    grow with the features)."""
    shared_scale = shared_scale or {}
    sampled = f" sampled, x{scale:,.1f} to the whole model" if scale != 1 else ""
    print(f"  {name}: {features:,} features{sampled}")
    print(f"    {'part':22s} {'per feature':>12s} {'before':>10s} {'total':>12s} {'before':>12s}")
    tot_a = tot_b = 0.0
    for part in PARTS:
        k = shared_scale.get(part, scale)
        a = r["after"][part] * k
        b = r["before"].get(part, r["after"][part]) * k
        tot_a, tot_b = tot_a + a, tot_b + b
        mark = "" if part in r["before"] else " (same)"
        n = features * scale
        print(f"    {part:22s} {a / n / 1024:9.2f} KiB {b / n / 1024:7.2f} KiB "
              f"{a / 2**20:9.1f} MiB {b / 2**20:9.1f} MiB{mark}")
    n = features * scale
    print(f"    {'all files':22s} {tot_a / n / 1024:9.2f} KiB {tot_b / n / 1024:7.2f} KiB "
          f"{tot_a / 2**20:9.1f} MiB {tot_b / 2**20:9.1f} MiB")
    return {"per_feature": tot_a / n, "total": tot_a}


def bytes_bench(units: int, vitb_units: int, examples: int, vitb_examples: int) -> None:
    """The size targets: a demo-shaped fake (64 px, 8 x 8 patches, top-12, all files counted
    per feature) and a sample of a ViT-B/16-shaped fake (12 x 3,072 units, 224 px, 14 x 14,
    top-16, quantiles, two recipes) extrapolated linearly in features."""
    from pipeline.site.build import build_site
    from pipeline.site.data import AtlasView
    from pipeline.store import AtlasStore
    from pipeline.testing.fake import make_fake_atlas, tiny_spec

    print("page HTML before: 34.0 KiB per feature at the demo's shape (this bench at 9612b8c, "
          "before the lean feature page; 32.5 KiB quoted in format 9); the other baselines "
          "are measured here")
    for name, kwargs, n_units, size, topk, n_examples in (
            ("demo shape (64 px)", {"img_size": 64, "patch_size": 8, "embed_dim": 96,
                                    "depth": 4, "num_heads": 3}, units, 64, 12, examples),
            ("ViT-B/16 shape (224 px)", {"embed_dim": 768, "num_heads": 12}, vitb_units,
             224, 16, vitb_examples)):
        if n_units <= 0:  # --vitb-units 0: the demo's shape alone
            continue
        spec = tiny_spec(**kwargs)
        full = sum(layer.units for layer in spec.layers)
        for layer in spec.layers:
            object.__setattr__(layer, "units", min(n_units, layer.units))
        root = Path(tempfile.mkdtemp(prefix="bench-bytes-"))
        store = make_fake_atlas(root, spec, topk=topk, n_examples=n_examples, n_classes=1000,
                                vis_size=size, thumb_size=size, workers=2)
        t = time.perf_counter()
        site = build_site(store, workers=2)
        took = time.perf_counter() - t
        slug = AtlasView(AtlasStore(root)).slug
        r = site_parts(site, slug, root)
        features = spec.total_units
        scale = full / features
        thumbs = len(list((site / slug / "examples").glob("*")))
        # shared parts do not grow with the features; thumbnails grow to the dataset's size
        shared = {"shared assets": 1.0, "thumbnails": max(1.0, n_examples / max(thumbs, 1))
                  if scale > 1 else 1.0}
        print(f"  (site built in {took:.0f} s; {thumbs:,} thumbnails of {n_examples:,} "
              f"examples)")
        out = report_parts(name, r, features, scale, shared)
        limit = 30 * 1024 if scale == 1 else None
        if limit:
            met = "met" if out["per_feature"] <= limit else "NOT met"
            print(f"    target <= 30 KiB per feature: {met}")
        else:
            print(f"    target: whole site <= 1 GiB: {out['total'] / 2**30:.2f} GiB, "
                  f"{'met' if out['total'] <= 2**30 else 'NOT met'}")
        shutil.rmtree(root, ignore_errors=True)


def atlas_bytes(root: Path) -> dict:
    """What each part of a real atlas's site costs per feature (``--bytes-atlas``, e.g. the
    demo atlas of ``vit-atlas build``): its site is built afresh (``vit-atlas site``), so the
    figures are this code's."""
    from pipeline.site.build import build_site
    from pipeline.site.data import AtlasView
    from pipeline.store import AtlasStore

    store = AtlasStore(root)
    site = build_site(store, workers=2)
    slug = AtlasView(store).slug
    features = sum(1 for _ in (site / slug).glob("*/*/feature.json")) + sum(
        1 for _ in (site / slug).glob("*/*/*/feature.json"))
    after = dict.fromkeys(PARTS, 0)
    for path in site.rglob("*"):
        if path.is_file():
            after[_part(path.relative_to(site), slug)] += path.stat().st_size
    print(f"  real atlas {root} (its site rebuilt with this code):")
    out = report_parts(slug, {"after": after, "before": {}}, features)
    met = "met" if out["per_feature"] <= 30 * 1024 else "NOT met"
    print(f"    target <= 30 KiB per feature: {met}")
    return out


def _webp_as_format_13(image) -> bytes:
    """The baseline: the site's WebP before format 14 (lossy at quality 90 where that kept
    38 dB, else lossless)."""
    from PIL import Image

    from pipeline.store import DISPLAY_MIN_PSNR, psnr

    lossy = io.BytesIO()
    image.save(lossy, format="WEBP", quality=90, method=4)
    with Image.open(io.BytesIO(lossy.getvalue())) as back:
        if psnr(np.asarray(back.convert("RGB")), np.asarray(image)) >= DISPLAY_MIN_PSNR:
            return lossy.getvalue()
    lossless = io.BytesIO()
    image.save(lossless, format="WEBP", lossless=True, method=2)
    return lossless.getvalue()


def codecs_bench(root: Path, sample: int) -> None:
    """The site's image encoding against the alternatives, on an atlas's own images (a
    random sample per kind): PNG (the atlas's record), the WebP of format 13, and AVIF as
    the site writes it now (``store.display_bytes``): mean bytes, PSNR, encode time."""
    import random

    from PIL import Image

    from pipeline.store import DISPLAY_MIN_PSNR, display_bytes

    kinds = {"visualizations": [p for p in (root / "visualize").rglob("u*.png")
                                if p.name.count(".") == 1],
             "attribution maps": list((root / "visualize").rglob("u*.attr.png")),
             "thumbnails": list((root / "index" / "thumbs").glob("*.png"))}
    print(f"{'images':<18} {'n':>5} {'PNG':>9} {'WebP (fmt 13)':>14} {'AVIF (now)':>11} "
          f"{'AVIF/WebP':>10} {'min PSNR':>9} {'WebP ms':>8} {'AVIF ms':>8}")
    for kind, paths in kinds.items():
        paths = sorted(paths)
        random.Random(0).shuffle(paths)
        paths = paths[:sample]
        if not paths:
            continue
        png = webp = avif = 0
        t_webp = t_avif = 0.0
        worst = float("inf")
        for path in paths:
            png += path.stat().st_size
            with Image.open(path) as im:
                image = im.convert("RGB")
            t0 = time.perf_counter()
            webp += len(_webp_as_format_13(image))
            t1 = time.perf_counter()
            data, kept = display_bytes(image)
            t_avif += time.perf_counter() - t1
            t_webp += t1 - t0
            avif += len(data)
            worst = min(worst, kept)
        n = len(paths)
        print(f"{kind:<18} {n:>5} {_kib(png / n):>9} {_kib(webp / n):>14} {_kib(avif / n):>11} "
              f"{avif / webp:>9.2f}x {worst:>8.1f} {t_webp / n * 1e3:>8.1f} "
              f"{t_avif / n * 1e3:>8.1f}")
    print(f"(PSNR of the AVIF against the atlas's image; every one >= {DISPLAY_MIN_PSNR:.0f} dB "
          "by construction where the last quality keeps it)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--units", type=int, default=768, help="units per layer (12 layers)")
    p.add_argument("--small-units", type=int, default=192, help="units per layer, small run")
    p.add_argument("--topk", type=int, default=16)
    p.add_argument("--examples", type=int, default=2000, help="distinct dataset examples")
    p.add_argument("--workers", type=int, default=2, help="processes writing the fake atlas")
    p.add_argument("--keep", action="store_true", help="keep the fake atlases")
    p.add_argument("--word-units", type=int, default=100_000,
                   help="labelled units of the word index measured without pages (0: skip)")
    p.add_argument("--map-units", type=int, default=4096,
                   help="units of the layer whose map.json is measured without pages (0: skip)")
    p.add_argument("--no-browser", action="store_true",
                   help="skip the layer page's paint timing in Chromium")
    p.add_argument("--large", action="store_true",
                   help="instead: one model of 25 FFN layers of 4,096 units (102,400 features,"
                        " as ViT-L's 24 x 4,096 and one more layer)")
    p.add_argument("--bytes", action="store_true",
                   help="instead: the size targets (issue 23): what each part of the site "
                        "costs at the demo's shape and, extrapolated from a sample, at "
                        "ViT-B/16's")
    p.add_argument("--bytes-units", type=int, default=384,
                   help="units per layer of the demo-shaped fake (--bytes)")
    p.add_argument("--bytes-atlas", metavar="DIR",
                   help="with --bytes: also a real atlas's site, rebuilt (e.g. the demo atlas "
                        "of `vit-atlas build`)")
    p.add_argument("--vitb-units", type=int, default=8,
                   help="units per layer of the ViT-B/16-shaped sample (--bytes; 0: skip it)")
    p.add_argument("--memory", metavar="SIZES", nargs="?", const="3,12",
                   help="instead: the site stage's memory against its page count, on fakes of "
                        "ViT-B/16's shape (layers of 3,072 units) at these depths (default "
                        "3,12: 9,216 and 36,864 features), 16-px images; DEPTHxWIDTH for "
                        "layers of WIDTH units (a multiple of 48), e.g. 3,3x12288: as many "
                        "pages as 12 layers of 3,072 in 3 layers")
    p.add_argument("--codecs", metavar="ATLAS",
                   help="instead: the site's image encoding against PNG and format 13's WebP, "
                        "on the images of the atlas directory ATLAS (e.g. atlas-demo)")
    p.add_argument("--codecs-sample", type=int, default=300, help="images per kind")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.codecs:
        codecs_bench(Path(args.codecs), args.codecs_sample)
        return
    if args.child:
        build_child(args.child)
        return
    if args.bytes:
        print(f"site bytes: {os.cpu_count()} CPUs")
        if args.bytes_atlas:
            atlas_bytes(Path(args.bytes_atlas))
        bytes_bench(args.bytes_units, args.vitb_units, 2000, 2000)
        return
    if args.memory:
        sizes = [(int(d), int(w or 3072)) for d, _, w in
                 (item.partition("x") for item in args.memory.split(","))]
        memory_bench(sizes, args.topk, args.examples, args.workers, args.keep)
        return
    if args.large:
        kwargs = {"embed_dim": 256, "num_heads": 4, "mlp_ratio": 16, "depth": 25}
        print(f"site benchmark, large: vit_tiny_patch16_224 with {kwargs}, top-{args.topk}, "
              f"2 recipes, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        report(run_size(4096, args.topk, args.examples, args.workers, args.keep,
                        not args.no_browser, kwargs))
        return
    print(f"site benchmark: vit_tiny_patch16_224, 12 layers, top-{args.topk}, 2 recipes, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    results = []
    for units in (args.units, args.small_units):
        results.append(run_size(units, args.topk, args.examples, args.workers, args.keep,
                                not args.no_browser))
        report(results[-1])
    big, small = results
    pages = big["features"] / small["features"]
    mem = (big["maxrss_main_kb"] - big["maxrss_main_before_kb"]) / max(
        1, small["maxrss_main_kb"] - small["maxrss_main_before_kb"])
    print(f"scaling: {pages:.1f}x the pages -> {mem:.1f}x the build's own peak memory "
          f"(main process, above its imports), "
          f"{big['maxrss_main_kb'] / small['maxrss_main_kb']:.2f}x its total peak RSS, "
          f"{big['maxrss_workers_kb'] / max(1, small['maxrss_workers_kb']):.2f}x the workers'")
    if args.map_units:
        m = map_json_at_scale(args.map_units)
        print(f"map.json of a {m['units']:,}-unit layer: {_kib(m['raw'])} "
              f"({_kib(m['gz'])} gzip)")
    if args.word_units:
        print(f"word index of {args.word_units:,} units, 5 concepts each (no pages built):")
        report_words("fake concepts (46)", word_index_at_scale(args.word_units, None))
        report_words("20,000 Zipf concepts", word_index_at_scale(args.word_units, 20_000))


if __name__ == "__main__":
    main()
