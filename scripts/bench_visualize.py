"""Benchmark: the paper's recipe one feature at a time vs the default recipe batched.

Same model, same number of steps, same features (the paper run takes a subset: it is slow).
Prints, for each: features/s, mean objective reached (on the stored, un-augmented image),
smoothness (mean absolute neighbour difference per pixel), the fraction of features whose own
unit is the top-1 unit of its layer, and achieved FLOP/s as a fraction of this device's
measured matmul peak (FLOPs of the truncated forward + input-gradient backward, counted by
``torch.utils.flop_counter``).

    python scripts/bench_visualize.py                      # demo model, CPU
    python scripts/bench_visualize.py --model vit_tiny_patch16_224 --weights random
"""

from __future__ import annotations

import argparse
import time

import torch
from benchlib import add_model_options, load_model, matmul_peak, peak_dtype, sync
from torch.utils.flop_counter import FlopCounterMode

from pipeline.visualize.objectives import tv_per_pixel
from pipeline.visualize.optimize import layer_scores, render
from pipeline.visualize.param import from_uint8
from pipeline.visualize.recipe import DEFAULT, PAPER, Recipe


def step_flops(model, spec, layer, recipe: Recipe, n_features: int, device) -> float:
    """FLOPs of one optimization step for ``n_features`` (counted on a 1-step render)."""
    with FlopCounterMode(display=False) as counter:
        render(model, spec, layer, list(range(n_features)), recipe.with_steps(1), 0, device)
    # the 1-step render also evaluates the clean image once (a forward): subtract it
    with FlopCounterMode(display=False) as clean:
        layer_scores(model, spec, layer, torch.zeros(n_features, *spec.input_size, device=device))
    return counter.get_total_flops() - clean.get_total_flops()


def measure(model, spec, features, recipe: Recipe, batched: bool, device):
    """Render ``features`` [(layer, unit)]; returns rate, objectives, tv, top1, flops."""
    by_layer: dict[int, list[int]] = {}
    for layer, unit in features:
        by_layer.setdefault(layer, []).append(unit)
    objectives, tvs, top1, flops = {}, {}, {}, 0.0
    sync(device)
    t = time.perf_counter()
    for li, units in by_layer.items():
        layer = spec.layers[li]
        groups = [units] if batched else [[u] for u in units]
        for group in groups:
            images, act = render(model, spec, layer, group, recipe, 0, device)
            x = from_uint8(images)
            scores = layer_scores(model, spec, layer, x.to(device)).cpu()
            for i, u in enumerate(group):
                objectives[(li, u)] = float(act[i])
                tvs[(li, u)] = float(tv_per_pixel(x[i:i + 1])[0])
                top1[(li, u)] = int(scores[i].argmax()) == u
    sync(device)
    seconds = time.perf_counter() - t
    for li, units in by_layer.items():
        n = len(units) if batched else 1
        per_step = step_flops(model, spec, spec.layers[li], recipe, n, device)
        flops += per_step * recipe.steps * (1 if batched else len(units))
    return seconds, objectives, tvs, top1, flops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_model_options(p)
    p.add_argument("--steps", type=int, default=100, help="steps for both recipes")
    p.add_argument("--paper-features", type=int, default=4, help="features per layer, paper")
    p.add_argument("--default-features", type=int, default=64, help="features per layer")
    p.add_argument("--layers", default=None, help="layers to sample, e.g. 0,3 (default: first, "
                   "middle, last)")
    args = p.parse_args()
    name, weights, model, spec, device = load_model(args)
    n_layers = len(spec.layers)
    layers = ([int(x) for x in args.layers.split(",")] if args.layers
              else sorted({0, n_layers // 2, n_layers - 1}))
    gen = torch.Generator().manual_seed(0)
    default_features, paper_features = [], []
    for li in layers:
        units = torch.randperm(spec.layers[li].units, generator=gen)[:args.default_features]
        default_features += [(li, int(u)) for u in units]
        paper_features += [(li, int(u)) for u in units[:args.paper_features]]

    dtype = peak_dtype(device)
    peak = matmul_peak(device, dtype)
    print(f"model {name} ({weights}), input {spec.input_size}, layers {layers}, "
          f"{args.steps} steps, device {device}, threads {torch.get_num_threads()}")
    print(f"measured {str(dtype).removeprefix('torch.')} matmul peak: {peak / 1e9:.1f} GFLOP/s\n")

    paper_recipe, default_recipe = PAPER.with_steps(args.steps), DEFAULT.with_steps(args.steps)
    rows = {}
    for label, recipe, feats, batched in [
        ("paper, 1 feature/process", paper_recipe, paper_features, False),
        ("default, batched", default_recipe, default_features, True),
    ]:
        seconds, obj, tv, top1, flops = measure(model, spec, feats, recipe, batched, device)
        rows[label] = (len(feats) / seconds, obj, tv, top1, flops / seconds)
    print(f"{'run':<26} {'feat/s':>8} {'objective':>10} {'obj(common)':>11} {'TV/px':>7} "
          f"{'top-1':>6} {'GFLOP/s':>8} {'% peak':>7}")
    common = set(paper_features)
    for label, (rate, obj, tv, top1, fps) in rows.items():
        mean = sum(obj.values()) / len(obj)
        mean_common = sum(obj[f] for f in common) / len(common)
        print(f"{label:<26} {rate:>8.3f} {mean:>10.4f} {mean_common:>11.4f} "
              f"{sum(tv.values()) / len(tv):>7.4f} {sum(top1.values()) / len(top1):>6.2f} "
              f"{fps / 1e9:>8.1f} {100 * fps / peak:>6.1f}%")
    (pr, pobj, *_), (dr, dobj, *_) = rows.values()
    print(f"\nspeed-up default/paper: {dr / pr:.1f}x features/s; objective on common features: "
          f"paper {sum(pobj[f] for f in common) / len(common):.4f} vs default "
          f"{sum(dobj[f] for f in common) / len(common):.4f}")


if __name__ == "__main__":
    main()
