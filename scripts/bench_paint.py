"""How fast a built site's pages paint in headless Chromium (Debian's ``/usr/bin/chromium``,
through Playwright; no browser is downloaded): first contentful paint (FCP), largest
contentful paint (LCP, and what it was) and the bytes the page loaded, median of ``--runs``
cold loads over a local server, unthrottled and with Lighthouse's desktop network (40 ms round
trip, 10 Mbit/s: ``--no-throttle`` to skip).

The Method page is the default: issue 24 asks it to paint in under 1 s (its contact sheets once
weighed 870 KB each). The handbook pages are the same in every site, so without ``--site`` the
script builds a small fake atlas's site (``pipeline.testing.fake``, a few seconds); give
``--site DIR`` to measure a built atlas (``vit-atlas demo``'s ``DIR/site``) instead.

    .venv/bin/python scripts/bench_paint.py                        # method/
    .venv/bin/python scripts/bench_paint.py --site atlas/site --path method/ --path ''

``--grid N`` measures the layer page instead (issue 23: first paint <= 0.5 s at 16,384 units):
it builds two fake atlases of one layer each, of N units and of ``--grid-baseline`` units (256),
every unit with a page, and prints for both layer pages the first contentful paint and the time
until the grid has drawn its tiles (atlas.js fetches units.json and draws the rows in view), in
one browser, and their ratio. Building the 16,384-unit site takes a few minutes.

    .venv/bin/python scripts/bench_paint.py --grid 16384
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
from pathlib import Path

import benchlib  # noqa: F401  (this checkout's pipeline first: benchlib's docstring)

CHROMIUM = "/usr/bin/chromium"
GRID_TARGET_MS = 500  # issue 23: first paint of a 16,384-unit layer page
# Lighthouse's desktop preset (its "throttling" settings): 40 ms RTT, 10,240 kbit/s
DESKTOP_NETWORK = {"offline": False, "latency": 40, "downloadThroughput": 10240 * 1024 / 8,
                   "uploadThroughput": 10240 * 1024 / 8}

# LCP and FCP from the page's own performance timeline, from navigation start; LCP stops at
# the first input, so none is made
PAINT_JS = """() => new Promise(resolve => {
  const lcp = [];
  new PerformanceObserver(list => lcp.push(...list.getEntries()))
    .observe({type: 'largest-contentful-paint', buffered: true});
  setTimeout(() => {
    const last = lcp[lcp.length - 1];
    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
    const bytes = performance.getEntriesByType('resource').concat(
        performance.getEntriesByType('navigation'))
      .reduce((n, e) => n + (e.encodedBodySize || 0), 0);
    const node = last && last.element;
    resolve({fcp: fcp ? fcp.startTime : null, lcp: last ? last.startTime : null,
             element: node ? node.tagName.toLowerCase() + (node.getAttribute('src')
               ? ' ' + node.getAttribute('src') : '') : null, bytes: bytes});
  }, 500);
})"""


def median_ms(values: list[float | None]) -> float | None:
    """The median of the measured values, None when none was measured.

    >>> median_ms([812.5, None, 640.0, 700.0]), median_ms([None])
    (700.0, None)
    """
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def _small_site(out: Path) -> Path:
    from pipeline.site import build
    from pipeline.testing.fake import make_fake_atlas, tiny_spec

    spec = tiny_spec(img_size=32, patch_size=8, depth=1, embed_dim=8, num_heads=1)
    store = make_fake_atlas(out / "atlas", spec, topk=3, n_examples=8, vis_units=3,
                            index_layers=[0])
    return build.build_site(store, workers=1)


def measure(site: Path, paths: list[str], runs: int, throttle: bool) -> list[dict]:
    """Per page and network: FCP and LCP (ms, median of ``runs`` cold loads), the LCP element
    and the bytes loaded."""
    from playwright.sync_api import sync_playwright

    from pipeline.site import make_server

    server = make_server(site, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    out = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-background-networking", "--disable-gpu",
                "--disable-component-update", "--no-first-run"])
            for path in paths:
                for network in (["none", "desktop"] if throttle else ["none"]):
                    got = []
                    for _ in range(runs):
                        context = browser.new_context(viewport={"width": 1350, "height": 940})
                        page = context.new_page()
                        if network == "desktop":
                            cdp = context.new_cdp_session(page)
                            cdp.send("Network.enable")
                            cdp.send("Network.emulateNetworkConditions", DESKTOP_NETWORK)
                        page.goto(base + path, wait_until="load")
                        got.append(page.evaluate(PAINT_JS))
                        context.close()
                    out.append({"path": path or "/", "network": network, "runs": runs,
                                "fcp_ms": median_ms([g["fcp"] for g in got]),
                                "lcp_ms": median_ms([g["lcp"] for g in got]),
                                "lcp_element": got[-1]["element"],
                                "kib": got[-1]["bytes"] / 1024})
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return out


def _grid_site(out: Path, units: int) -> tuple[Path, str]:
    """A fake atlas of one layer of ``units`` units, every one with a page (indexed, labelled,
    visualized, mapped; few examples), built into a site; returns the site and the layer
    page's path."""
    from pipeline.site import build
    from pipeline.site.data import AtlasView
    from pipeline.testing.fake import make_fake_atlas, tiny_spec

    # mlp_ratio makes the FFN as wide as asked on a narrow model (units = 64 x ratio)
    spec = tiny_spec(img_size=16, patch_size=8, depth=1, embed_dim=64, num_heads=1,
                     mlp_ratio=units / 64)
    store = make_fake_atlas(out / f"atlas-{units}", spec, topk=1, n_examples=16, thumb_size=8,
                            workers=2)
    site = build.build_site(store, out / f"site-{units}")
    return site, f"{AtlasView(store).slug}/0/"


