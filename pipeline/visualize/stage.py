"""The visualize stage: every selected unit, in chunks, batched, sharded, resumable.

It runs after the index: recipes use the dataset's image prior (spectrum, colours) and per-unit
statistics, and every image gets its fidelity against the index (``fidelity``). Recipes that
use nothing of the dataset (``needs_index``: e.g. ``paper``) also run without an index, their
images then without fidelity figures."""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline import distributed
from pipeline.config import VisualizeConfig
from pipeline.errors import AtlasError
from pipeline.index.results import LayerIndex, load_examples, require_index
from pipeline.judge import ExampleEmbeddings, load_judge, measure_layer
from pipeline.runtime import Run
from pipeline.store import AtlasStore
from pipeline.visualize.accent import index_seeds, seed_records
from pipeline.visualize.objectives import UnitStats
from pipeline.visualize.optimize import render_features
from pipeline.visualize.prior import ImagePrior
from pipeline.visualize.recipe import Recipe, get_recipes
from pipeline.visualize.writes import BackgroundWrites

CHUNK = 64  # units per chunk file: the unit of resume and of sharding


@dataclass(frozen=True)
class Chunk:
    layer: int
    start: int
    units: tuple[int, ...]


def recipes_for(config: VisualizeConfig) -> list[Recipe]:
    """The config's recipes (``recipe="default,paper"``), ``steps`` overriding each.

    >>> [r.steps for r in recipes_for(VisualizeConfig(recipe="default,paper", steps=8))]
    [8, 8]
    """
    return get_recipes(config.recipe, config.steps)


def needs_index(recipe: Recipe) -> bool:
    """Whether ``recipe``'s images depend on the dataset index: a selectivity term (the
    layer's statistics), a seed image from the dataset, or a parameterization shaped by the
    dataset's spectrum and colours.

    >>> [needs_index(r) for r in recipes_for(VisualizeConfig(recipe="default,paper"))]
    [True, False]
    """
    return (recipe.needs_unit_stats or recipe.param != "pixels"
            or bool(getattr(recipe, "needs_seeds", False)))


def check_options(config: VisualizeConfig, store: AtlasStore | None = None,
                  command: str = "vit-atlas visualize") -> None:
    """The visualize stage's cheap check (no model, no network): the recipes parse; with
    ``store`` (the stage runs without the index stage before it), an index is there for the
    recipes that need one (``needs_index``).

    >>> check_options(VisualizeConfig(recipe="paper"), AtlasStore("/nonexistent"))
    >>> check_options(VisualizeConfig(recipe="default"), AtlasStore("/nonexistent"))
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pipeline.errors.AtlasError: recipe 'default' needs the dataset index ... `--recipe paper`
    """
    try:
        recipes = recipes_for(config)
    except (ValueError, OSError) as exc:
        raise AtlasError(f"bad recipe {config.recipe!r}: {exc}", option="recipe") from None
    needing = [r.name for r in recipes if needs_index(r)]
    if store is None or not needing or store.index_info() is not None:
        return
    raise AtlasError(
        f"recipe {needing[0]!r} needs the dataset index (the layer's statistics of each unit, "
        f"the dataset's image prior) and {store.root} has none. Two ways forward: index a "
        f"dataset first (`vit-atlas index --out {store.root} --dataset SPEC ...` with the "
        f"same model options, then `{command}` again; `vit-atlas build` does both), or use a "
        "recipe without dataset statistics, e.g. `--recipe paper`", option="recipe")


def unit_stats(index: LayerIndex, n_units: int) -> UnitStats:
    """Per-channel dataset mean/std of the whole layer (whatever channels were indexed;
    channels an older index lacks: mean 0, std 1)."""
    mean, std = index.whole_layer()
    out_mean, out_std = torch.zeros(n_units), torch.ones(n_units)
    out_mean[:len(mean)] = torch.as_tensor(mean, dtype=torch.float32)
    out_std[:len(std)] = torch.as_tensor(std, dtype=torch.float32).nan_to_num(1.0)
    return UnitStats(out_mean, out_std)


