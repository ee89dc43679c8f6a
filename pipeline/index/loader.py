"""Numbered records in, model-ready batches out, decoding in DataLoader workers.

The main process reads the source (cheap: bytes or paths, no decoding) and groups records
into batches (``BatchPlan``, used as the DataLoader's batch sampler); workers decode and
transform them (``DecodeBatches``). The DataLoader keeps batches in order, so example
numbers and every result are the same whatever the number of workers. A file that does not
decode becomes a *skipped* entry of its batch instead of an exception.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pipeline.data.sources import Record, Source, json_safe_state


class RecordBatch(list):
    """The records of one batch, plus where this rank's stream stands after it."""

    def __init__(self, records: list[Record], consumed: int, state: str | None):
        super().__init__(records)
        self.consumed = consumed  # records of this rank's share read so far
        self.state = state  # the source's state_dict() there (JSON), when it has one


@dataclass
class Batch:
    numbers: np.ndarray  # (n,) int64 example numbers of the decoded images, increasing
    labels: np.ndarray  # (n,) int64, -1 = none
    pixels: torch.Tensor | None  # (n, 3, H, W) model input, None when n == 0
    records: list[tuple[int, str, int | None, str | None]]  # every record: number, id, label,
    # label name (in order, skipped ones included)
    skipped: list[tuple[int, str, str]] = field(default_factory=list)  # number, id, reason
    consumed: int = 0
    state: str | None = None
    # the probe images of the batch (numbered below the probe limit), through the probe
    # encoder's own transform; None when no probe encoder rides along or none is in the batch
    probe_numbers: np.ndarray | None = None
    probe_pixels: torch.Tensor | None = None
    # with a mask reader: each decoded image's object mask at the input size ((H, W) bool)
    # or None where it has none, aligned with ``numbers``; None without a reader
    masks: list[np.ndarray | None] | None = None

    def pin_memory(self) -> Batch:
        if self.pixels is not None:
            self.pixels = self.pixels.pin_memory()
        if self.probe_pixels is not None:
            self.probe_pixels = self.probe_pixels.pin_memory()
        return self


class BatchPlan:
    """Batch sampler over ``source``: this rank's share, from a resume point, up to ``stop``
    (exclusive example number), optionally only the example numbers in ``wanted``."""

    def __init__(self, source: Source, batch_size: int, rank: int = 0, world: int = 1,
                 skip: int = 0, state: dict | None = None, stop: int | None = None,
                 wanted: np.ndarray | None = None):
        self.source, self.batch_size = source, max(1, batch_size)
        self.rank, self.world, self.skip, self.state, self.stop = rank, world, skip, state, stop
        self.wanted = None if wanted is None else set(int(n) for n in wanted)
        self.last = None if wanted is None else (int(max(wanted)) if len(wanted) else -1)

    def __iter__(self) -> Iterator[RecordBatch]:
        batch: list[Record] = []
        consumed = self.skip
        if self.last is not None and self.last < 0:
            return
        for rec in self.source.records(self.rank, self.world, self.skip, self.state):
            if self.stop is not None and rec.number >= self.stop:
                break
            if self.last is not None and rec.number > self.last:
                break
            consumed += 1
            if self.wanted is not None and rec.number not in self.wanted:
                continue
            batch.append(rec)
            if len(batch) == self.batch_size:
                yield RecordBatch(batch, consumed, json_safe_state(self.source.state_dict()))
                batch = []
        if batch:
            yield RecordBatch(batch, consumed, None)


OnDecoded = Callable[[int, torch.Tensor], None]


class DecodeBatches(Dataset):
    """Decode + eval transform of a whole ``RecordBatch`` (runs in a DataLoader worker);
    ``probe``: ``(transform, limit)``, a second transform for the examples numbered below
    ``limit`` (an example either transform fails on is skipped); ``masks``: a
    ``foreground.MaskReader`` giving each image's object mask (``Batch.masks``)."""

    def __init__(self, decoder: Callable, transform: Callable,
                 on_decoded: OnDecoded | None = None,
                 probe: tuple[Callable, int] | None = None,
                 masks: Callable | None = None):
        self.decoder, self.transform, self.on_decoded = decoder, transform, on_decoded
        self.probe, self.masks = probe, masks

    def __getitem__(self, index):  # pragma: no cover - batches only
        raise TypeError("DecodeBatches is fetched by whole batches")

    def __getitems__(self, batch: RecordBatch) -> Batch:
        numbers, labels, pixels, records, skipped = [], [], [], [], []
        probe_numbers, probe_pixels = [], []
        masks: list[np.ndarray | None] = []
        for rec in batch:
            try:
                dec = self.decoder(rec)
                x = self.transform(dec.image)
                mask = None
                if self.masks is not None:
                    mask = self.masks(dec.id, dec.mask, dec.image.size)
                px = None
                if self.probe is not None and rec.number < self.probe[1]:
                    px = self.probe[0](dec.image)
                if self.on_decoded is not None:
                    self.on_decoded(rec.number, x)
            except Exception as exc:  # a broken file skips one example, never the run
                ident = rec.id or f"#{rec.number}"
                records.append((rec.number, ident, rec.label, rec.label_name))
                skipped.append((rec.number, ident, skip_reason(exc)))
                continue
            numbers.append(rec.number)
            labels.append(-1 if dec.label is None else dec.label)
            pixels.append(x)
            masks.append(mask)
            records.append((rec.number, dec.id, dec.label, rec.label_name))
            if px is not None:
                probe_numbers.append(rec.number)
                probe_pixels.append(px)
        return Batch(
            numbers=np.asarray(numbers, dtype=np.int64),
            labels=np.asarray(labels, dtype=np.int64),
            pixels=torch.stack(pixels) if pixels else None,
            records=records, skipped=skipped, consumed=batch.consumed, state=batch.state,
            probe_numbers=np.asarray(probe_numbers, dtype=np.int64) if probe_pixels else None,
            probe_pixels=torch.stack(probe_pixels) if probe_pixels else None,
            masks=masks if self.masks is not None else None,
        )


def skip_reason(exc: BaseException) -> str:
    """A short, reproducible reason (no object addresses) for the run report."""
    text = re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "data", str(exc))
    return f"{type(exc).__name__}: {text}"[:300]


def _whole(batch: Batch) -> Batch:
    return batch


def make_loader(plan: BatchPlan, decoder: Callable, transform: Callable, workers: int,
                pin_memory: bool = False, on_decoded: OnDecoded | None = None,
                probe: tuple[Callable, int] | None = None,
                masks: Callable | None = None) -> DataLoader:
    """A DataLoader yielding ``Batch``es in stream order, decoding in ``workers`` processes
    (``probe``, ``masks``: see ``DecodeBatches``)."""
    return DataLoader(
        DecodeBatches(decoder, transform, on_decoded, probe, masks),
        batch_sampler=plan,
        num_workers=max(0, workers),
        collate_fn=_whole,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers > 0 else None,
    )