# first contentful paint and the moment the grid drew its first tiles (atlas.js stamps it on the
# grid, from navigation start), and the tiles in the document then
GRID_JS = """() => ({
  fcp: (performance.getEntriesByName('first-contentful-paint')[0] || {startTime: null}).startTime,
  ready: +document.querySelector('.atlas-grid').getAttribute('data-ready-ms'),
  tiles: document.querySelectorAll('.atlas-grid a[data-u]').length,
  units: +document.querySelector('.atlas-grid').getAttribute('data-units')})"""


def measure_grid(pages: list[tuple[Path, str]], runs: int) -> list[dict]:
    """Per layer page: FCP, grid ready (ms, median of ``runs`` cold loads, unthrottled) and
    the tiles in the document at that moment, with the page's and units.json's sizes."""
    from playwright.sync_api import sync_playwright

    from pipeline.site import serving

    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-background-networking", "--disable-gpu",
            "--disable-component-update", "--no-first-run"])
        for site, path in pages:
            with serving(site) as base:
                got = []
                for _ in range(runs + 1):  # the first load warms the browser and the disk
                    context = browser.new_context(viewport={"width": 1350, "height": 940})
                    page = context.new_page()
                    page.goto(f"{base}/{path}")
                    page.wait_for_selector(".atlas-grid.atlas-grid-ready", state="attached",
                                           timeout=60_000)
                    got.append(page.evaluate(GRID_JS))
                    page.evaluate("window.stop()")  # the tiles' images: not measured here
                    context.close()
                got = got[1:]
            out.append({"path": path, "units": got[0]["units"], "runs": runs,
                        "fcp_ms": median_ms([g["fcp"] for g in got]),
                        "ready_ms": median_ms([g["ready"] for g in got]),
                        "tiles": got[-1]["tiles"],
                        "html_kib": (site / path / "index.html").stat().st_size / 1024,
                        "json_kib": (site / path / "units.json").stat().st_size / 1024})
        browser.close()
    return out


def grid_report(units: int, baseline: int, runs: int, out: Path) -> None:
    """Build both sites, measure both pages in one browser, print the figures and the ratio."""
    big, small = _grid_site(out, units), _grid_site(out, baseline)
    rows = measure_grid([big, small], runs)
    for r in rows:
        print(f"layer page of {r['units']:>6,} units: FCP {r['fcp_ms']:.0f} ms, grid drawn "
              f"{r['ready_ms']:.0f} ms, {r['tiles']} tiles in the document; page "
              f"{r['html_kib']:.0f} KiB + units.json {r['json_kib']:.0f} KiB "
              f"(median of {r['runs']} cold loads)")
    b, s = rows

    def verdict(ms: float) -> str:
        return "met" if ms <= GRID_TARGET_MS else "NOT met"

    print(f"{b['units']:,} vs {s['units']:,} units (same run): FCP "
          f"{b['fcp_ms'] / s['fcp_ms']:.2f}x, grid drawn {b['ready_ms'] / s['ready_ms']:.2f}x")
    print(f"target at {b['units']:,} units, first paint <= {GRID_TARGET_MS} ms: "
          f"{verdict(b['fcp_ms'])} (FCP); grid drawn <= {GRID_TARGET_MS} ms: "
          f"{verdict(b['ready_ms'])} (load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--site", type=Path, help="a built site (default: a small fake one)")
    p.add_argument("--path", action="append", help="page path from the site root "
                   "(repeatable; default method/)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--no-throttle", action="store_true")
    p.add_argument("--grid", type=int, metavar="N",
                   help="measure the layer page of a fake N-unit layer (e.g. 16384) instead")
    p.add_argument("--grid-baseline", type=int, default=256, metavar="N",
                   help="units of the baseline layer page measured in the same run")
    args = p.parse_args()
    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"{CHROMIUM} is missing: run `bash scripts/setup.sh --test`")
    if args.grid:
        with tempfile.TemporaryDirectory() as tmp:
            grid_report(args.grid, args.grid_baseline, args.runs, Path(tmp))
        return
    with tempfile.TemporaryDirectory() as tmp:
        site = args.site or _small_site(Path(tmp))
        for r in measure(site, args.path or ["method/"], args.runs, not args.no_throttle):
            fcp, lcp = r["fcp_ms"], r["lcp_ms"]
            print(f"{r['path']:<16} network {r['network']:<8} FCP "
                  f"{'–' if fcp is None else f'{fcp:.0f} ms'}, LCP "
                  f"{'–' if lcp is None else f'{lcp:.0f} ms'} ({r['lcp_element']}), "
                  f"{r['kib']:.0f} KiB loaded (median of {r['runs']} cold loads)")


if __name__ == "__main__":
    main()