def fidelity(index: LayerIndex, units: list[int], activations: torch.Tensor,
             scores: torch.Tensor) -> list[dict]:
    """Per unit: its visualization's activation over its best dataset example's score, its
    z-score, and its rank by z-score among every unit of its layer on that image (1 = top;
    tied units share the best rank), whatever channels were indexed.

    ``scores`` ``(B, C)``: every unit of the layer on each unit's visualization.
    """
    stats = unit_stats(index, scores.shape[1])
    known = torch.as_tensor(np.isfinite(index.whole_layer()[1]))
    known = torch.cat([known, torch.zeros(scores.shape[1] - len(known), dtype=torch.bool)])
    z_all = stats.z(scores)[:, known]  # (B, channels with statistics)
    z_own = stats.z(scores)
    of = int(known.sum())
    out = []
    for i, unit in enumerate(units):
        row = index.unit_row(unit)
        z = float(z_own[i, unit])
        if row is None or not known[unit]:
            out.append({"vs_best_example": None, "z": None, "z_rank": None, "of": of})
            continue
        best = float(index.top_scores[row, 0])
        out.append({
            "vs_best_example": (float(activations[i]) / best
                                if np.isfinite(best) and best > 0 else None),
            "z": z if np.isfinite(z) else None,
            "z_rank": int((z_all[i] > z_own[i, unit]).sum()) + 1,
            "of": of,
        })
    return out


def index_digest(index: LayerIndex, prior: ImagePrior | None, judge: str | None = None) -> str:
    """What a layer's images and figures depend on in the index (the whole layer's statistics
    and the dataset's image prior, not which channels were indexed) and the judge that
    measured them: a chunk made against another index or judge is redone."""
    h = hashlib.sha256(str(judge).encode())
    for array in index.whole_layer():
        h.update(np.ascontiguousarray(array).tobytes())
    if prior is not None:
        for t in (prior.spectrum, prior.colour_mean, prior.colour_cov):
            h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def plan_chunks(run: Run) -> list[Chunk]:
    """Every selected unit, grouped into fixed chunks of ``CHUNK`` consecutive unit numbers."""
    chunks = []
    for layer in run.layers:
        by_start: dict[int, list[int]] = {}
        for unit in run.units(layer):
            by_start.setdefault(unit - unit % CHUNK, []).append(unit)
        chunks += [Chunk(layer, s, tuple(u)) for s, u in sorted(by_start.items())]
    return chunks


def diversity_results(images: torch.Tensor, activations: torch.Tensor,
                      similarity: torch.Tensor) -> list[tuple[list[np.ndarray], dict]]:
    """Per unit of a render with N > 1 images per unit (rows: each unit's N images in turn;
    ``similarity`` ``(units, N, N)``, ``Rendering.similarity``): its images 1 … N-1 and what
    its result's ``diversity`` says of them: their activations and the mean pairwise
    similarity of all N (``objectives.gram_similarity``).

    >>> sim = torch.tensor([[[1.0, 0.5], [0.5, 1.0]]])
    >>> out = diversity_results(torch.zeros(2, 1, 1, 3, dtype=torch.uint8),
    ...                         torch.tensor([2.0, 1.5]), sim)
    >>> len(out[0][0]), out[0][1]
    (1, {'activations': [1.5], 'similarity': 0.5})
    """
    n = similarity.shape[1]
    pairs = ~torch.eye(n, dtype=torch.bool)
    out = []
    for u in range(similarity.shape[0]):
        rows = range(u * n + 1, (u + 1) * n)
        out.append(([images[r].numpy() for r in rows], {
            "activations": [float(activations[r]) for r in rows],
            "similarity": float(similarity[u][pairs].mean()),
        }))
    return out


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
    if run.config.visualize.batch_size > 0:
        return run.config.visualize.batch_size
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
    """Optimize an image for every selected unit with every recipe of the config; skip
    chunks a previous run finished. Needs the index (the index stage) first."""
    recipes = recipes_for(run.config.visualize)
    indexes: dict[int, LayerIndex] = {}
    prior, judging = None, None
    if any(needs_index(r) for r in recipes) or run.store.index_info() is not None:
        index = require_index(run.store, run.layers)
        indexes = index.layers
        prior = ImagePrior.from_stats(index.image_stats) if index.image_stats.count else None
        judging = _judging(run)
    elif distributed.is_main():
        tqdm.write("visualize: no dataset index: images without fidelity figures")
    if distributed.is_main():
        run.store.write_vis_order([r.name for r in recipes])
    for recipe in recipes:
        _run_recipe(run, recipe, indexes, prior, judging)
    distributed.barrier()


