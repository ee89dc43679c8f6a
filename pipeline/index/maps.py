"""Second pass: patch-wise activation maps of the selected examples, and their thumbnails.

Only the examples some unit selected are decoded again (the stream is filtered by example
number). Each is run once through the model; every (unit, slot) that shows it gets the
unit's activation on the layer's token grid. The thumbnail is the model-input crop itself,
de-normalized (what the model saw), at most ``THUMB_MAX`` px, stored once per image.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pipeline.ids import fingerprint
from pipeline.index.checkpoint import MapPieces, MapsLog, MapsProgress
from pipeline.index.foreground import FIGURES, patch_foreground, replace_regions, slot_figures
from pipeline.index.loader import BatchPlan, make_loader
from pipeline.index.memory import Trimmer
from pipeline.index.scan import Scanner
from pipeline.store import atomic_write_text, write_image

THUMB_MAX = 224


def thumb_name(number: int) -> str:
    """Thumbnail path relative to DIR/index."""
    return f"thumbs/{number:07d}.png"


def thumbnail(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
              max_side: int = THUMB_MAX) -> np.ndarray:
    """A normalized model input ``(3, H, W)`` back to uint8 ``(H', W', 3)`` pixels."""
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    img = (x.float() * s + m).clamp(0, 1).mul(255).add(0.5).to(torch.uint8)
    arr = img.permute(1, 2, 0).numpy()
    if max(arr.shape[:2]) > max_side:
        pil = Image.fromarray(arr)
        pil.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        arr = np.asarray(pil)
    return arr


def prepare_thumbs(thumbs: Path, key: Any) -> None:
    """Empty ``thumbs`` (``store.thumbs_dir``) unless it was made for the same ``key``
    (dataset, split and model input): a thumbnail is found by example number, so it is reused
    across reruns."""
    tag = fingerprint(key)
    marker = thumbs / "KEY"
    if marker.is_file() and marker.read_text().strip() == tag:
        return
    shutil.rmtree(thumbs, ignore_errors=True)
    atomic_write_text(marker, tag + "\n")


@dataclass(frozen=True)
class ThumbWriter:
    """Writes one image's thumbnail if it is not there yet (runs in DataLoader workers)."""

    root: Path  # DIR/index
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, number: int, x: torch.Tensor) -> None:
        path = self.root / thumb_name(number)
        if not path.is_file():
            write_image(path, thumbnail(x, self.mean, self.std))


