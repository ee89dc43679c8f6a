"""The ``index`` stage: exact dataset top-k per FFN unit, with patch maps and thumbnails.

1. Scan: stream the dataset once; one truncated forward per batch feeds every selected
   layer's statistics (``Scanner``), and the first ``--stats-images`` examples feed the
   dataset's image statistics (``ImageStats``: spectrum, colour). Checkpointed every
   ``checkpoint_every`` batches; a rerun resumes from there. Under torchrun each rank scans
   the examples ``n ≡ rank (mod world)`` and rank 0 merges the statistics exactly.
   Each unit also keeps, per histogram bin, the ``--quantile-k`` examples of smallest hash
   (``quantiles``): at the end, its quantile examples in up to ``--quantiles`` intervals
   between its mean and max are chosen from them, exactly.
2. Maps: re-read only the selected examples (top-k and quantile), record their patch maps
   and write thumbnails.
3. Write ``L{layer:03d}.npz`` per layer, ``image_stats.npz`` and the probe set's profiles
   (``probe/``: every unit's score over the first ``--probe-images`` examples, and a probe
   encoder's embeddings of them when one rides along: the labeler's image side), then
   ``examples.json`` (see ``results``).

``run_index(run)`` is the entry point; ``stop_after_batches`` stops the scan abruptly after
that many batches (as a kill would: nothing beyond the last checkpoint is saved), for tests.

Memory: O(units × (k + bins + classes)) during the scan, whatever the number of images; the
list of example ids is written to chunk files at each checkpoint and only read back at the
end to write examples.json. The maps pass checkpoints too (``checkpoint.MapsLog``), and
thumbnails already written are kept. Under torchrun each rank writes the thumbnails of its
share, so multi-node runs need ``--out`` on a shared filesystem (as the other stages do);
statistics, example lists and maps travel to rank 0 by ``gather_object``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pipeline import distributed
from pipeline.data.sources import Source, open_source, readable_class_names
from pipeline.index import checkpoint as ckpt
from pipeline.index.histogram import DEFAULT_BINS
from pipeline.index.image_stats import ImageStats, unnormalize
from pipeline.index.loader import BatchPlan, make_loader
from pipeline.index.maps import SlotTable, ThumbWriter, collect_maps, prepare_thumbs, thumb_name
from pipeline.index.memory import Trimmer
from pipeline.index.probe import ProbeEncoder, ProbeLog, ProbeRows
from pipeline.index.quantiles import Quantiles
from pipeline.index.results import (
    INDEX_FORMAT,
    LayerIndex,
    image_stats_path,
    index_dir,
    layer_path,
    probe_dir,
    read_examples_json,
    write_examples,
    write_image_stats,
    write_layer_index,
    write_probe,
    write_probe_embeddings,
)
from pipeline.index.scan import Scanner
from pipeline.index.stats import LayerStats
from pipeline.models import FFNLayer, eval_transform
from pipeline.runtime import Run


@dataclass
class IndexJob:
    """What one index run computes and where: derived from the run's config once."""

    run: Run
    layers: list[FFNLayer]
    units: dict[int, list[int]]
    fingerprint: str
    rank: int
    world: int

    @classmethod
    def from_run(cls, run: Run) -> IndexJob:
        layers = [run.spec.layers[i] for i in run.layers]
        units = {layer.index: run.units(layer.index) for layer in layers}
        cfg = run.config
        key = {
            "format": INDEX_FORMAT, "model": cfg.model, "weights": run.weights_id,
            "model_kwargs": cfg.model_kwargs, "dataset": cfg.dataset, "split": cfg.split,
            "max_images": cfg.max_images, "topk": cfg.topk, "bins": DEFAULT_BINS,
            "stats_images": cfg.stats_images, "probe_images": cfg.probe_images,
            "quantiles": cfg.quantiles, "quantile_k": _quantile_k(cfg),
            "units": {str(i): u for i, u in units.items()},
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return cls(run, layers, units, digest, distributed.rank(), distributed.world_size())

    @property
    def root(self) -> Path:
        return index_dir(self.run.store)

    @property
    def rank_dir(self) -> Path:
        return ckpt.rank_dir(self.root / "work", self.rank, self.world)

    def new_image_stats(self) -> ImageStats:
        """An empty accumulator of the dataset's image statistics at the model's input size."""
        return ImageStats(tuple(self.run.spec.input_size[-2:]), self.run.config.stats_images)

    def new_probe_log(self, encoder: ProbeEncoder | None) -> ProbeLog:
        return ProbeLog(self.rank_dir, self.run.config.probe_images,
                        [layer.index for layer in self.layers],
                        None if encoder is None else encoder.id)

    def complete(self) -> bool:
        data = read_examples_json(self.run.store)
        store = self.run.store
        return (data is not None and data.get("fingerprint") == self.fingerprint
                and all(layer_path(store, layer.index).is_file()
                        and (probe_dir(store) / f"L{layer.index:03d}.npz").is_file()
                        for layer in self.layers))


def _quantile_k(cfg) -> int:
    """Examples kept per quantile interval (0: no quantile examples)."""
    return cfg.quantile_k if cfg.quantiles > 0 else 0


def _say(msg: str) -> None:
    if distributed.is_main():
        print(msg, file=sys.stderr, flush=True)


def run_index(run: Run, *, stop_after_batches: int | None = None,
              probe_encoder: ProbeEncoder | None = None) -> None:
    """Build (or resume, or skip if complete) DIR/index for ``run``'s model and dataset;
    ``probe_encoder`` (e.g. the labeler's image tower) also embeds the probe images."""
    job = IndexJob.from_run(run)
    if distributed.broadcast(job.complete() if distributed.is_main() else None):
        _say(f"index: complete for this configuration ({job.root}), nothing to do")
        return
    if distributed.is_main():
        _remove_stale_outputs(job)
    distributed.barrier()
    cfg = run.config
    source = open_source(cfg.dataset, cfg.split, image_size=run.spec.input_size[-1])
    transform = eval_transform(run.model, cfg.model_kwargs)
    classes = len(source.class_names or [])
    images = job.new_image_stats()
    probe = job.new_probe_log(probe_encoder)
    with Scanner(run.model, job.layers, job.units, cfg.topk, run.device, classes,
                 probe=probe, quantile_k=_quantile_k(cfg)) as scanner:
        finished = _scan(job, scanner, images, probe, probe_encoder, source, transform,
                         stop_after_batches)
        if not all(distributed.broadcast(distributed.gather(finished))):
            _say("index: interrupted; rerun to resume from the last checkpoint")
            return
        merged = _merge(job, scanner.stats)
        merged_images = _merge_images(job, images)
        examples = _gather_examples(job)
        probe_rows = _gather_probe(probe)
        quantiles = None if merged is None else {
            i: s.quantiles(cfg.quantiles) for i, s in merged.items()}
        shown = distributed.broadcast(None if merged is None else {
            i: _shown_ids(s, quantiles[i]) for i, s in merged.items()})
        maps, failed = _maps(job, scanner, source, transform, shown)
    if distributed.is_main():
        _write_probe(job, probe_rows, probe.encoder_id)
        _write(job, source, merged, quantiles, merged_images, maps, examples, failed)
    distributed.barrier()
    if distributed.is_main():
        shutil.rmtree(job.root / "work", ignore_errors=True)


# -- 1. scan ----------------------------------------------------------------------------------
def _scan(job: IndexJob, scanner: Scanner, images: ImageStats, probe: ProbeLog,
          encoder: ProbeEncoder | None, source: Source, transform,
          stop_after_batches: int | None) -> bool:
    """Stream this rank's share into ``scanner`` and ``images``; True once the whole share
    is done."""
    cfg = job.run.config
    state_path = job.rank_dir / "state.npz"
    log = ckpt.ExampleLog(job.rank_dir)
    consumed, source_state = 0, None
    saved = ckpt.load_state(state_path)
    if saved is not None and saved.meta.get("fingerprint") == job.fingerprint:
        for index, arrays in saved.stats.items():
            scanner.stats[index].load(arrays)
        if saved.images:
            images.load(saved.images)
        consumed = int(saved.meta["consumed"])
        if saved.meta.get("finished"):
            return True
        raw = saved.meta.get("source_state")
        source_state = json.loads(raw) if raw else None
        log.start = probe.start = consumed
        log.drop_after(consumed)
        probe.drop_after(consumed)
        _say(f"index: resuming after {consumed * job.world} examples")
    else:
        ckpt.clear(job.rank_dir)

    def save(finished: bool) -> None:
        scanner.wait()  # the probe rows of the last batch are added in the scanner's thread
        probe.flush(consumed)
        log.flush(consumed)
        meta = {"fingerprint": job.fingerprint, "consumed": consumed, "finished": finished,
                "source_state": source_state, "rank": job.rank, "world": job.world}
        ckpt.save_state(state_path, meta, scanner.stats, images)

    plan = BatchPlan(source, cfg.index_batch_size, job.rank, job.world, skip=consumed,
                     state=source_state, stop=cfg.max_images)
    total = source.length if cfg.max_images is None else min(
        cfg.max_images, source.length or cfg.max_images)
    bar = tqdm(total=total, initial=consumed * job.world, unit="img", desc="index",
               disable=not distributed.is_main(), dynamic_ncols=True, mininterval=0.5)
    loader = make_loader(plan, source.decoder, transform, cfg.workers,
                         pin_memory=job.run.device.type == "cuda",
                         probe=None if encoder is None else (encoder.transform,
                                                             cfg.probe_images))
    trim = Trimmer()
    spec, device = job.run.spec, job.run.device
    for batches, batch in enumerate(loader, start=1):
        if batch.pixels is not None:
            scanner.update(batch.pixels, batch.numbers, batch.labels)
            if images.wants(batch.numbers).any():
                pixels = batch.pixels.to(device, non_blocking=True)
                images.update(unnormalize(pixels, spec.mean, spec.std), batch.numbers)
        if encoder is not None and batch.probe_pixels is not None:
            probe.add_embeddings(batch.probe_numbers, encoder.encode(batch.probe_pixels))
        trim()
        log.add(batch)
        consumed, source_state = batch.consumed, batch.state
        if batch.records:
            bar.update(batch.records[-1][0] + 1 - bar.n)
        if batches % max(1, cfg.checkpoint_every) == 0:
            save(finished=False)
        if stop_after_batches is not None and batches >= stop_after_batches:
            bar.close()
            return False
    bar.close()
    save(finished=True)
    return True


def _merge(job: IndexJob, stats: dict[int, LayerStats]) -> dict[int, LayerStats] | None:
    """Every layer's statistics over all ranks, on rank 0 (one layer at a time)."""
    if job.world == 1:
        return stats
    out = {}
    for index, s in stats.items():
        states = distributed.gather(s.state())
        if states is not None:
            parts = []
            for state in states:
                part = LayerStats(s.units, s.k, 0, s.hist.bins, s.quantile_k)
                part.load(state)
                parts.append(part)
            out[index] = LayerStats.merge(parts)
    return out if distributed.is_main() else None


def _merge_images(job: IndexJob, images: ImageStats) -> ImageStats | None:
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


def _gather_examples(job: IndexJob) -> ExampleList | None:
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


def _gather_probe(probe: ProbeLog) -> ProbeRows | None:
    parts = distributed.gather(probe.read())
    return None if parts is None else ProbeRows.merge(parts)


def _shown_ids(stats: LayerStats, quantiles: Quantiles | None) -> np.ndarray:
    """``(units, k [+ Q·qk])`` every example a unit shows: its top-k, then its quantile
    examples interval after interval (the maps pass records a map for each)."""
    ids = stats.topk.result()[0]
    if quantiles is None:
        return ids
    return np.concatenate([ids, quantiles.ids.reshape(len(ids), -1)], axis=1)


# -- 2. maps ----------------------------------------------------------------------------------
def _maps(job: IndexJob, scanner: Scanner, source: Source, transform,
          selected: dict[int, np.ndarray]) -> tuple[dict[int, np.ndarray] | None, list[list]]:
    """Patch maps ``{layer: (units, slots, rows, cols)}`` of the ``selected`` examples
    ``{layer: (units, slots)}`` (-1: empty slot), on rank 0 (None elsewhere)."""
    cfg = job.run.config
    tables = {i: SlotTable(ids, (ids >= 0) & (ids % job.world == job.rank))
              for i, ids in selected.items()}
    wanted = np.unique(np.concatenate([t.numbers for t in tables.values()]))
    grids = {layer.index: layer.grid for layer in job.layers}
    log = ckpt.MapsLog(job.rank_dir, job.fingerprint)
    at = log.progress() or ckpt.MapsProgress()
    if at.consumed:
        _say(f"maps: resuming after {at.consumed * job.world} examples")
    plan = BatchPlan(source, cfg.index_batch_size, job.rank, job.world, skip=at.consumed,
                     state=json.loads(at.source_state) if at.source_state else None,
                     stop=cfg.max_images, wanted=wanted)
    spec = job.run.spec
    thumbs = ThumbWriter(job.root, tuple(spec.mean), tuple(spec.std))
    bar = tqdm(total=len(wanted), unit="img", desc="maps", disable=not distributed.is_main(),
               dynamic_ncols=True, mininterval=0.5)
    pieces, failed = collect_maps(scanner, plan, source.decoder, transform, cfg.workers,
                                  tables, grids, thumbs, bar, log, cfg.checkpoint_every)
    bar.close()
    failed_all = distributed.gather(failed)
    out: dict[int, np.ndarray] = {}
    for index, ids in selected.items():
        parts = distributed.gather(pieces[index])
        if parts is None:
            continue
        rows, cols = grids[index]
        maps = np.zeros((ids.size, rows, cols), dtype=np.float32)
        for slots, values in parts:
            maps[slots] = values
        out[index] = maps.reshape(*ids.shape, rows, cols)
    if failed_all is None:
        return None, []
    return out, [f for part in failed_all for f in part]


# -- 3. write ---------------------------------------------------------------------------------
def _class_names(source: Source, names: dict[int, str], labels: list) -> list[str] | None:
    top = max((label for label in labels if label is not None), default=-1)
    known = list(source.class_names or [])
    if not known and not names and top < 0:
        return None
    found = readable_class_names([names.get(i, str(i)) for i in range(len(known), top + 1)])
    return known + found


def _write(job: IndexJob, source: Source, stats: dict[int, LayerStats],
           quantiles: dict[int, Quantiles | None], images: ImageStats,
           maps: dict[int, np.ndarray], examples: ExampleList, failed: list[list]) -> None:
    failed_numbers = {int(f[0]) for f in failed}
    shown: set[int] = set()
    for index, s in stats.items():
        ids, scores = s.topk.result()
        classes, class_means = s.top_classes()
        k, q = ids.shape[1], quantiles[index]
        extra = {}
        if q is not None:
            extra = {"quantile_edges": q.edges, "quantile_ids": q.ids,
                     "quantile_scores": q.scores,
                     "quantile_maps": maps[index][:, k:].reshape(*q.ids.shape,
                                                                 *maps[index].shape[2:])}
            shown.update(int(n) for n in np.unique(q.ids[q.ids >= 0]))
        write_layer_index(job.run.store, index, LayerIndex(
            top_ids=ids, top_scores=scores, maps=maps[index][:, :k], **extra,
            hist_counts=s.hist.counts, hist_edges=s.hist.edges(),
            mean=s.mean(), std=s.std(), max=s.max(), top_classes=classes,
            top_class_means=np.nan_to_num(class_means, nan=0.0),
            units=np.asarray(job.units[index], dtype=np.int64),
        ))
        shown.update(int(n) for n in np.unique(ids[ids >= 0]))
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
    cfg = job.run.config
    skipped = [{"id": s[1], "reason": s[2], "number": s[0]} for s in examples.skipped]
    write_examples(job.run.store, {
        "format_version": INDEX_FORMAT,
        "fingerprint": job.fingerprint,
        "dataset": cfg.dataset,
        "split": cfg.split,
        "topk": cfg.topk,
        "quantiles": cfg.quantiles,
        "quantile_k": _quantile_k(cfg),
        "layers": [layer.index for layer in job.layers],
        "classes": _class_names(source, examples.names, [r[2] for r in examples.records]),
        "images_seen": int(first.count),
        "skipped": skipped,
        "examples": entries,
    })
    _say(f"index: {first.count} images indexed, {len(skipped)} skipped, "
         f"{len(shown)} thumbnails -> {job.root}")
    for s in skipped[:10]:
        _say(f"  skipped #{s['number']} {s['id']}: {s['reason']}")
    if len(skipped) > 10:
        _say(f"  ... {len(skipped) - 10} more in {job.root / 'examples.json'}")
    for f in failed[:10]:
        _say(f"  warning: #{f[0]} {f[1]} decoded in the scan but not for its maps: {f[2]}")


def _write_probe(job: IndexJob, rows: ProbeRows, encoder_id: str | None) -> None:
    """The probe profiles (before examples.json: see ``complete``) and embeddings."""
    store = job.run.store
    for layer in job.layers:
        write_probe(store, layer.index, rows.numbers, rows.scores[layer.index],
                    np.asarray(job.units[layer.index], dtype=np.int64))
    encoder = encoder_id is not None and rows.embeddings is not None
    if encoder:
        write_probe_embeddings(store, encoder_id, rows.numbers, rows.embeddings)
    _say(f"index: probe set of {len(rows.numbers)} images"
         + (" (with the labeler's embeddings)" if encoder else ""))


def _remove_stale_outputs(job: IndexJob) -> None:
    """Outputs of an index with another configuration must not mix with this one."""
    data = read_examples_json(job.run.store)
    if data is not None and data.get("fingerprint") != job.fingerprint:
        (job.root / "examples.json").unlink(missing_ok=True)
        for path in job.root.glob("L*.npz"):
            path.unlink(missing_ok=True)
        image_stats_path(job.run.store).unlink(missing_ok=True)
        shutil.rmtree(probe_dir(job.run.store), ignore_errors=True)
    cfg = job.run.config
    prepare_thumbs(job.root, [cfg.dataset, cfg.split, cfg.model, cfg.model_kwargs])