# what a further image's recognisability keeps (its judge and best example are image 0's)
FURTHER_FIGURES = ("trials", "right", "afc", "transfer")


@dataclass
class _Judging:
    """The judge of this run and its embeddings of the index's examples (kept across
    chunks); it measures the stored images and never steers them."""

    embeddings: ExampleEmbeddings
    trials: int

    @property
    def id(self) -> str:
        return f"{self.embeddings.judge.id}/{self.trials}"

    def rate(self, run: Run, index: LayerIndex, layer: int, units: list[int],
             images: torch.Tensor) -> list[dict | None]:
        """Per unit, the recognisability of ``images[i]`` as its reference (or None)."""
        return measure_layer(self.embeddings.judge, self.embeddings, index, units,
                             images.numpy(), f"{run.spec.name}/{layer}", self.trials)

    def measure(self, run: Run, index: LayerIndex, layer: int, units: list[int],
                images: torch.Tensor, fidelities: list[dict]) -> None:
        for f, r in zip(fidelities, self.rate(run, index, layer, units, images), strict=True):
            if r is not None:
                f["recognisability"] = r

    def measure_further(self, run: Run, index: LayerIndex, layer: int, units: list[int],
                        images: torch.Tensor, more: list[tuple[list, dict]]) -> None:
        """With N images per unit (rows: each unit's N in turn), each further image's 2-AFC
        and transferability, on the same trials as image 0's, into its unit's ``diversity``
        (``recognisability``: one entry per image 1 … N-1; judge and best example are image
        0's)."""
        n = len(images) // len(units)
        rated = [self.rate(run, index, layer, units, images[k::n]) for k in range(1, n)]
        for u, (_, figures) in enumerate(more):
            figures["recognisability"] = [
                None if r[u] is None else {key: r[u][key] for key in FURTHER_FIGURES}
                for r in rated]


def _judging(run: Run) -> _Judging | None:
    cfg = run.config.visualize
    spec = cfg.judge_spec(run.config.label.labeler)
    if spec is None:
        if distributed.is_main():
            tqdm.write("visualize: no judge (no labeler, no --judge): recognisability is not "
                       "measured")
        return None
    judge = load_judge(spec, run.config.model.name, run.device)
    examples = load_examples(run.store)
    return None if examples is None else _Judging(ExampleEmbeddings(judge, examples),
                                                  cfg.judge_trials)


def _keeping_done_units(store, chunk: Chunk, recipe: dict, index_id: str,
                        diversity: int = 1) -> Chunk:
    """A chunk redone for units it lacks (other ``channels``) also redoes the units its file
    already holds, so that none drops out (their images come out the same: per-unit seeds)."""
    kept = store.vis_chunk_units(chunk.layer, chunk.start, recipe, index_id, diversity)
    units = tuple(sorted(set(chunk.units) | kept))
    return chunk if units == chunk.units else Chunk(chunk.layer, chunk.start, units)


def _write_chunks(store: AtlasStore, chunks: list[tuple], pool: Executor) -> None:
    """``store.write_vis_chunk`` of each of a batch's chunks in turn, images encoded by
    ``pool``; a failure leaves the chunks after it unwritten, as in line."""
    for args in chunks:
        store.write_vis_chunk(*args, pool=pool)


