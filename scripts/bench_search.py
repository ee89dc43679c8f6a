"""Measure the header search's static indexes at the scale the issue asks for: 100,000 units.

Builds, without pages, the word index (``pipeline.site.search.WordIndex``: every unit's top 5
concepts, from 20,000 Zipf-distributed words as CLIP-Dissect over a word list gives, and the
worst case of 46 words that each label thousands of units) and the class index
(``ClassIndex``: 1,000 classes, 5 top classes per unit: its head and shards, and the whole
``classes.json`` kept for scripts) of a 100,000-unit atlas, and reports what the browser
fetches: ``models.json``'s word part (once per site), the shards' sizes (raw and gzipped, as a
server sends JSON), and, for sample queries, which shards the search reads (the same
prefix-range rule as ``assets/atlas.js``: at most 3 shards).

    .venv/bin/python scripts/bench_search.py                # 100,000 units
    .venv/bin/python scripts/bench_search.py --units 20000  # quicker
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics

import benchlib  # noqa: F401  (this checkout's pipeline first: benchlib's docstring)
import numpy as np

from pipeline.site.search import ClassIndex, WordIndex, word_key

CONCEPTS_PER_UNIT = 5


def _json(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def word_index(units: int, vocabulary: int, layers: int, seed: int = 0) -> WordIndex:
    """A word index of ``units`` units over ``layers`` layers, each unit labelled with
    ``CONCEPTS_PER_UNIT`` distinct words drawn Zipf-like from ``vocabulary`` words."""
    rng = np.random.default_rng(seed)
    words = [f"w{i:05d}{chr(97 + i % 26)}" for i in range(vocabulary)]
    p = 1.0 / np.arange(1, vocabulary + 1)
    p /= p.sum()
    index = WordIndex(["visualization.png"])
    per_layer = -(-units // layers)
    entries = []
    for u in range(units):
        chosen = rng.choice(vocabulary, size=min(CONCEPTS_PER_UNIT, vocabulary), replace=False,
                            p=p)
        for rank, c in enumerate(chosen, 1):
            entries.append((words[c], u // per_layer, u % per_layer,
                            float(rng.normal(-100, 30)), rank, 0))
    index.extend(entries)
    return index


def shards_read(meta_shards: list[list], query: str, limit: int = 3) -> list[int]:
    """The shards a prefix search for ``query`` fetches (``Words.prototype.shardsFor``)."""
    key = word_key(query)
    hit = [i for i, s in enumerate(meta_shards) if s[1] <= key + "\uffff" and s[2] >= key]
    return hit[:limit]


def report_words(name: str, index: WordIndex) -> dict:
    shards = index.shards()
    blobs = [_json(s) for s in shards]
    gz = [len(gzip.compress(b, 6)) for b in blobs]
    meta = index.meta("m", [index.shard_row(s) for s in shards], "demo")
    meta_bytes = _json(meta)
    queries = ["w00000", "w0001", "w1", "w19999", "zzz"]
    reads = {q: shards_read(meta["shards"], q) for q in queries}
    fetched = {q: sum(gz[i] for i in r) for q, r in reads.items()}
    out = {
        "name": name, "units": index.units, "concepts": len(index.concepts),
        "entries": len(index), "shards": len(shards),
        "shard_kib_max": max(map(len, blobs)) / 1024,
        "shard_kib_median": statistics.median(map(len, blobs)) / 1024,
        "shard_gz_kib_max": max(gz) / 1024,
        "models_json_words_kib": len(meta_bytes) / 1024,
        "models_json_words_gz_kib": len(gzip.compress(meta_bytes, 6)) / 1024,
        "fetched_gz_kib": {q: round(v / 1024, 1) for q, v in fetched.items()},
    }
    print(f"{name}: {out['units']:,} units, {out['concepts']:,} concepts, "
          f"{out['entries']:,} entries in {out['shards']} shards; shard max "
          f"{out['shard_kib_max']:.0f} KiB ({out['shard_gz_kib_max']:.0f} KiB gzipped), median "
          f"{out['shard_kib_median']:.0f} KiB; models.json's word part "
          f"{out['models_json_words_kib']:.1f} KiB ({out['models_json_words_gz_kib']:.1f} "
          f"gzipped); one search fetches (gzipped KiB) {out['fetched_gz_kib']}")
    return out


def report_classes(units: int, classes: int = 1000, top: int = 5, seed: int = 0) -> dict:
    """The class index of ``units`` units, each ranking ``top`` of ``classes`` classes: the
    whole ``classes.json`` (for scripts), the header search's head (``classes/index.json``)
    and its shards, and what showing every unit of the largest class fetches."""
    rng = np.random.default_rng(seed)
    index = ClassIndex([f"class {c}" for c in range(classes)])
    index.extend([(int(c), float(rng.random()), u // 1000, u % 1000)
                  for u in range(units) for c in rng.choice(classes, top, replace=False)])
    blob = _json(index.to_json())
    shards = index.shards()
    blobs = [_json(s) for s in shards]
    gz = [len(gzip.compress(b, 6)) for b in blobs]
    head = _json(index.head("m", [index.shard_row(s) for s in shards]))
    counts = [index.class_counts()[c] for c in range(classes)]
    biggest = int(np.argmax(counts))
    holding = [i for i, s in enumerate(shards) if s["first"] <= biggest <= s["last"]]
    out = {"classes_json_kib": len(blob) / 1024,
           "classes_json_gz_kib": len(gzip.compress(blob, 6)) / 1024,
           "head_kib": len(head) / 1024, "head_gz_kib": len(gzip.compress(head, 6)) / 1024,
           "shards": len(shards), "shard_kib_max": max(map(len, blobs)) / 1024,
           "shard_gz_kib_max": max(gz) / 1024,
           "largest_class_units": counts[biggest],
           "largest_class_gz_kib": sum(gz[i] for i in holding) / 1024}
    print(f"classes of {units:,} units x {top} top classes over {classes:,} classes: "
          f"classes.json (scripts) {out['classes_json_kib']:.0f} KiB "
          f"({out['classes_json_gz_kib']:.0f} KiB gzipped); the header search's head "
          f"{out['head_kib']:.0f} KiB ({out['head_gz_kib']:.0f} KiB gzipped), fetched on the "
          f"first class search; {out['shards']} shards, the largest "
          f"{out['shard_kib_max']:.0f} KiB ({out['shard_gz_kib_max']:.0f} KiB gzipped); every "
          f"unit of the largest class ({out['largest_class_units']:,}) fetches "
          f"{len(holding)} shard{'' if len(holding) == 1 else 's'}, "
          f"{out['largest_class_gz_kib']:.0f} KiB gzipped")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--units", type=int, default=100_000)
    p.add_argument("--layers", type=int, default=24)
    args = p.parse_args()
    report_words("20,000 Zipf words", word_index(args.units, 20_000, args.layers))
    report_words("46 words (worst case)", word_index(args.units, 46, args.layers))
    report_classes(args.units)


if __name__ == "__main__":
    main()
