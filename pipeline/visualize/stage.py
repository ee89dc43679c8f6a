"""The visualize stage: every selected unit, in chunks, batched, sharded, resumable."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from pipeline import distributed
from pipeline.errors import AtlasError
from pipeline.runtime import Run
from pipeline.visualize.optimize import render
from pipeline.visualize.recipe import RECIPES, Recipe

CHUNK = 64  # units per chunk file: the unit of resume and of sharding


@dataclass(frozen=True)
class Chunk:
    layer: int
    start: int
    units: tuple[int, ...]


def recipe_for(run: Run) -> Recipe:
    try:
        base = RECIPES[run.config.recipe]
    except KeyError:
        raise AtlasError(f"unknown recipe '{run.config.recipe}' (choose from "
                         f"{', '.join(RECIPES)})") from None
    return base.with_steps(run.config.steps)


def plan_chunks(run: Run) -> list[Chunk]:
    """Every selected unit, grouped into fixed chunks of ``CHUNK`` consecutive unit numbers."""
    chunks = []
    for layer in run.layers:
        by_start: dict[int, list[int]] = {}
        for unit in run.units(layer):
            by_start.setdefault(unit - unit % CHUNK, []).append(unit)
        chunks += [Chunk(layer, s, tuple(u)) for s, u in sorted(by_start.items())]
    return chunks


def _available_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    pages, page_size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return min(pages * page_size // 4, 8 << 30)  # a quarter of free RAM, at most 8 GiB


def auto_batch_size(run: Run, recipe: Recipe) -> int:
    """Features per optimization batch: the config's, else sized to the device's free memory.

    Small batches waste the device (CPU included: 256 features run ~2x faster per feature
    than 64 on the demo model), so the batch is as large as memory allows, up to 1024 on
    CUDA and 256 on the CPU.
    """
    if run.config.batch_size > 0:
        return run.config.batch_size
    # Saved activations of one augmented view through a full forward + backward: about
    # 40 values per token per FFN unit of the widest FFN, per block, with headroom.
    tokens = max(l.grid[0] * l.grid[1] + l.prefix_tokens for l in run.spec.layers)
    width = max(l.units for l in run.spec.layers)
    bytes_per_value = 2 if run.device.type == "cuda" else 4
    per_view = 10 * tokens * width * bytes_per_value * len(run.spec.layers)
    fits = int(0.6 * _available_memory(run.device) / (per_view * recipe.copies))
    return max(8, min(1024 if run.device.type == "cuda" else 256, fits))


def _batches(chunks: list[Chunk], size: int) -> list[list[Chunk]]:
    """Consecutive chunks of one layer grouped up to ``size`` features (at least one chunk)."""
    out: list[list[Chunk]] = []
    for chunk in chunks:
        last = out[-1] if out else None
        if (last and last[0].layer == chunk.layer
                and sum(len(c.units) for c in last) + len(chunk.units) <= size):
            last.append(chunk)
        else:
            out.append([chunk])
    return out


def run_visualize(run: Run) -> None:
    """Optimize an image for every selected unit; skip chunks a previous run finished."""
    recipe = recipe_for(run)
    recipe_dict = recipe.to_dict()
    store = run.store
    planned = plan_chunks(run)
    # Rank 0 lists the unfinished chunks and every rank takes its share of those, so a rerun
    # after a rank died spreads that rank's leftover work over all ranks.
    unfinished = distributed.broadcast(
        [c for c in planned if not store.vis_chunk_done(c.layer, c.start, recipe_dict)]
        if distributed.is_main() else None)
    todo = distributed.shard(unfinished)
    batch_size = auto_batch_size(run, recipe)
    total = sum(len(c.units) for c in todo)
    done_before = sum(len(c.units) for c in planned) - sum(len(c.units) for c in unfinished)
    bar = tqdm(total=total, unit="feat", desc=f"visualize [{recipe.name}, {recipe.steps} steps]",
               disable=not distributed.is_main() or total == 0, dynamic_ncols=True)
    if done_before and distributed.is_main():
        tqdm.write(f"visualize: resuming, {done_before} features already done")
    started = time.perf_counter()
    for group in _batches(todo, batch_size):
        layer = run.spec.layers[group[0].layer]
        units = [u for c in group for u in c.units]
        images, activations = [], []
        for i in range(0, len(units), batch_size):  # a chunk larger than a batch: several renders
            part = units[i:i + batch_size]
            image, activation = render(run.model, run.spec, layer, part, recipe,
                                       run.config.seed, run.device)
            images.append(image)
            activations.append(activation)
            bar.update(len(part))
        image, activation = torch.cat(images), torch.cat(activations).tolist()
        offset = 0
        for chunk in group:
            n = len(chunk.units)
            results = [{"unit": u, "activation": a}
                       for u, a in zip(chunk.units, activation[offset:offset + n], strict=True)]
            store.write_vis_chunk(chunk.layer, chunk.start, recipe_dict, results,
                                  [im.numpy() for im in image[offset:offset + n]])
            offset += n
    bar.close()
    if total and distributed.is_main():
        rate = total / max(time.perf_counter() - started, 1e-9)
        tqdm.write(f"visualize: {total} features in this process, {rate:.2f} features/s")
    distributed.barrier()

