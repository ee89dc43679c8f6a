"""Pass 1: the checkpointed scan of this rank's share of the dataset.

One truncated forward per batch feeds every layer's statistics (``Scanner``), the image
statistics, the probe set (and a probe encoder's embeddings) and the example log; all of it is
checkpointed every ``checkpoint_every`` batches and resumed from there.
"""

from __future__ import annotations

import json

from tqdm import tqdm

from pipeline import distributed
from pipeline.data.sources import Source
from pipeline.index import checkpoint as ckpt
from pipeline.index.image_stats import ImageStats, unnormalize
from pipeline.index.job import IndexJob, say
from pipeline.index.loader import BatchPlan, make_loader
from pipeline.index.memory import Trimmer
from pipeline.index.probe import ProbeEncoder, ProbeLog
from pipeline.index.scan import Scanner


def scan_share(job: IndexJob, scanner: Scanner, images: ImageStats, probe: ProbeLog,
               encoder: ProbeEncoder | None, source: Source, transform,
               stop_after_batches: int | None) -> bool:
    """Stream this rank's share into ``scanner`` and ``images``; True once the whole share
    is done."""
    cfg = job.run.config.index
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
        say(f"index: resuming after {consumed * job.world} examples")
    else:
        ckpt.clear(job.rank_dir)

    def save(finished: bool) -> None:
        scanner.wait()  # the probe rows of the last batch are added in the scanner's thread
        probe.flush(consumed)
        log.flush(consumed)
        meta = {"fingerprint": job.fingerprint, "consumed": consumed, "finished": finished,
                "source_state": source_state, "rank": job.rank, "world": job.world}
        ckpt.save_state(state_path, meta, scanner.stats, images)

    plan = BatchPlan(source, cfg.batch_size, job.rank, job.world, skip=consumed,
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

