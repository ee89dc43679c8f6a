"""Benchmark the site stage on a synthetic atlas of every unit of vit_tiny (12 x 768 = 9,216).

For each size it writes a fake atlas (procedural visualizations of two recipes, the second
for every other unit, with attribution maps and fidelity figures; random index data in the
exact store formats, see ``pipeline/pages/fake.py``), then builds the site in a fresh process
and reports feature pages/s over the whole stage (Markdown, mkdocs, feature.json, assets),
peak memory (ru_maxrss of the builder and of its worker processes) and bytes per feature page.
A second, smaller size shows how memory scales with the page count. It also times the
alternative of writing one PNG overlay per top example, which the site avoids.

    .venv/bin/python scripts/bench_site.py                 # 9,216 and 2,304 features
    .venv/bin/python scripts/bench_site.py --units 64 --small-units 16   # quick
"""

from __future__ import annotations

import argparse
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
from benchlib import proc_status_kb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def build_child(root: str) -> None:
    """Run in a fresh interpreter: build the site of ``root`` and print figures as JSON."""
    import logging

    import mkdocs.commands.build  # noqa: F401  (imports are not part of the stage's time)

    from pipeline.pages.build import build_site
    from pipeline.store import AtlasStore

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("pipeline.pages.build").setLevel(logging.INFO)
    rss_before = proc_status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    t0, c0 = time.perf_counter(), os.times()
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
    }))


def page_sizes(site: Path, slug: str) -> tuple[int, float, int, float]:
    pages = list((site / slug).glob("*/*/index.html"))
    sizes = np.array([p.stat().st_size for p in pages])
    js = np.array([p.with_name("feature.json").stat().st_size for p in pages])
    return len(pages), float(sizes.mean()), int(sizes.max()), float(js.mean())


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


def run_size(units: int, topk: int, examples: int, workers: int, keep: bool) -> dict:
    from pipeline.index.results import load_layer_index
    from pipeline.pages.fake import make_fake_atlas, tiny_spec
    from pipeline.pages.urls import model_slug
    from pipeline.store import AtlasStore

    spec = tiny_spec()
    for layer in spec.layers:  # restrict every layer to its first `units` channels
        object.__setattr__(layer, "units", min(units, layer.units))
    root = Path(tempfile.mkdtemp(prefix=f"bench-site-{units}-"))
    t = time.perf_counter()
    make_fake_atlas(root, spec, topk=topk, n_examples=examples, n_classes=1000, vis_size=64,
                    thumb_size=64, workers=workers)
    gen = time.perf_counter() - t
    proc = subprocess.run([sys.executable, __file__, "--child", str(root)], check=True,
                          capture_output=True, text=True)
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    child["phases"] = " ".join(line.split("; ", 1)[-1] for line in proc.stderr.splitlines()
                               if "feature pages;" in line)
    site = Path(child["site"])
    n, mean_html, max_html, mean_json = page_sizes(site, model_slug(spec.name))
    idx = load_layer_index(AtlasStore(root), 0)
    png = png_overlay_cost(idx.maps) if idx is not None else float("nan")
    result = {
        "features": n, "generate_s": gen, **child,
        "pages_per_s": n / child["wall_s"],
        "cpu_pages_per_s": n / (child["cpu_main_s"] + child["cpu_workers_s"]),
        "html_mean_b": mean_html, "html_max_b": max_html, "json_mean_b": mean_json,
        "png_overlays_s_per_feature": png,
    }
    if keep:
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return result


def report(r: dict) -> None:
    mb = 1 / 1024
    print(f"  {r['features']:>6} feature pages in {r['wall_s']:.1f} s wall "
          f"= {r['pages_per_s']:.0f} feature pages/s "
          f"(CPU: main {r['cpu_main_s']:.1f} s + workers {r['cpu_workers_s']:.1f} s; "
          f"{r['cpu_pages_per_s']:.0f} pages per CPU-second)")
    print(f"         phases (wall): {r['phases']}")
    print(f"         peak RSS main {r['maxrss_main_kb'] * mb:.0f} MiB "
          f"(+{(r['maxrss_main_kb'] - r['maxrss_main_before_kb']) * mb:.0f} MiB over its "
          f"{r['maxrss_main_before_kb'] * mb:.0f} MiB after imports), "
          f"largest worker {r['maxrss_workers_kb'] * mb:.0f} MiB (ru_maxrss, incl. shared)")
    print(f"         feature page HTML {r['html_mean_b'] / 1024:.1f} KiB mean, "
          f"{r['html_max_b'] / 1024:.1f} KiB max; feature.json {r['json_mean_b'] / 1024:.1f} KiB"
          f" mean; fake atlas written in {r['generate_s']:.1f} s")
    print(f"         PNG overlays instead of canvas would add "
          f"{r['png_overlays_s_per_feature'] * 1e3:.2f} ms of encoding per feature "
          f"(~{r['png_overlays_s_per_feature'] * r['features']:.1f} CPU-s here)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--units", type=int, default=768, help="units per layer (12 layers)")
    p.add_argument("--small-units", type=int, default=192, help="units per layer, small run")
    p.add_argument("--topk", type=int, default=16)
    p.add_argument("--examples", type=int, default=2000, help="distinct dataset examples")
    p.add_argument("--workers", type=int, default=2, help="processes writing the fake atlas")
    p.add_argument("--keep", action="store_true", help="keep the fake atlases")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        build_child(args.child)
        return
    print(f"site benchmark: vit_tiny_patch16_224, 12 layers, top-{args.topk}, 2 recipes, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    results = []
    for units in (args.units, args.small_units):
        results.append(run_size(units, args.topk, args.examples, args.workers, args.keep))
        report(results[-1])
    big, small = results
    pages = big["features"] / small["features"]
    mem = (big["maxrss_main_kb"] - big["maxrss_main_before_kb"]) / max(
        1, small["maxrss_main_kb"] - small["maxrss_main_before_kb"])
    print(f"scaling: {pages:.1f}x the pages -> {mem:.1f}x the build's own peak memory "
          f"(main process, above its imports), "
          f"{big['maxrss_main_kb'] / small['maxrss_main_kb']:.2f}x its total peak RSS, "
          f"{big['maxrss_workers_kb'] / max(1, small['maxrss_workers_kb']):.2f}x the workers'")


if __name__ == "__main__":
    main()
