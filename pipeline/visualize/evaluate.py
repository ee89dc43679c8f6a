"""How far to trust an atlas's visualizations: per recipe, how strong, selective, smooth and
natural its images are, against the unit's own best dataset example (the Method page defines
every figure).

- ``objective``: the recipe's mean activation over the units it shares with the reference
  recipe (``paper``), divided by the reference's;
- ``beats_best``: the fraction of units whose visualization scores at least their best
  dataset example (``fidelity.vs_best_example >= 1``), per layer and overall;
- ``z_top1`` / ``z_rank_median``: the fraction of units that rank first in their layer by
  z-score on their own visualization, and the median rank (the same figures for the units'
  best dataset examples are the baseline);
- ``tv_px``: the median mean absolute neighbour difference per pixel, beside the indexed
  example images' own; ``flat``: the fraction below a quarter of theirs;
- ``spectral_distance``: the median, over images, of the RMS over radial frequency bands of
  the log ratio between the image's amplitude and the dataset's mean amplitude spectrum;
- ``patch_grid``: the median share of an image's (non-DC) spectral power at the harmonics of
  the patch size, the signature of a pattern tiled patch by patch (ViTs read pixels patch by
  patch, so an image can exploit the grid); the dataset images' share is the baseline.

- ``afc`` (per layer, and ``afc_all``): the mean 2-AFC of the images, measured by a judge
  (``pipeline.judge``), beside the same trials with each unit's best dataset example, that
  example flattened to its mean colour (what colour alone tells the judge) and uniform noise
  as the reference; ``transfer``: the share of units, among those whose
  top examples one class dominates, that the judge classifies as that class (baselines: the
  best examples', noise's).

``vit-atlas evaluate --out DIR`` prints the table and writes ``DIR/evaluate/report.json`` and
``DIR/evaluate/contact_sheet.png``; ``scripts/bench_visualize.py`` adds speed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from pipeline.index.image_stats import amplitude_spectrum
from pipeline.index.results import DatasetIndex, LayerIndex, load_examples, require_index
from pipeline.judge import DEFAULT_TRIALS, ExampleEmbeddings, Judge, measure_layer
from pipeline.models.spec import ModelSpec
from pipeline.store import AtlasStore, atomic_write_bytes, atomic_write_json, encode_png
from pipeline.visualize.objectives import tv_per_pixel
from pipeline.visualize.optimize import layer_scores
from pipeline.visualize.param import from_uint8
from pipeline.visualize.prior import frequency_radius

FLAT = 0.25  # TV/px below this fraction of the dataset images' own reads as flat
SPECTRAL_BANDS = 8


def band_edges(size: tuple[int, int], bands: int = SPECTRAL_BANDS) -> torch.Tensor:
    """Log-spaced radial frequency band edges from one cycle per image to the corner."""
    low, high = 1.0 / max(size), float(frequency_radius(size).max()) + 1e-6
    return torch.logspace(math.log10(low), math.log10(high), bands + 1)


def radial_profile(spectrum: torch.Tensor, bands: int = SPECTRAL_BANDS) -> torch.Tensor:
    """Channel-mean amplitude ``(..., 3, H, W//2+1)`` → mean per radial band ``(..., bands)``
    (the DC term is left out)."""
    h, w = spectrum.shape[-2], 2 * (spectrum.shape[-1] - 1)
    radius = frequency_radius((h, w))
    which = torch.bucketize(radius, band_edges((h, w), bands)) - 1  # -1: DC, below band 0
    amp = spectrum.mean(-3)
    out = []
    for b in range(bands):
        mask = which == b
        out.append(amp[..., mask].mean(-1) if mask.any() else amp.new_full(amp.shape[:-2], 0))
    return torch.stack(out, -1)


def spectral_distance(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per image ``(N, 3, H, W)`` in [0, 1]: RMS over radial bands of ``ln(A_img / A_ref)``,
    ``reference`` the dataset's mean amplitude spectrum ``(3, H, W//2+1)``. 0: the dataset's
    spectrum; ln 2 = 0.69: a factor 2 off in every band.

    >>> x = torch.rand(1, 3, 32, 32)
    >>> round(float(spectral_distance(0.5 * x, amplitude_spectrum(x)[0])[0]), 3)  # ln 2
    0.693
    """
    eps = 1e-6
    mine = radial_profile(amplitude_spectrum(images.float())).clamp(min=eps).log()
    theirs = radial_profile(torch.as_tensor(reference).float()).clamp(min=eps).log()
    return (mine - theirs).pow(2).mean(-1).sqrt()


def patch_grid_share(images: torch.Tensor, patch: tuple[int, int]) -> torch.Tensor:
    """Per image ``(N, 3, H, W)``: the share of its non-DC power at frequencies that are
    multiples of ``1 / patch`` on both axes (a pattern repeated in every patch has all its
    power there; for white noise the share is about 1 / patch area).

    >>> tile = torch.rand(1, 3, 8, 8).repeat(1, 1, 4, 4)  # the same 8 x 8 patch everywhere
    >>> round(float(patch_grid_share(tile, (8, 8))[0]), 3)
    1.0
    """
    h, w = images.shape[-2:]
    power = amplitude_spectrum(images.float()).pow(2).sum(-3)  # (N, H, W//2+1)
    power[:, 0, 0] = 0
    ky = torch.arange(h) % max(1, h // patch[0]) == 0
    kx = torch.arange(w // 2 + 1) % max(1, w // patch[1]) == 0
    lattice = ky[:, None] & kx[None, :]
    return power[:, lattice].sum(-1) / power.flatten(1).sum(-1).clamp(min=1e-12)


@dataclass
class ImageFigures:
    """Figures of a set of images: z-selectivity, smoothness and spectrum (medians)."""

    count: int
    z_top1: float | None
    z_rank_median: float | None
    tv_px: float
    spectral_distance: float
    patch_grid: float


@dataclass
class Recognisability:
    """A judge's figures for a set of reference images: mean 2-AFC per layer and overall,
    and transferability (hits / units with a dominant class)."""

    afc: dict[int, float]
    afc_all: float
    transfer: float | None
    transfer_units: int

    @classmethod
    def of(cls, measured: dict[int, list[dict | None]]) -> Recognisability:
        afc = {li: float(np.mean([r["afc"] for r in rs if r])) for li, rs in measured.items()
               if any(rs)}
        every = [r for rs in measured.values() for r in rs if r]
        hits = [r["transfer"]["hit"] for r in every if r["transfer"]]
        return cls(afc, float(np.mean([r["afc"] for r in every])) if every else float("nan"),
                   float(np.mean(hits)) if hits else None, len(hits))


@dataclass
class RecipeFigures:
    recipe: str
    steps: int
    units: int
    objective: float | None  # mean activation / the reference recipe's, on shared units
    beats_best: dict[int, float]  # layer → fraction with vs_best_example >= 1
    beats_best_all: float
    flat: float  # fraction with TV/px < FLAT × the dataset images' own
    images: ImageFigures
    recognisability: Recognisability | None = None
    # 0: the recipe's visualization; k > 0: its k-th further image (``--diversity N``), whose
    # z figures are not measured (the stage keeps only their own unit's activation)
    image: int = 0

    @property
    def label(self) -> str:
        """The row's name in tables and contact sheets: the recipe's, and "#k" for its image k
        of N (k > 1, the page's numbering).

        >>> RecipeFigures("default", 256, 8, 1.0, {}, 1.0, 0.0,
        ...               ImageFigures(8, None, None, 0.0, 0.0, 0.0), image=1).label
        'default #2'
        """
        return self.recipe if self.image == 0 else f"{self.recipe} #{self.image + 1}"


@dataclass
class Evaluation:
    layers: list[int]
    units: dict[int, list[int]]  # layer → the units every evaluated recipe has
    reference: str | None
    dataset: ImageFigures  # the indexed example images (z figures: each unit's best example)
    recipes: list[RecipeFigures] = field(default_factory=list)
    judge: str | None = None  # the judge of the recognisability figures
    best_examples: Recognisability | None = None  # baselines, on the same trials
    noise: Recognisability | None = None
    # each unit's best example flattened to its mean colour: what colour alone tells the judge
    colour: Recognisability | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """The report as a plain-text table, one row per recipe and one for the baseline."""
        head = (f"{'images':<22} {'steps':>5} {'units':>5} {'objective':>9} {'beats best':>10} "
                f"{'worst layer':>11} {'z top-1':>7} {'z rank':>6} {'TV/px':>6} {'flat':>5} "
                f"{'spectral':>8} {'grid':>5}")
        rows = [head]
        d = self.dataset
        rows.append(f"{'best dataset examples':<22} {'':>5} {d.count:>5} {'':>9} {'':>10} "
                    f"{'':>11} {_f(d.z_top1, 7)} {_f(d.z_rank_median, 6, 1)} {d.tv_px:>6.3f} "
                    f"{'':>5} {d.spectral_distance:>8.3f} {d.patch_grid:>5.3f}")
        for r in self.recipes:
            worst = min(r.beats_best.values()) if r.beats_best else float("nan")
            rows.append(f"{r.label:<22} {r.steps:>5} {r.units:>5} {_f(r.objective, 9)} "
                        f"{r.beats_best_all:>10.2f} {worst:>11.2f} {_f(r.images.z_top1, 7)} "
                        f"{_f(r.images.z_rank_median, 6, 1)} {r.images.tv_px:>6.3f} "
                        f"{r.flat:>5.2f} {r.images.spectral_distance:>8.3f} "
                        f"{r.images.patch_grid:>5.3f}")
        if self.judge is not None:
            rows += ["", f"recognisability, judged by {self.judge}",
                     f"{'images':<22} {'2-AFC':>6} {'worst layer':>11} {'transfer':>8} "
                     f"{'by layer':>8}"]
            named = [("best dataset examples", self.best_examples),
                     ("their mean colours", self.colour), ("uniform noise", self.noise)]
            named += [(r.label, r.recognisability) for r in self.recipes]
            for name, g in named:
                if g is None:
                    continue
                worst = min(g.afc.values()) if g.afc else float("nan")
                by_layer = " ".join(f"{v:.2f}" for v in g.afc.values())
                rows.append(f"{name:<22} {g.afc_all:>6.3f} {worst:>11.3f} "
                            f"{_f(g.transfer, 8)}  {by_layer}")
        return "\n".join(rows)


def _f(value: float | None, width: int, digits: int = 2) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def _load_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _to_input(pixels: list[np.ndarray], size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` images → ``(N, 3, H, W)`` in [0, 1] at the model's input size."""
    x = from_uint8(torch.from_numpy(np.stack(pixels)))
    if tuple(x.shape[-2:]) != size:  # thumbnails of inputs larger than THUMB_MAX
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True)
    return x


def _z_figures(ranks: list[int | None]) -> tuple[float | None, float | None]:
    known = [r for r in ranks if r is not None]
    if not known:
        return None, None
    return float(np.mean([r == 1 for r in known])), float(np.median(known))


def best_example_fidelity(model: torch.nn.Module, spec: ModelSpec, index: DatasetIndex,
                          store: AtlasStore, layer: int, units: list[int],
                          device: torch.device) -> tuple[list[dict], list[np.ndarray]]:
    """The baseline: the fidelity figures of each unit's best dataset example (through the
    visualize stage's own ``fidelity``) and those examples' pixels."""
    from pipeline.visualize.stage import fidelity

    examples = load_examples(store)
    layer_index: LayerIndex = index.layers[layer]
    size = tuple(spec.input_size[1:])
    pixels, keep = [], []
    for u in units:
        row = layer_index.unit_row(u)
        top = layer_index.top(row) if row is not None else []
        path = examples.thumb_path(top[0][0]) if top and examples else None
        if path is not None and path.is_file():
            pixels.append(_load_png(path))
            keep.append(u)
    if not keep:
        return [], []
    x = _to_input(pixels, size).to(device)
    scores = layer_scores(model, spec, spec.layers[layer], x).cpu()
    own = scores.gather(1, torch.tensor(keep)[:, None])[:, 0]
    return fidelity(layer_index, keep, own, scores), pixels


def _measure(judge: Judge, embeddings: ExampleEmbeddings, index: DatasetIndex, spec: ModelSpec,
             units: dict[int, list[int]], images: dict[int, np.ndarray],
             trials: int) -> dict[int, list[dict | None]]:
    return {li: measure_layer(judge, embeddings, index.layers[li], units[li], images[li],
                              f"{spec.name}/{li}", trials) for li in units}


def evaluate_atlas(store: AtlasStore, model: torch.nn.Module, spec: ModelSpec,
                   device: torch.device, *, recipes: list[str] | None = None,
                   reference: str = "paper", judge: Judge | None = None,
                   trials: int = DEFAULT_TRIALS) -> Evaluation:
    """Figures for every recipe of the atlas (or ``recipes``), over the units they share, and
    with a ``judge`` their recognisability beside the best examples' and noise's;
    ``vit-atlas evaluate --out DIR`` calls it on the atlas's own model
    (tests/visualize/test_evaluate.py shows it on a small atlas)."""
    names = recipes or store.vis_recipes()
    if not names:
        raise ValueError(f"{store.root} has no visualizations to evaluate")
    layers = [i for i in range(len(spec.layers))
              if all(store.vis_results(i, n) for n in names)]
    index = require_index(store, layers)
    size = tuple(spec.input_size[1:])
    reference_spectrum = torch.as_tensor(index.image_stats.spectrum)
    results = {n: {li: store.vis_results(li, n) for li in layers} for n in names}
    units = {li: sorted(set.intersection(*(set(results[n][li]) for n in names)))
             for li in layers}

    # The dataset: every indexed example thumbnail for TV and spectrum; best examples for z.
    examples = load_examples(store)
    thumbs = [p for p in (examples.thumb_path(i) for i in range(len(examples.ids)))
              if p is not None and p.is_file()] if examples else []
    data_x = _to_input([_load_png(p) for p in thumbs], size) if thumbs else None
    ranks, best_pixels = [], {}
    for li in layers:
        fid, pixels = best_example_fidelity(model, spec, index, store, li, units[li], device)
        ranks += [f["z_rank"] for f in fid]
        best_pixels[li] = pixels
    z_top1, z_median = _z_figures(ranks)
    data_tv = float(tv_per_pixel(data_x).median()) if data_x is not None else float("nan")
    data_spec = (float(spectral_distance(data_x, reference_spectrum).median())
                 if data_x is not None else float("nan"))
    grid = spec.layers[0].grid
    patch = (size[0] // grid[0], size[1] // grid[1])
    data_grid = (float(patch_grid_share(data_x, patch).median())
                 if data_x is not None else float("nan"))
    evaluation = Evaluation(layers, units, reference if reference in names else None,
                            ImageFigures(len(thumbs), z_top1, z_median, data_tv, data_spec,
                                         data_grid))
    embeddings = None
    if judge is not None and examples is not None:
        embeddings = ExampleEmbeddings(judge, examples)
        evaluation.judge = judge.id
        # units whose best example has a thumbnail (best_example_fidelity's ``keep``)
        with_best = {li: [u for u in units[li] if _best_number(index.layers[li], u, examples)
                          is not None] for li in layers}
        evaluation.best_examples = Recognisability.of(_measure(
            judge, embeddings, index, spec, with_best,
            {li: np.stack(best_pixels[li]) if best_pixels[li] else None for li in layers},
            trials))
        evaluation.colour = Recognisability.of(_measure(
            judge, embeddings, index, spec, with_best,
            {li: flat_colour(np.stack(best_pixels[li])) if best_pixels[li] else None
             for li in layers}, trials))
        rng = np.random.default_rng(0)
        noise = {li: rng.integers(0, 256, (len(units[li]), *size, 3), dtype=np.uint8)
                 for li in layers}
        evaluation.noise = Recognisability.of(_measure(judge, embeddings, index, spec, units,
                                                       noise, trials))

    for name, image in [(n, k) for n in names for k in range(1 + _further(results[n]))]:
        acts, beats, ranks, images, steps, by_layer = [], {}, [], [], 0, {}
        for li in layers:
            rows = [_as_image(results[name][li][u], image, index.layers[li], u)
                    for u in units[li]]
            steps = int(rows[0]["recipe"].get("steps", 0)) if rows else steps
            fid = [r.get("fidelity") or {} for r in rows]
            vs = [f.get("vs_best_example") for f in fid]
            beats[li] = float(np.mean([v is not None and v >= 1 for v in vs])) if vs else 0.0
            ranks += [f.get("z_rank") for f in fid]
            acts += [r["activation"] for r in rows]
            folder = store.vis_dir(li, name)
            by_layer[li] = [_load_png(folder / r["image"]) for r in rows]
            images += by_layer[li]
        x = _to_input(images, size)
        judged = None
        if embeddings is not None:
            judged = Recognisability.of(_measure(
                judge, embeddings, index, spec, units,
                {li: np.stack(by_layer[li]) if by_layer[li] else None for li in layers},
                trials))
        tv = tv_per_pixel(x)
        objective = None
        if evaluation.reference:
            ref = [results[reference][li][u]["activation"] for li in layers for u in units[li]]
            objective = float(np.mean(acts) / np.mean(ref)) if np.mean(ref) > 0 else None
        z_top1, z_median = _z_figures(ranks)
        total = sum(len(units[li]) for li in layers)
        evaluation.recipes.append(RecipeFigures(
            recipe=name, steps=steps, units=total, objective=objective, beats_best=beats,
            beats_best_all=float(np.average(list(beats.values()),
                                            weights=[len(units[li]) for li in layers])),
            flat=float((tv < FLAT * data_tv).float().mean()),
            images=ImageFigures(total, z_top1, z_median, float(tv.median()),
                                float(spectral_distance(x, reference_spectrum).median()),
                                float(patch_grid_share(x, patch).median())),
            recognisability=judged, image=image))
    return evaluation


def _further(results: dict[int, dict[int, dict]]) -> int:
    """How many further images (``--diversity N``: N - 1) every unit of a recipe has."""
    counts = [len((r.get("diversity") or {}).get("images") or [])
              for by_unit in results.values() for r in by_unit.values()]
    return min(counts, default=0)


def _as_image(result: dict[str, Any], image: int, index: LayerIndex, unit: int) -> dict:
    """A unit's result as image ``image`` sees it: the result itself for 0; for a further
    image, its file, its activation and its strength against the unit's best dataset example
    (as the stage's ``fidelity`` computes it; no z figures)."""
    if image == 0:
        return result
    div = result["diversity"]
    activation = float(div["activations"][image - 1])
    row = index.unit_row(unit)
    best = float(index.top_scores[row, 0]) if row is not None else float("nan")
    return {"recipe": result["recipe"], "image": div["images"][image - 1],
            "activation": activation,
            "fidelity": {"vs_best_example": activation / best
                         if np.isfinite(best) and best > 0 else None}}


def flat_colour(images: np.ndarray) -> np.ndarray:
    """Each uint8 ``(N, H, W, 3)`` image replaced by a field of its own mean colour.

    >>> flat_colour(np.array([[[[0, 10, 255]], [[255, 10, 0]]]], np.uint8))[0, 1, 0].tolist()
    [128, 10, 128]
    """
    mean = images.reshape(len(images), -1, 3).astype(np.float64).mean(1)
    return np.broadcast_to(np.round(mean).astype(np.uint8)[:, None, None, :],
                           images.shape).copy()


def _best_number(index: LayerIndex, unit: int, examples) -> int | None:
    """The unit's best example number, if its thumbnail exists."""
    row = index.unit_row(unit)
    top = index.top(row) if row is not None else []
    path = examples.thumb_path(top[0][0]) if top else None
    return top[0][0] if path is not None and path.is_file() else None


def contact_sheet(store: AtlasStore, evaluation: Evaluation, path: Path,
                  per_layer: int = 4, tile: int | None = None) -> Path:
    """A PNG grid: one row per sampled unit (``per_layer`` per layer, evenly spread), the unit's
    best dataset example first, then each recipe's visualization; ``tile``: the cell side
    (default: the images' own side up to 128 px, plus a 2 px border)."""
    examples = load_examples(store)
    if tile is None:
        side = int(store.manifest()["model"]["input_size"][-1]) if store.exists() else 64
        tile = min(side, 128) + 2
    names = [r.label for r in evaluation.recipes]
    rows = []
    for li in evaluation.layers:
        units = evaluation.units[li]
        picks = [units[i] for i in np.linspace(0, len(units) - 1, min(per_layer, len(units)),
                                               dtype=int)] if units else []
        index = require_index(store, [li]).layers[li]
        for u in picks:
            row = index.unit_row(u)
            top = index.top(row) if row is not None else []
            best = examples.thumb_path(top[0][0]) if top and examples else None
            tiles = [best] + [store.vis_dir(li, r.recipe) / _as_image(
                store.vis_results(li, r.recipe)[u], r.image, index, u)["image"]
                for r in evaluation.recipes]
            rows.append((f"L{li} u{u}", tiles))
    label_w, head_h = 80, 18
    sheet = Image.new("RGB", (label_w + tile * (len(names) + 1), head_h + tile * len(rows)),
                      "white")
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(["best example", *names]):
        draw.text((label_w + j * tile + 4, 3), title[:14], fill="black")
    for i, (label, tiles) in enumerate(rows):
        y = head_h + i * tile
        draw.text((4, y + tile // 2 - 6), label, fill="black")
        for j, p in enumerate(tiles):
            if p is not None and Path(p).is_file():
                with Image.open(p) as im:
                    sheet.paste(im.convert("RGB").resize((tile - 2, tile - 2),
                                                         Image.Resampling.NEAREST),
                                (label_w + j * tile + 1, y + 1))
    atomic_write_bytes(path, encode_png(np.asarray(sheet)))
    return path


def write_report(store: AtlasStore, evaluation: Evaluation) -> Path:
    """``DIR/evaluate/report.json`` and ``contact_sheet.png``; returns the folder."""
    folder = store.root / "evaluate"
    atomic_write_json(folder / "report.json", evaluation.to_dict(), indent=2)
    contact_sheet(store, evaluation, folder / "contact_sheet.png")
    return folder


__all__ = ["Evaluation", "RecipeFigures", "ImageFigures", "evaluate_atlas", "contact_sheet",
           "spectral_distance", "radial_profile", "patch_grid_share", "write_report"]
