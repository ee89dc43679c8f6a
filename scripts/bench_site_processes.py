"""Benchmark the site stage's processes: one process against every core, same atlas.

A fake atlas of a whole small model (the demo's shape: 4 layers x 384 units, top-16 examples,
two recipes, labels and relations; ``pipeline/testing/fake.py``) is built into a site once
with ``workers=1`` and once with ``--workers`` (default: every CPU), each in a fresh
interpreter and from scratch (the atlas's ``build/`` folder removed first). It prints feature
pages/s over the whole stage, the ratio against one process, the CPU time of the builder and
its workers, the peak memory of each, and whether the two sites are byte for byte the same.
On a machine busy with other work, wall time says little: the load average is printed, and
the CPU time gives what the build needs, feature pages per CPU-second.

    .venv/bin/python scripts/bench_site_processes.py                     # demo shape, 1,536
    .venv/bin/python scripts/bench_site_processes.py --depth 2 --width 32  # quick
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import proc_status_kb

REPO = Path(__file__).resolve().parent.parent


def build_child(root: str, site: str, workers: int) -> None:
    """In a fresh interpreter: build the site and print wall time and memory as JSON."""
    import logging

    import mkdocs.commands.build  # noqa: F401  (imports are not part of the stage's time:
    import pyarrow as pa  # mkdocs', nor pyarrow's and the pandas it imports on first use)

    from pipeline.site.build import build_site
    from pipeline.store import AtlasStore

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    pa.array([0])
    me = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = me.ru_utime + me.ru_stime
    t0 = time.perf_counter()
    build_site(AtlasStore(root), Path(site), workers=workers)
    me, kids = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                     resource.RUSAGE_CHILDREN))
    print(json.dumps({"wall_s": time.perf_counter() - t0,
                      "cpu_s": me.ru_utime + me.ru_stime - cpu0 + kids.ru_utime + kids.ru_stime,
                      "maxrss_main_kb": proc_status_kb("VmHWM"),
                      "maxrss_workers_kb": kids.ru_maxrss}))


def digest(site: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(site.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(site)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def build(root: Path, site: Path, workers: int) -> dict:
    shutil.rmtree(root / "build", ignore_errors=True)  # no Markdown kept from the other build
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, __file__, "--child", str(root), str(site),
                           str(workers)], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--depth", type=int, default=4, help="layers")
    p.add_argument("--width", type=int, default=96, help="embedding width (FFN: 4x units)")
    p.add_argument("--topk", type=int, default=16)
    p.add_argument("--examples", type=int, default=2000,
                   help="dataset examples of the fake (each a thumbnail written first)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        build_child(args.child[0], args.child[1], int(args.child[2]))
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench-site-processes-"))
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path) -> None:
    """Write the fake atlas under ``tmp``, build it twice, report."""
    from pipeline.testing.fake import make_fake_atlas, tiny_spec

    spec = tiny_spec(img_size=64, patch_size=8, depth=args.depth, embed_dim=args.width,
                     num_heads=max(1, args.width // 32))
    store = make_fake_atlas(tmp / "atlas", spec, topk=args.topk, n_examples=args.examples,
                            vis_size=64, thumb_size=64, workers=2)
    pages = sum(layer.units for layer in spec.layers)
    print(f"fake atlas: {len(spec.layers)} layers x {spec.layers[0].units} units = {pages} "
          f"feature pages, top-{args.topk}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    one = build(store.root, tmp / "one", 1)
    many = build(store.root, tmp / "many", args.workers)
    same = digest(tmp / "one") == digest(tmp / "many")
    print(f"\n{'processes':<10} {'wall s':>8} {'feature pages/s':>16} {'vs 1':>6} "
          f"{'CPU s':>6} {'pages/CPU-s':>12} {'peak RSS main':>14} {'peak RSS worker':>16}")
    for n, r in ((1, one), (args.workers, many)):
        print(f"{n:<10} {r['wall_s']:>8.1f} {pages / r['wall_s']:>16.0f} "
              f"{one['wall_s'] / r['wall_s']:>5.2f}x {r['cpu_s']:>6.1f} "
              f"{pages / r['cpu_s']:>12.0f} {r['maxrss_main_kb'] / 1024:>11.0f} MiB "
              f"{r['maxrss_workers_kb'] / 1024:>13.0f} MiB")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"\nsites byte for byte the same: {'yes' if same else 'NO'}")
    print(f"target >= 1,000 feature pages/s on {args.workers} processes: "
          f"[{'x' if pages / many['wall_s'] >= 1000 else ' '}] "
          f"({pages / many['wall_s']:.0f})")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