class SlotTable:
    """Which ``(unit row, slot)`` entries of one layer's top-k show which example."""

    def __init__(self, top_ids: np.ndarray, keep: np.ndarray | None = None):
        flat = np.flatnonzero(top_ids.ravel() >= 0 if keep is None else keep.ravel())
        numbers = top_ids.ravel()[flat]
        order = np.argsort(numbers, kind="stable")
        self.slots, self.numbers = flat[order], numbers[order]
        self.k = top_ids.shape[1]

    def lookup(self, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For a batch's example numbers: (batch position, unit row, flat slot) triples."""
        lo = np.searchsorted(self.numbers, numbers, side="left")
        hi = np.searchsorted(self.numbers, numbers, side="right")
        counts = hi - lo
        pos = np.repeat(np.arange(len(numbers)), counts)
        starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
        idx = starts + np.arange(counts.sum())
        slots = self.slots[idx]
        return pos, slots // self.k, slots


def masked_figures(scanner: Scanner, batch, tables: dict[int, SlotTable],
                   grids: dict[int, tuple[int, int]], topk: int,
                   acts: dict[int, torch.Tensor]) -> dict[int, np.ndarray]:
    """The masking experiment on one batch: per layer, ``foreground.FIGURES`` (M, 5) of every
    (unit, slot) ``tables`` give for it (NaN rows: a slot past the top ``topk`` or an image
    without a mask). Images that fill some top slot and have a mask run twice more, with the
    background and then the foreground replaced by their mean colour."""
    pos_rows = {i: t.lookup(batch.numbers) for i, t in tables.items()}
    top = {i: (slots % t.k) < topk for (i, t), (_, _, slots) in
           zip(tables.items(), pos_rows.values(), strict=True)}
    has = np.array([m is not None for m in batch.masks], dtype=bool)
    need = np.zeros(len(batch.numbers), dtype=bool)
    for i, (pos, _, _) in pos_rows.items():
        need[pos[top[i]]] = True
    need &= has
    out = {i: np.full((len(p[2]), len(FIGURES)), np.nan, np.float32)
           for i, p in pos_rows.items()}
    chosen = np.flatnonzero(need)
    if len(chosen) == 0:
        return out
    where = np.full(len(need), -1)
    where[chosen] = np.arange(len(chosen))
    pixels = batch.pixels[torch.as_tensor(chosen)]
    masks = torch.as_tensor(np.stack([batch.masks[j] for j in chosen]))
    bg = scanner.activations(replace_regions(pixels, masks, "background"))
    fg = scanner.activations(replace_regions(pixels, masks, "foreground"))
    for index, (pos, rows, _) in pos_rows.items():
        keep = np.flatnonzero(top[index] & need[pos])
        if len(keep) == 0:
            continue
        p, r, w, grid = pos[keep], rows[keep], where[pos[keep]], grids[index]
        patch_fg = np.stack([patch_foreground(batch.masks[j], grid) for j in p])
        out[index][keep] = slot_figures(_pick(acts[index], p, r, grid),
                                        _pick(bg[index], w, r, grid),
                                        _pick(fg[index], w, r, grid), patch_fg)
    return out


def _pick(a: torch.Tensor, at: np.ndarray, units: np.ndarray,
          grid: tuple[int, int]) -> np.ndarray:
    """Patch maps (M, rows, cols) of images ``at`` and unit rows ``units`` of ``a``."""
    with torch.inference_mode():
        v = a[torch.as_tensor(at, device=a.device), :, torch.as_tensor(units, device=a.device)]
        return v.float().cpu().numpy().reshape(len(at), *grid)


def collect_maps(scanner: Scanner, plan: BatchPlan, decoder, transform, workers: int,
                 tables: dict[int, SlotTable], grids: dict[int, tuple[int, int]],
                 thumbs: ThumbWriter | None = None, progress=None,
                 log: MapsLog | None = None, every: int = 50,
                 masks: Callable | None = None, topk: int = 0,
                 ) -> tuple[dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]],
                            list[list]]:
    """Run the selected examples of ``plan``; returns ``{layer: (flat slots, maps (M, rows,
    cols), figures (M, 5) or None)}`` for the slots this process saw, and the examples that
    failed to decode. With ``masks`` (a ``foreground.MaskReader``), ``figures`` holds the
    masking experiment's ``FIGURES`` of each of the first ``topk`` slots of a row (the top
    examples; NaN elsewhere and for images without a mask).

    With ``log``, resumes from its last checkpoint (``plan`` must start there: see
    ``MapsLog.progress``) and checkpoints every ``every`` batches."""
    state, pieces = log.load() if log is not None else (MapsProgress(), {})
    pieces = {i: pieces.get(i, []) for i in tables}
    if progress is not None:
        progress.update(state.done)
    new: MapPieces = {i: [] for i in tables}
    start = state.consumed
    pin = scanner.device.type == "cuda"
    trim = Trimmer()
    loader = () if state.finished else make_loader(plan, decoder, transform, workers, pin,
                                                   on_decoded=thumbs, masks=masks)
    for batches, batch in enumerate(loader, start=1):
        trim()
        state.failed.extend(list(s) for s in batch.skipped)
        state.done += len(batch.records)
        state.consumed, state.source_state = batch.consumed, batch.state
        if progress is not None:
            progress.update(len(batch.records))
        if batch.pixels is not None:
            acts = scanner.activations(batch.pixels)
            figures = None if masks is None else masked_figures(scanner, batch, tables, grids,
                                                                topk, acts)
            for index, table in tables.items():
                pos, rows, slots = table.lookup(batch.numbers)
                if len(slots) == 0:
                    continue
                a = acts[index]
                with torch.inference_mode():
                    picked = a[torch.as_tensor(pos, device=a.device), :,
                               torch.as_tensor(rows, device=a.device)]
                    picked = picked.float().cpu().numpy()
                piece = (slots, picked.reshape(len(slots), *grids[index]).astype(np.float32),
                         None if figures is None else figures[index])
                new[index].append(piece)
                pieces[index].append(piece)
        if log is not None and batches % max(1, every) == 0:
            log.save(start, state, new)
            new, start = {i: [] for i in tables}, state.consumed
    if log is not None and not state.finished:
        state.finished = True
        log.save(start, state, new)
    out = {}
    for index, parts in pieces.items():
        rows, cols = grids[index]
        figs = None
        if masks is not None:
            figs = np.concatenate([p[2] for p in parts] if parts else
                                  [np.zeros((0, len(FIGURES)), np.float32)])
        if parts:
            out[index] = (np.concatenate([p[0] for p in parts]),
                          np.concatenate([p[1] for p in parts]), figs)  # float32 pieces
        else:
            out[index] = (np.zeros(0, np.int64), np.zeros((0, rows, cols), np.float32), figs)
    return out, state.failed