def _run_recipe(run: Run, recipe: Recipe, indexes: dict[int, LayerIndex],
                prior: ImagePrior | None, judging: _Judging | None = None) -> None:
    n_images = run.config.visualize.diversity  # images per unit
    recipe_dict = recipe.to_dict(n_images)
    store = run.store
    planned = plan_chunks(run)
    # Rank 0 lists the unfinished chunks and every rank takes its share of those, so a rerun
    # after a rank died spreads that rank's leftover work over all ranks.
    digests = {li: index_digest(index, prior, None if judging is None else judging.id)
               for li, index in indexes.items()}
    digests.update({li: None for li in run.layers if li not in indexes})  # no index
    unfinished = distributed.broadcast(
        [_keeping_done_units(store, c, recipe_dict, digests[c.layer], n_images) for c in planned
         if not store.vis_chunk_done(c.layer, c.start, recipe_dict, c.units, digests[c.layer],
                                     n_images)]
        if distributed.is_main() else None)
    todo = distributed.shard(unfinished)
    # a unit's images are always optimized together, in one render (their diversity term)
    batch_size = max(1, auto_batch_size(run, recipe) // n_images)
    total = sum(len(c.units) for c in todo)
    done_before = sum(len(c.units) for c in planned) - sum(len(c.units) for c in unfinished)
    bar = tqdm(total=total, unit="feat", desc=f"visualize [{recipe.name}, {recipe.steps} steps]",
               disable=not distributed.is_main() or total == 0, dynamic_ncols=True)
    if done_before and distributed.is_main():
        tqdm.write(f"visualize [{recipe.name}]: resuming, {done_before} features already done")
    started = time.perf_counter()
    # each batch's chunks are encoded and written while the next one is optimized
    with BackgroundWrites() as writes:
        for group in _batches(todo, batch_size):
            layer = run.spec.layers[group[0].layer]
            index = indexes.get(layer.index)
            stats = None if index is None else unit_stats(index, layer.units)
            units = [u for c in group for u in c.units]
            parts, seeds = [], []  # seeds: what each unit's seed image was (seeded recipes)
            # a chunk larger than a batch: several renders
            for i in range(0, len(units), batch_size):
                part = units[i:i + batch_size]
                found = index_seeds(store, index, layer.index, part,
                                    tuple(run.spec.input_size[1:])) \
                    if recipe.needs_seeds else None
                parts.append(render_features(run.model, run.spec, layer, part, recipe,
                                             run.config.seed, run.device, prior=prior,
                                             stats=stats,
                                             seeds=None if found is None else found.images,
                                             diversity=n_images))
                if found is not None:
                    seeds += seed_records(run.model, run.spec, layer, part, found, run.device)
                bar.update(len(part))
            images = torch.cat([p.images for p in parts])
            attributions = torch.cat([p.attributions for p in parts])
            activation = torch.cat([p.activations for p in parts])
            scores = torch.cat([p.scores for p in parts])
            more: list | None = None  # per unit: its further images and their figures
            if n_images > 1:  # rows: each unit's images in turn; image 0 is the unit's own
                more = diversity_results(images, activation,
                                         torch.cat([p.similarity for p in parts]))
                if judging is not None and index is not None:
                    judging.measure_further(run, index, layer.index, units, images, more)
                images, attributions, activation, scores = (
                    t[::n_images] for t in (images, attributions, activation, scores))
            fidelities = [None] * len(units) if index is None else \
                fidelity(index, units, activation, scores)
            if judging is not None and index is not None:
                judging.measure(run, index, layer.index, units, images, fidelities)
            offset, written = 0, []
            for chunk in group:
                n = len(chunk.units)
                sl = slice(offset, offset + n)
                results = [{"unit": u, "activation": float(a), "fidelity": f}
                           for u, a, f in zip(chunk.units, activation[sl].tolist(),
                                              fidelities[sl], strict=True)]
                for r, seed in zip(results, seeds[sl], strict=False):  # none: unseeded recipe
                    r["seed"] = seed  # {"example", "number", "activation"}
                for r, (_, figures) in zip(results, more[sl] if more else [], strict=False):
                    r["diversity"] = figures
                written.append((chunk.layer, chunk.start, recipe_dict, results,
                                [im.numpy() for im in images[sl]],
                                [a.numpy() for a in attributions[sl]], digests[chunk.layer],
                                None if more is None else [m[0] for m in more[sl]]))
                offset += n
            writes.submit(_write_chunks, store, written)  # the batch's chunks, in order
    bar.close()
    if total and distributed.is_main():
        rate = total / max(time.perf_counter() - started, 1e-9)
        tqdm.write(f"visualize [{recipe.name}]: {total} features in this process, "
                   f"{rate:.2f} features/s")
