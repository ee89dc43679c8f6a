"""What one index run computes and where (``IndexJob``: layers, units, fingerprint,
rank), whether a finished index of it exists, and clearing outputs of another configuration.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import distributed, ids
from pipeline.ids import fingerprint
from pipeline.index import checkpoint as ckpt
from pipeline.index.foreground import MaskReader, mask_transform
from pipeline.index.histogram import DEFAULT_BINS
from pipeline.index.image_stats import ImageStats
from pipeline.index.maps import prepare_thumbs
from pipeline.index.probe import ProbeEncoder, ProbeLog
from pipeline.index.results import INDEX_FORMAT
from pipeline.models import FFNLayer
from pipeline.models.load import data_config
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
        model, cfg = run.config.model, run.config.index
        key = {
            "format": INDEX_FORMAT, "model": model.name, "weights": run.weights_id,
            "model_kwargs": model.kwargs, "dataset": cfg.dataset, "split": cfg.split,
            "max_images": cfg.max_images, "topk": cfg.topk, "bins": DEFAULT_BINS,
            "stats_images": cfg.stats_images, "probe_images": cfg.probe_images,
            "quantiles": cfg.quantiles, "quantile_k": cfg.kept_per_quantile,
            "units": {str(i): u for i, u in units.items()},
            **({} if cfg.masks is None else {"masks": str(cfg.masks)}),
        }
        digest = fingerprint(key)
        return cls(run, layers, units, digest, distributed.rank(), distributed.world_size())

    @property
    def root(self) -> Path:
        return self.run.store.index_dir

    @property
    def rank_dir(self) -> Path:
        return ckpt.rank_dir(self.run.store.index_work_dir, self.rank, self.world)

    def new_image_stats(self) -> ImageStats:
        """An empty accumulator of the dataset's image statistics at the model's input size."""
        return ImageStats(tuple(self.run.spec.input_size[-2:]),
                          self.run.config.index.stats_images)

    def new_probe_log(self, encoder: ProbeEncoder | None) -> ProbeLog:
        return ProbeLog(self.rank_dir, self.run.config.index.probe_images,
                        [layer.index for layer in self.layers],
                        None if encoder is None else encoder.id)

    def mask_reader(self, source: Any = None) -> MaskReader | None:
        """What reads each example's object mask in the maps pass: ``--masks`` (a folder of
        PNGs or an ImageNet LOC box file) and masks ``source`` carries (a WebDataset
        ``mask.png``); None without either."""
        root = self.run.config.index.masks
        if root is None and getattr(source, "mask_col", None) is None:
            return None
        cfg = data_config(self.run.model, self.run.config.model.kwargs)
        return MaskReader.for_option(root, mask_transform(cfg))

    def complete(self) -> bool:
        store = self.run.store
        data = store.index_info()
        return (data is not None and data.get("fingerprint") == self.fingerprint
                and all(store.index_layer_path(layer.index).is_file()
                        and store.probe_path(layer.index).is_file()
                        for layer in self.layers))


def say(msg: str) -> None:
    if distributed.is_main():
        ids.say(msg)


def remove_stale_outputs(job: IndexJob) -> None:
    """Outputs of an index with another configuration must not mix with this one."""
    store = job.run.store
    data = store.index_info()
    if data is not None and data.get("fingerprint") != job.fingerprint:
        store.examples_path.unlink(missing_ok=True)
        for path in store.index_dir.glob("L*.npz"):
            path.unlink(missing_ok=True)
        store.image_stats_path.unlink(missing_ok=True)
        shutil.rmtree(store.probe_dir, ignore_errors=True)
    model, cfg = job.run.config.model, job.run.config.index
    prepare_thumbs(job.run.store.thumbs_dir, [cfg.dataset, cfg.split, model.name, model.kwargs])

