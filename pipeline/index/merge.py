"""Results of every rank, merged exactly on rank 0: layer statistics, image statistics,
the example list and the probe set (``gather_object``; identity in one process).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline import distributed
from pipeline.index import checkpoint as ckpt
from pipeline.index.image_stats import ImageStats
from pipeline.index.job import IndexJob
from pipeline.index.probe import ProbeLog, ProbeRows
from pipeline.index.quantiles import Quantiles
from pipeline.index.stats import LayerStats


def merge_stats(job: IndexJob, stats: dict[int, LayerStats]) -> dict[int, LayerStats] | None:
    """Every layer's statistics over all ranks, on rank 0 (one layer at a time)."""
    if job.world == 1:
        return stats
    out = {}
    for index, s in stats.items():
        states = distributed.gather(s.state())
        if states is not None:
            parts = []
            for state in states:
                part = LayerStats(s.units, s.k, 0, s.hist.bins, s.quantile_k, s.rows)
                part.load(state)
                parts.append(part)
            out[index] = LayerStats.merge(parts)
    return out if distributed.is_main() else None


def merge_image_stats(job: IndexJob, images: ImageStats) -> ImageStats | None:
    """The image statistics over all ranks, on rank 0."""
    if job.world == 1:
        return images
    states = distributed.gather(images.state())
    if states is None:
        return None
    parts = []
    for state in states:
        part = job.new_image_stats()
        part.load(state)
        parts.append(part)
    return ImageStats.merge(parts)


@dataclass
class ExampleList:
    records: list[list]  # [number, id, label], position = number
    skipped: list[list]  # [number, id, reason]
    names: dict[int, str]


def gather_examples(job: IndexJob) -> ExampleList | None:
    parts = distributed.gather(ckpt.ExampleLog(job.rank_dir).read())
    if parts is None:
        return None
    records = sorted((r for p in parts for r in p[0]), key=lambda r: r[0])
    if [r[0] for r in records] != list(range(len(records))):
        raise RuntimeError("index: example numbers are not contiguous; delete DIR/index/work "
                           "and rerun")
    skipped = sorted((s for p in parts for s in p[1]), key=lambda s: s[0])
    names: dict[int, str] = {}
    for p in parts:
        for k, v in p[2].items():
            names.setdefault(k, v)
    return ExampleList(records, skipped, names)


def gather_probe(probe: ProbeLog) -> ProbeRows | None:
    parts = distributed.gather(probe.read())
    return None if parts is None else ProbeRows.merge(parts)


def shown_ids(stats: LayerStats, quantiles: Quantiles | None) -> np.ndarray:
    """``(units, 2k [+ Q·qk])`` every example a unit shows: its top-k, its bottom-k, then its
    quantile examples interval after interval (the maps pass records a map for each)."""
    ids = np.concatenate([stats.topk.result()[0], stats.bottomk_result()[0]], axis=1)
    if quantiles is None:
        return ids
    return np.concatenate([ids, quantiles.ids.reshape(len(ids), -1)], axis=1)

