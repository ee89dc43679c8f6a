"""How the diversity weight trades a unit's activation for different images (``--diversity``).

For a bundled model (``--preset demo`` or ``second``), a few units per layer are rendered with
the default recipe once with one image per unit, then with N images per unit at each weight of
``--weights``. Per weight: the mean activation of the N images relative to the unit's one image
(mean over units; and the lowest image's, worst unit), the mean pairwise cosine similarity of
their Gram matrices (the term's own measure) and their mean absolute pixel difference (0-255).
The dataset's image prior is measured on procedural images of the models' generator.

    python scripts/bench_diversity.py --preset demo --weights 0,1,4,16 --sheet sheet.png
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import benchlib  # noqa: F401  (this checkout's pipeline first: benchlib's docstring)
import numpy as np
import torch
from PIL import Image

from pipeline.config import PRESETS
from pipeline.data.synthetic import make_example
from pipeline.models import create_model, spec_for
from pipeline.visualize.optimize import render_features
from pipeline.visualize.prior import ImagePrior
from pipeline.visualize.recipe import get_recipe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    p.add_argument("--recipe", default="default")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--images", type=int, default=2, help="N: images per unit")
    p.add_argument("--weights", default="0,1,4,16")
    p.add_argument("--units-per-layer", type=int, default=4)
    p.add_argument("--sheet", default=None, help="PNG contact sheet (rows: units; per "
                   "weight, the N images)")
    args = p.parse_args()
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    m = PRESETS[args.preset]().model
    model = create_model(m.name, m.weights, m.kwargs)
    spec = spec_for(model, m.name, m.kwargs)
    size = spec.input_size[1]
    pixels = np.stack([np.array(make_example(i, seed=7, size=size)[0]) for i in range(256)])
    prior = ImagePrior.of_images(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255)
    recipe = get_recipe(args.recipe, args.steps)
    weights = [float(w) for w in args.weights.split(",")]
    n = args.images
    rows: dict[float, list] = {w: [] for w in weights}
    sheet: list[list[np.ndarray]] = []
    started = time.perf_counter()
    for layer in spec.layers:
        step = layer.units // args.units_per_layer
        units = [k * step for k in range(args.units_per_layer)]
        one = render_features(model, spec, layer, units, recipe, 0, cpu, prior=prior)
        tiles = [[im.numpy()] for im in one.images]
        for w in weights:
            out = render_features(model, spec, layer, units,
                                  dataclasses.replace(recipe, diversity_weight=w), 0, cpu,
                                  prior=prior, diversity=n)
            acts = out.activations.view(len(units), n)
            ims = out.images.view(len(units), n, *out.images.shape[1:]).int()
            for i, u in enumerate(units):
                pair = [(ims[i, a] - ims[i, b]).abs().float().mean().item()
                        for a in range(n) for b in range(a + 1, n)]
                sim = out.similarity[i][~torch.eye(n, dtype=torch.bool)].mean().item()
                base = float(one.activations[i])
                rows[w].append((layer.index, u, acts[i].mean().item() / base,
                                acts[i].min().item() / base, sim, float(np.mean(pair))))
                tiles[i] += [im.numpy().astype(np.uint8) for im in ims[i]]
        sheet += tiles
    print(f"{args.preset}: recipe {recipe.name} ({recipe.steps} steps), N = {n}, "
          f"{args.units_per_layer} units x {len(spec.layers)} layers, "
          f"{time.perf_counter() - started:.0f} s")
    print("| weight | activation vs N=1 (mean) | lowest image, worst unit | Gram similarity "
          "| pixel difference (0-255) |")
    print("|---|---|---|---|---|")
    for w in weights:
        r = np.array([x[2:] for x in rows[w]])
        print(f"| {w:g} | {r[:, 0].mean():.2f} | {r[:, 1].min():.2f} | {r[:, 2].mean():.3f} "
              f"| {r[:, 3].mean():.1f} |")
    if args.sheet:
        gap = np.full((size, 4, 3), 255, np.uint8)
        lines = [np.concatenate([t for im in row for t in (im, gap)], 1) for row in sheet]
        Image.fromarray(np.concatenate(lines, 0)).save(args.sheet)


if __name__ == "__main__":
    main()
