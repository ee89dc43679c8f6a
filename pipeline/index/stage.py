"""The ``index`` stage: exact dataset top-k per FFN unit, with patch maps and thumbnails.

1. Scan: stream the dataset once; one truncated forward per batch feeds every selected
   layer's statistics (``Scanner``), and the first ``stats_images`` examples feed the
   dataset's image statistics (``ImageStats``: spectrum, colour). Checkpointed every
   ``checkpoint_every`` batches; a rerun resumes from there. Under torchrun each rank scans
   the examples ``n ≡ rank (mod world)`` and rank 0 merges the statistics exactly.
   Each unit also keeps, per histogram bin, the ``quantile_k`` examples of smallest hash
   (``quantiles``): at the end, its quantile examples in up to ``quantiles`` intervals
   between its mean and max are chosen from them, exactly.
2. Maps: re-read only the selected examples (top-k and quantile), record their patch maps
   and write thumbnails.
3. Write ``L{layer:03d}.npz`` per layer, ``image_stats.npz`` and the probe set's profiles
   (``probe/``: every unit's score over the first ``probe_images`` examples, and a probe
   encoder's embeddings of them when one rides along: the labeler's image side), then
   ``examples.json`` (see ``results``).
4. Experiments: the whole model over the first examples: accuracy with the background or
   the foreground masked, and the CLS token replaced by its mean at each block
   (``experiments``, its own checkpoint and ``experiments.json``; also run when the index was
   already complete).

The pieces: ``job`` (what a run computes, its fingerprint, clean-up), ``stream`` (pass 1,
checkpointed), ``merge`` (ranks to rank 0), ``maps_pass`` (pass 2), ``write`` (the files);
beneath them ``scan`` (one forward → scores), ``stats``/``topk``/``histogram``/``quantiles``
(per-unit statistics), ``probe``, ``image_stats``, ``loader``, ``checkpoint``, and
``results`` (the on-disk contract the other stages read).

``run_index(run)`` is the entry point; ``stop_after_batches`` stops the scan abruptly after
that many batches (as a kill would: nothing beyond the last checkpoint is saved), for tests.

Memory: O(units × (k + bins + classes)) during the scan, whatever the number of images; the
list of example ids is written to chunk files at each checkpoint and only read back at the
end to write examples.json. The maps pass checkpoints too (``checkpoint.MapsLog``), and
thumbnails already written are kept. Under torchrun each rank writes the thumbnails of its
share, so multi-node runs need ``out`` on a shared filesystem (as the other stages do);
statistics, example lists and maps travel to rank 0 by ``gather_object``.
"""

from __future__ import annotations

import shutil

from pipeline import distributed
from pipeline.config import IndexConfig
from pipeline.data.sources import open_source
from pipeline.index.experiments import run_experiments
from pipeline.index.job import IndexJob, remove_stale_outputs, say
from pipeline.index.maps_pass import maps_pass
from pipeline.index.merge import (
    gather_examples,
    gather_probe,
    merge_image_stats,
    merge_stats,
    shown_ids,
)
from pipeline.index.probe import ProbeEncoder
from pipeline.index.scan import Scanner
from pipeline.index.stream import scan_share
from pipeline.index.write import write_index, write_probe_set
from pipeline.models import eval_transform
from pipeline.runtime import Run

__all__ = ["IndexJob", "check_options", "run_index"]


def check_options(config: IndexConfig, image_size: int) -> None:
    """The index stage's cheap check: its dataset opens (a missing folder, an unknown or gated
    hub id, an unreachable hub are reported here; nothing is read).

    >>> check_options(IndexConfig(dataset="synthetic:8"), 32)
    """
    open_source(config.dataset, config.split, image_size=image_size)


def run_index(run: Run, *, stop_after_batches: int | None = None,
              probe_encoder: ProbeEncoder | None = None) -> None:
    """Build (or resume, or skip if complete) DIR/index for ``run``'s model and dataset;
    ``probe_encoder`` (e.g. the labeler's image tower) also embeds the probe images."""
    job = IndexJob.from_run(run)
    if distributed.broadcast(job.complete() if distributed.is_main() else None):
        say(f"index: complete for this configuration ({job.root}), nothing to do")
        _experiments(run, job)
        return
    if distributed.is_main():
        remove_stale_outputs(job)
    distributed.barrier()
    cfg = run.config.index
    source = open_source(cfg.dataset, cfg.split, image_size=run.spec.input_size[-1])
    transform = eval_transform(run.model, run.config.model.kwargs)
    classes = len(source.class_names or [])
    images = job.new_image_stats()
    probe = job.new_probe_log(probe_encoder)
    with Scanner(run.model, job.layers, job.units, cfg.topk, run.device, classes,
                 probe=probe, quantile_k=cfg.kept_per_quantile) as scanner:
        finished = scan_share(job, scanner, images, probe, probe_encoder, source, transform,
                              stop_after_batches)
        if not all(distributed.broadcast(distributed.gather(finished))):
            say("index: interrupted; rerun to resume from the last checkpoint")
            return
        merged = merge_stats(job, scanner.stats)
        merged_images = merge_image_stats(job, images)
        examples = gather_examples(job)
        probe_rows = gather_probe(probe)
        quantiles = None if merged is None else {
            i: s.quantiles(cfg.quantiles) for i, s in merged.items()}
        shown = distributed.broadcast(None if merged is None else {
            i: shown_ids(s, quantiles[i]) for i, s in merged.items()})
        maps, failed, figures = maps_pass(job, scanner, source, transform, shown)
    if distributed.is_main():
        write_probe_set(job, probe_rows, probe.encoder_id)
        write_index(job, source, merged, quantiles, merged_images, maps, examples, failed,
                    figures)
    distributed.barrier()
    if distributed.is_main():
        shutil.rmtree(job.run.store.index_work_dir, ignore_errors=True)
    _experiments(run, job)


def _experiments(run: Run, job: IndexJob) -> None:
    """The model-output experiments (``experiments``) of a complete index, if not yet done."""
    cfg = run.config.index
    source = open_source(cfg.dataset, cfg.split, image_size=run.spec.input_size[-1])
    run_experiments(job, source, eval_transform(run.model, run.config.model.kwargs))

