"""Expected compute, time and disk for a full atlas of a model, from counted FLOPs and a rate.

FLOPs are counted exactly per layer (truncated forward + input-gradient backward, on the meta
device: nothing is allocated) with ``torch.utils.flop_counter``. The rate is *measured* here:
a batched default-recipe render on this machine (``--measure``), or a rate you measured with
``scripts/bench_visualize.py`` on your GPU (``--tflops``, achieved, not peak).

    python scripts/estimate_cost.py --measure                 # this machine's CPU
    python scripts/estimate_cost.py --tflops 350 --label H100  # a measured GPU rate
"""

from __future__ import annotations

import argparse
import time

import timm
import torch
from benchlib import timing_stats
from torch.utils.flop_counter import FlopCounterMode

from pipeline.capture import LayerCapture
from pipeline.models import create_model, data_config, spec_for
from pipeline.models.registry import describe
from pipeline.visualize.optimize import render
from pipeline.visualize.recipe import RECIPES

MODELS = ["vit_base_patch16_224", "vit_large_patch16_224", "swin_tiny_patch4_window7_224",
          "vit_base_patch16_clip_quickgelu_224"]
# Measured on the demo atlas (bytes on disk per feature, at 64x64 input): the visualization PNG,
# its page, feature.json, heatmaps and the index. Scaled by (image area)**0.75: PNGs of larger,
# smoother images compress better than their area.
BYTES_PER_FEATURE_AT_64 = 104_600  # demo atlas (format 10, 256 steps): 160.6 MB for 1,536 features


def layer_flops(name: str) -> tuple[object, list[float], float]:
    """Per-layer FLOPs of one optimization step for one image, and of a full forward."""
    with torch.device("meta"):
        model = timm.create_model(name).eval().requires_grad_(False)
    cfg = data_config(model)
    spec = describe(model, name, cfg["input_size"], cfg["mean"], cfg["std"])
    per_layer = []
    for layer in spec.layers:
        x = torch.zeros(1, *spec.input_size, device="meta", requires_grad=True)
        with FlopCounterMode(display=False) as counter:
            with LayerCapture(model, [layer]) as capture:
                acts = capture(x)[layer.index]
            acts[..., 0].mean().backward()
        per_layer.append(counter.get_total_flops())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *spec.input_size, device="meta"))
    return spec, per_layer, counter.get_total_flops()


def measure_rate(batch: int = 32, steps: int = 5) -> float:
    """Achieved FLOP/s of a batched default-recipe render of vit_small on this machine."""
    name = "vit_small_patch16_224"
    model = create_model(name, "random", {"depth": 6})
    spec = spec_for(model, name, {"depth": 6})
    layer = spec.layers[-1]
    recipe = RECIPES["default"].with_steps(steps)
    cpu, stats = torch.device("cpu"), timing_stats(layer)
    render(model, spec, layer, list(range(4)), recipe.with_steps(1), 0, cpu, stats=stats)
    with FlopCounterMode(display=False) as counter:
        render(model, spec, layer, list(range(batch)), recipe.with_steps(1), 0, cpu,
               stats=stats)
    per_step = counter.get_total_flops()
    t = time.perf_counter()
    render(model, spec, layer, list(range(batch)), recipe, 0, cpu, stats=stats)
    return per_step * steps / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="*", default=MODELS)
    p.add_argument("--recipe", default="default")
    p.add_argument("--images", type=int, default=50_000, help="images indexed (ImageNet val)")
    p.add_argument("--measure", action="store_true", help="measure this machine's rate")
    p.add_argument("--tflops", type=float, help="achieved TFLOP/s you measured (e.g. on a GPU)")
    p.add_argument("--label", default="this CPU")
    args = p.parse_args()
    recipe = RECIPES[args.recipe]
    rate = args.tflops * 1e12 if args.tflops else measure_rate()
    print(f"rate: {rate / 1e9:.1f} GFLOP/s achieved ({args.label}); recipe {recipe.name}: "
          f"{recipe.steps} steps x {recipe.copies} cop{'y' if recipe.copies == 1 else 'ies'}")
    print(f"{'model':<38} {'units':>7} {'vis PFLOP':>10} {'index PFLOP':>12} "
          f"{'hours':>9} {'disk GB':>8}")
    for name in args.models:
        spec, per_layer, forward = layer_flops(name)
        vis = sum(f * layer.units * recipe.steps * recipe.copies
                  for f, layer in zip(per_layer, spec.layers, strict=True))
        index = forward * args.images * 2  # scan + second pass bound
        hours = (vis + index) / rate / 3600
        area = spec.input_size[1] * spec.input_size[2] / 64**2
        disk = spec.total_units * BYTES_PER_FEATURE_AT_64 * area**0.75 / 1e9
        print(f"{name:<38} {spec.total_units:>7} {vis / 1e15:>10.2f} {index / 1e15:>12.3f} "
              f"{hours:>9.1f} {disk:>8.1f}")


if __name__ == "__main__":
    main()
