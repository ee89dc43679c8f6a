"""Benchmark: do the optional fast paths (``--compile``, ``--channels-last``) pay on this device?

Renders the same features with the default recipe under each variant: eager (the baseline,
measured in the same run), channels-last, regional ``torch.compile`` and both. Each variant
gets a fresh copy of the model; its first call on every layer (where compilation happens) is
timed apart from the steady-state renders. Prints features/s, the ratio to eager, the one-off
overhead, the steps an atlas needs before that overhead is paid back, and the largest pixel
difference from eager's images (float rounding only: the fast paths do not change the recipe).

    python scripts/bench_fast_paths.py                                  # demo model, CPU
    python scripts/bench_fast_paths.py --model vit_small_patch16_224 --features 16 --steps 4
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from benchlib import add_model_options, load_model, sync, timing_stats

from pipeline.runtime import apply_fast_paths
from pipeline.visualize.optimize import render
from pipeline.visualize.recipe import DEFAULT

VARIANTS = {"eager": (False, False), "channels-last": (False, True),
            "compile": (True, False), "compile+channels-last": (True, True)}


def run_variant(base, spec, layers, units, steps, device, use_compile, use_channels_last):
    torch._dynamo.reset()  # no variant reuses another's compiled code
    model = copy.deepcopy(base)
    apply_fast_paths(model, spec, use_compile, use_channels_last)
    recipe = DEFAULT.with_steps(steps)
    sync(device)
    t = time.perf_counter()
    for li in layers:  # first call per layer: compilation (and allocator warm-up)
        render(model, spec, spec.layers[li], units, recipe.with_steps(1), 0, device,
               stats=timing_stats(spec.layers[li]))
    sync(device)
    warm = time.perf_counter() - t
    images = {}
    t = time.perf_counter()
    for li in layers:
        images[li], _ = render(model, spec, spec.layers[li], units, recipe, 0, device,
                               stats=timing_stats(spec.layers[li]))
    sync(device)
    return warm, time.perf_counter() - t, images


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_model_options(p)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--features", type=int, default=64, help="features per layer (one batch)")
    p.add_argument("--layers", default=None, help="e.g. 0,3 (default: middle and last)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args()
    name, weights, model, spec, device = load_model(args)
    n = len(spec.layers)
    layers = ([int(x) for x in args.layers.split(",")] if args.layers
              else sorted({n // 2, n - 1}))
    units = list(range(min(args.features, min(spec.layers[li].units for li in layers))))
    variants = ["eager"] + [v for v in args.variants if v != "eager"]
    print(f"model {name} ({weights}), input {spec.input_size}, layers {layers}, "
          f"{len(units)} features/layer, {args.steps} steps, device {device}, "
          f"threads {torch.get_num_threads()}\n")
    print(f"{'variant':<22} {'feat/s':>8} {'x eager':>8} {'first calls':>12} "
          f"{'break-even':>11} {'max |dpx|':>9}")
    base_rate, base_images = None, None
    for label in variants:
        warm, seconds, images = run_variant(model, spec, layers, units, args.steps, device,
                                            *VARIANTS[label])
        rate = len(layers) * len(units) / seconds
        if base_rate is None:
            base_rate, base_images, base_warm, base_step = rate, images, warm, seconds
            print(f"{label:<22} {rate:>8.3f} {1:>8.3f} {warm:>11.1f}s {'-':>11} {'-':>9}")
            continue
        diff = max(int((images[li].int() - base_images[li].int()).abs().max()) for li in layers)
        step_gain = (base_step - seconds) / args.steps  # seconds saved per step (all layers)
        extra = warm - base_warm
        # optimization steps (of this batch set) that repay the one-off overhead
        breakeven = f"{max(extra, 0) / step_gain:.0f} steps" if step_gain > 0 else "never"
        print(f"{label:<22} {rate:>8.3f} {rate / base_rate:>8.3f} {warm:>11.1f}s "
              f"{breakeven:>11} {diff:>9}")


if __name__ == "__main__":
    main()
