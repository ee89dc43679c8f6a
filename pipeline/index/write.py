"""Writing a finished index: per-layer arrays, image statistics, the probe set, then
``examples.json`` (last: it marks the index complete), and the run report.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.data.sources import Source, readable_class_names
from pipeline.index.image_stats import ImageStats
from pipeline.index.job import IndexJob, say
from pipeline.index.maps import thumb_name
from pipeline.index.merge import ExampleList
from pipeline.index.probe import ProbeRows
from pipeline.index.quantiles import Quantiles
from pipeline.index.results import (
    INDEX_FORMAT,
    LayerIndex,
    write_examples,
    write_image_stats,
    write_layer_index,
    write_probe,
    write_probe_embeddings,
)
from pipeline.index.stats import LayerStats


def _class_names(source: Source, names: dict[int, str], labels: list) -> list[str] | None:
    top = max((label for label in labels if label is not None), default=-1)
    known = list(source.class_names or [])
    if not known and not names and top < 0:
        return None
    found = readable_class_names([names.get(i, str(i)) for i in range(len(known), top + 1)])
    return known + found


def write_index(job: IndexJob, source: Source, stats: dict[int, LayerStats],
                quantiles: dict[int, Quantiles | None], images: ImageStats,
                maps: dict[int, np.ndarray], examples: ExampleList,
                failed: list[list], figures: dict[int, np.ndarray] | None = None) -> None:
    failed_numbers = {int(f[0]) for f in failed}
    shown: set[int] = set()
    for index, s in stats.items():
        ids, scores = s.topk.result()
        bottom_ids, bottom_scores = s.bottomk_result()
        classes, class_means = s.top_classes()
        k, q = ids.shape[1], quantiles[index]
        extra = {}
        if q is not None:
            extra = {"quantile_edges": q.edges, "quantile_ids": q.ids,
                     "quantile_scores": q.scores,
                     "quantile_maps": maps[index][:, 2 * k:].reshape(*q.ids.shape,
                                                                     *maps[index].shape[2:])}
            shown.update(int(n) for n in np.unique(q.ids[q.ids >= 0]))
        hist = s.selected_hist()
        mean, std, top = s.mean(), s.std(), s.max()
        write_layer_index(job.run.store, index, LayerIndex(
            top_ids=ids, top_scores=scores, maps=maps[index][:, :k], **extra,
            bottom_ids=bottom_ids, bottom_scores=bottom_scores,
            bottom_maps=maps[index][:, k:2 * k],
            hist_counts=hist.counts, hist_edges=hist.edges(),
            mean=s.pick(mean), std=s.pick(std), max=s.pick(top), top_classes=classes,
            top_class_means=np.nan_to_num(class_means, nan=0.0),
            units=np.asarray(job.units[index], dtype=np.int64),
            layer_mean=mean, layer_std=std, layer_max=top,
            layer_hist_counts=s.hist.counts, layer_hist_edges=s.hist.edges(),
            top_foreground=None if figures is None else figures[index],
        ))
        shown.update(int(n) for n in np.unique(ids[ids >= 0]))
        shown.update(int(n) for n in np.unique(bottom_ids[bottom_ids >= 0]))
    shown -= failed_numbers
    skipped_numbers = {int(s[0]) for s in examples.skipped}
    entries = []
    for number, ident, label in examples.records:
        entry: dict[str, Any] = {"id": ident, "label": label,
                                 "thumb": thumb_name(number) if number in shown else None}
        if number in skipped_numbers:
            entry["skipped"] = True
        entries.append(entry)
    write_image_stats(job.run.store, images.result())
    first = next(iter(stats.values()))
    cfg = job.run.config.index
    skipped = [{"id": s[1], "reason": s[2], "number": s[0]} for s in examples.skipped]
    write_examples(job.run.store, {
        "format_version": INDEX_FORMAT,
        "fingerprint": job.fingerprint,
        "dataset": cfg.dataset,
        "split": cfg.split,
        "topk": cfg.topk,
        "quantiles": cfg.quantiles,
        "quantile_k": cfg.kept_per_quantile,
        "layers": [layer.index for layer in job.layers],
        "classes": _class_names(source, examples.names, [r[2] for r in examples.records]),
        "images_seen": int(first.count),
        "skipped": skipped,
        "examples": entries,
    })
    say(f"index: {first.count} images indexed, {len(skipped)} skipped, "
        f"{len(shown)} thumbnails -> {job.root}")
    for s in skipped[:10]:
        say(f"  skipped #{s['number']} {s['id']}: {s['reason']}")
    if len(skipped) > 10:
        say(f"  ... {len(skipped) - 10} more in {job.run.store.examples_path}")
    for f in failed[:10]:
        say(f"  warning: #{f[0]} {f[1]} decoded in the scan but not for its maps: {f[2]}")


def write_probe_set(job: IndexJob, rows: ProbeRows, encoder_id: str | None) -> None:
    """The probe profiles (before examples.json: see ``complete``) and embeddings."""
    store = job.run.store
    for layer in job.layers:
        write_probe(store, layer.index, rows.numbers, rows.scores[layer.index],
                    np.asarray(job.units[layer.index], dtype=np.int64))
    encoder = encoder_id is not None and rows.embeddings is not None
    if encoder:
        write_probe_embeddings(store, encoder_id, rows.numbers, rows.embeddings)
    say(f"index: probe set of {len(rows.numbers)} images"
        + (" (with the labeler's embeddings)" if encoder else ""))

