"""What an alias costs in each of mike's three forms (``vit-atlas publish --alias-type``).

Publishes the test site of ``tests/publish`` (two fake atlases: 32-px, depth 2 × 64 units
with 20 visualized, and depth 3 × 32 units, every unit visualized in the second) as 1.0 and
then 1.1 with ``--alias latest``, once per alias type, and reports, from the files on disk:

- the version folder: files and bytes (bytes: the files' sizes, what an object store and
  GitHub Pages' 1 GB count; allocated: what the local disk holds, 4 KiB blocks);
- the alias: files and bytes as written, and as a sync tool that follows symlinks uploads it
  (``aws s3 sync`` and GitHub's ``upload-pages-artifact`` follow them, so a symlinked alias
  arrives as a full copy; ``rclone`` skips them without ``-L``: no alias at all);
- the whole site: two versions, the alias and the root files;
- the time publish spent writing the alias, and a redirect page's size.

    .venv/bin/python scripts/bench_aliases.py
    .venv/bin/python scripts/bench_aliases.py --json sizes.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

KW_A = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 16, "num_heads": 1}
KW_B = {"img_size": 32, "patch_size": 8, "depth": 3, "embed_dim": 8, "num_heads": 1}
URL = "https://example.org/atlas/"


def tally(root: Path, follow: bool = False) -> dict[str, int]:
    """Files, their bytes and their allocated bytes under ``root``; ``follow``: through
    symlinked folders, as ``tar --dereference`` or ``aws s3 sync`` read them."""
    if root.is_symlink() and not follow:  # one link, its size the target's name
        return {"files": 1, "bytes": len(os.readlink(root)), "allocated": 0}
    files = size = blocks = 0
    for top, _, names in os.walk(root, followlinks=follow):
        for name in names:
            path = Path(top) / name
            if path.is_symlink() and not follow:
                files, size = files + 1, size + len(os.readlink(path))
                continue
            st = path.stat()
            files, size, blocks = files + 1, size + st.st_size, blocks + st.st_blocks * 512
    return {"files": files, "bytes": size, "allocated": blocks}


def measure(atlases: list[Path], base: Path, kind: str) -> dict:
    from pipeline.aliases import write_alias
    from pipeline.publish import publish

    site = base / kind / "site"
    for version in ("1.0", "1.1"):
        publish(atlases, site, version, aliases=["latest"], site_url=URL, alias_type=kind)
    t0 = time.perf_counter()  # writing the alias again, as the publish of 1.1 did
    write_alias(site, "latest", "1.1", kind, site_url=URL)
    seconds = time.perf_counter() - t0
    version = tally(site / "1.1")
    alias = tally(site / "latest")
    row = {"type": kind, "version": version, "alias": alias,
           "alias_uploaded": tally(site / "latest", follow=True),
           "site": tally(site), "site_uploaded": tally(site, follow=True),
           "write_s": round(seconds, 3),
           "html_pages": sum(1 for _ in (site / "1.1").rglob("*.html")),
           "feature_pages": sum(1 for _ in (site / "1.1").rglob("feature.json"))}
    if kind == "redirect":
        sizes = [p.stat().st_size for p in (site / "latest").rglob("*.html")]
        row["redirect_page_bytes"] = {"mean": round(sum(sizes) / len(sizes)), "max": max(sizes)}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    from pipeline.aliases import alias_types
    from pipeline.testing.fake import make_fake_atlas, tiny_spec

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        a = make_fake_atlas(base / "a", tiny_spec(**KW_A), model_kwargs=KW_A, vis_units=20)
        b = make_fake_atlas(base / "b", tiny_spec(**KW_B), model_kwargs=KW_B,
                            weights_id="random(seed=1)")
        rows = [measure([a.root, b.root], base, kind) for kind in alias_types()]
    kib = 1024
    first = rows[0]
    print(f"version folder 1.1: {first['version']['files']:,} files, "
          f"{first['version']['bytes'] / kib:,.0f} KiB "
          f"({first['version']['allocated'] / kib:,.0f} KiB allocated); "
          f"{first['html_pages']} HTML pages, {first['feature_pages']} feature pages")
    print(f"{'alias type':<10} {'alias files':>11} {'alias KiB':>10} {'alloc KiB':>10} "
          f"{'uploaded KiB':>13} {'site KiB':>9} {'site uploaded':>14} {'write s':>8}")
    for r in rows:
        print(f"{r['type']:<10} {r['alias']['files']:>11,} {r['alias']['bytes'] / kib:>10,.1f} "
              f"{r['alias']['allocated'] / kib:>10,.0f} "
              f"{r['alias_uploaded']['bytes'] / kib:>13,.0f} {r['site']['bytes'] / kib:>9,.0f} "
              f"{r['site_uploaded']['bytes'] / kib:>14,.0f} {r['write_s']:>8.3f}")
        if "redirect_page_bytes" in r:
            print(f"  redirect pages: mean {r['redirect_page_bytes']['mean']} bytes, "
                  f"max {r['redirect_page_bytes']['max']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
