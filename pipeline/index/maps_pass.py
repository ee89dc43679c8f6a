"""Pass 2: re-read only the selected examples (top-k and quantile), record their patch
maps and write their thumbnails; maps travel to rank 0.
"""

from __future__ import annotations

import json

import numpy as np
from tqdm import tqdm

from pipeline import distributed
from pipeline.data.sources import Source
from pipeline.index import checkpoint as ckpt
from pipeline.index.foreground import FIGURES
from pipeline.index.job import IndexJob, say
from pipeline.index.loader import BatchPlan
from pipeline.index.maps import SlotTable, ThumbWriter, collect_maps
from pipeline.index.scan import Scanner


def maps_pass(job: IndexJob, scanner: Scanner, source: Source, transform,
              selected: dict[int, np.ndarray]
              ) -> tuple[dict[int, np.ndarray] | None, list[list], dict[int, np.ndarray] | None]:
    """Patch maps ``{layer: (units, slots, rows, cols)}`` of the ``selected`` examples
    ``{layer: (units, slots)}`` (-1: empty slot), on rank 0 (None elsewhere); the examples
    that failed; and with masks (``IndexJob.mask_reader``), the masking experiment's
    ``foreground.FIGURES`` of the top-k slots ``{layer: (units, topk, 5)}`` (NaN: no mask)."""
    cfg = job.run.config.index
    tables = {i: SlotTable(ids, (ids >= 0) & (ids % job.world == job.rank))
              for i, ids in selected.items()}
    wanted = np.unique(np.concatenate([t.numbers for t in tables.values()]))
    grids = {layer.index: layer.grid for layer in job.layers}
    log = ckpt.MapsLog(job.rank_dir, job.fingerprint)
    at = log.progress() or ckpt.MapsProgress()
    if at.consumed:
        say(f"maps: resuming after {at.consumed * job.world} examples")
    plan = BatchPlan(source, cfg.batch_size, job.rank, job.world, skip=at.consumed,
                     state=json.loads(at.source_state) if at.source_state else None,
                     stop=cfg.max_images, wanted=wanted)
    spec = job.run.spec
    thumbs = ThumbWriter(job.root, tuple(spec.mean), tuple(spec.std))
    bar = tqdm(total=len(wanted), unit="img", desc="maps", disable=not distributed.is_main(),
               dynamic_ncols=True, mininterval=0.5)
    reader = job.mask_reader(source)
    pieces, failed = collect_maps(scanner, plan, source.decoder, transform, cfg.workers,
                                  tables, grids, thumbs, bar, log, cfg.checkpoint_every,
                                  masks=reader, topk=cfg.topk)
    bar.close()
    failed_all = distributed.gather(failed)
    out: dict[int, np.ndarray] = {}
    figures: dict[int, np.ndarray] = {}
    for index, ids in selected.items():
        parts = distributed.gather(pieces[index])
        if parts is None:
            continue
        rows, cols = grids[index]
        maps = np.zeros((ids.size, rows, cols), dtype=np.float32)
        figs = np.full((ids.size, len(FIGURES)), np.nan, dtype=np.float32)
        for slots, values, found in parts:
            maps[slots] = values
            if found is not None:
                figs[slots] = found
        out[index] = maps.reshape(*ids.shape, rows, cols)
        figures[index] = figs.reshape(*ids.shape, len(FIGURES))[:, :cfg.topk]
    if failed_all is None:
        return None, [], None
    return (out, [f for part in failed_all for f in part],
            figures if reader is not None else None)

