"""The visualize stage: every selected unit, in chunks, batched, sharded, resumable."""

from __future__ import annotations

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


def auto_batch_size(run: Run, recipe: Recipe) -> int:
    """Features per optimization batch: the config's, else sized to the device."""
    if run.config.batch_size > 0:
        return run.config.batch_size
    if run.device.type != "cuda":
        return 32
    free, _ = torch.cuda.mem_get_info(run.device)
    _, h, w = run.spec.input_size
    # Activations of one augmented view through a full forward + backward, with headroom:
    # about 40 floats per token per hidden unit of the widest FFN, in bf16.
    tokens = max(l.grid[0] * l.grid[1] + l.prefix_tokens for l in run.spec.layers)
    width = max(l.units for l in run.spec.layers)
    per_view = 40 * tokens * width * 2 * len(run.spec.layers) / 4
    return int(max(8, min(1024, 0.6 * free / (per_view * recipe.copies))))


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
    mine = distributed.shard(plan_chunks(run))
    todo = [c for c in mine if not store.vis_chunk_done(c.layer, c.start, recipe_dict)]
    batch_size = auto_batch_size(run, recipe)
    total = sum(len(c.units) for c in todo)
    done_before = sum(len(c.units) for c in mine) - total
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

