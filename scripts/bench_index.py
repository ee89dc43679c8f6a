"""Benchmark of the index stage on this machine (CPU unless --device says otherwise).

1. Scan cost vs the bare forward, on the same pre-decoded batches:
   bare     ``model(x)`` (the full forward, no hooks)
   capture  the truncated forward with FFN hooks and the mean-over-patches scores
   index    capture + FAISS heaps, histograms, sums and class means (``Scanner.update``)
   The three are timed batch by batch, interleaved in rotating order, and the medians over
   all batches are compared (robust to other load on a shared machine).
2. Decode throughput: JPEGs from a WebDataset tar through the DataLoader workers (decode +
   eval transform), no model.
3. Peak memory (VmHWM of the main process) and speed of a whole ``run_index`` on
   ``synthetic:N`` for several N, each in a fresh process: memory must not grow with N.

Usage: ``python scripts/bench_index.py [--sizes 1000 5000 20000] [--quick]``. Uses the demo
model (data/demo) when present, else a random ViT of the same shape.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import proc_status_kb

REPO = Path(__file__).resolve().parent.parent

DEMO_SHAPE = {"img_size": 64, "patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 3,
              "num_classes": 12}


def bench_config(out: Path, dataset: str, workers: int, device: str, model: list[str] | None,
                 batch: int | None = None):
    """The demo model, or ``model`` = [name, weights, key=value...] (e.g. a ViT-B on a GPU)."""
    from pipeline.config import AtlasConfig, demo_config
    from pipeline.models import parse_model_kwargs

    if model:
        cfg = AtlasConfig().replace(
            model=model[0], weights=model[1] if len(model) > 1 else "random",
            model_kwargs=parse_model_kwargs(model[2:]), dataset=dataset, out=str(out),
            workers=workers, device=device)
    else:
        try:
            cfg = demo_config(out=str(out), dataset=dataset, workers=workers, device=device)
        except Exception:  # no demo model in this checkout: same shape, random weights
            cfg = AtlasConfig().replace(
                model="vit_tiny_patch16_224", weights="random", model_kwargs=dict(DEMO_SHAPE),
                dataset=dataset, out=str(out), topk=12, index_batch_size=128, workers=workers,
                device=device)
    return cfg.replace(index_batch_size=batch) if batch else cfg


# -- 1. scan vs bare forward ----------------------------------------------------------------
def bench_scan(args) -> dict:
    """Per-batch timings, the three variants interleaved batch by batch in rotating order,
    so that other load on the machine hits all three alike; medians over all samples."""
    import torch
    from benchlib import matmul_peak, peak_dtype, sync
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.data.sources import open_source
    from pipeline.index.loader import BatchPlan, make_loader
    from pipeline.index.scan import Scanner
    from pipeline.models import eval_transform
    from pipeline.runtime import prepare

    with tempfile.TemporaryDirectory() as tmp:
        cfg = bench_config(Path(tmp) / "atlas", f"synthetic:{args.images}", args.workers,
                           args.device, args.model, args.batch)
        run = prepare(cfg)
    model, device = run.model, run.device
    icfg = cfg.index
    source = open_source(icfg.dataset, icfg.split, run.spec.input_size[-1])
    transform = eval_transform(model, cfg.model.kwargs)
    plan = BatchPlan(source, icfg.batch_size)
    batches = [(b.pixels, b.numbers, b.labels)
               for b in make_loader(plan, source.decoder, transform, args.workers)
               if len(b.numbers) == icfg.batch_size]  # full batches only
    layers = [run.spec.layers[i] for i in run.layers]
    units = {layer.index: run.units(layer.index) for layer in layers}
    offset = [0]

    def bare(x, numbers, labels) -> None:  # in the scan's precision (bf16 autocast on CUDA)
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                    enabled=device.type == "cuda"):
            model(x.to(device, non_blocking=True))

    def capture(x, numbers, labels) -> None:
        with cap:  # hooks on only while it runs: the bare forward must not see them
            cap.scores(x)

    def index(x, numbers, labels) -> None:
        with idx:
            idx.update(x, numbers + offset[0], labels)

    variants = {"bare": bare, "capture": capture, "index": index}
    names = list(variants)
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    cap = Scanner(model, layers, units, icfg.topk, device)
    idx = Scanner(model, layers, units, icfg.topk, device, 12)
    for x, numbers, labels in batches[:2]:  # warm-up, and the histograms find their range
        for fn in variants.values():
            fn(x, numbers, labels)
    offset[0] = args.images
    for rep in range(args.repeats):
        for b, (x, numbers, labels) in enumerate(batches):
            shift = (rep + b) % 3
            for name in names[shift:] + names[:shift]:
                t, c = time.perf_counter(), time.process_time()
                variants[name](x, numbers, labels)
                sync(device)
                times[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
        offset[0] += args.images
    sync(device)
    med = {k: statistics.median(v) for k, v in times.items()}
    with FlopCounterMode(display=False) as counter, cap:  # the index's truncated forward
        cap.scores(batches[0][0][:1])
    peak = matmul_peak(device)
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    bs = icfg.batch_size
    return {"model": f"{cfg.model.name} {cfg.model.kwargs}", "samples": len(times["bare"]),
            "batch": bs, "layers": len(layers), "units": sum(len(u) for u in units.values()),
            "threads": torch.get_num_threads(),
            **{f"{k}_img_s": bs / v for k, v in med.items()},
            "index_over_bare": med["index"] / med["bare"],
            "peak_dtype": str(peak_dtype(device)).removeprefix("torch."), "peak_gflops": peak / 1e9,
            "index_peak_fraction": counter.get_total_flops() * bs / med["index"] / peak,
            "index_over_capture": med["index"] / med["capture"],
            "cpu_index_over_bare": cpu_med["index"] / cpu_med["bare"],
            "cpu_index_over_capture": cpu_med["index"] / cpu_med["capture"],
            "quartiles": {k: [round(bs / q, 1) for q in statistics.quantiles(v, n=4)[::-1]]
                          for k, v in times.items()}}


# -- 2. decode throughput -------------------------------------------------------------------
def bench_decode(args) -> dict:
    import io
    import tarfile

    from pipeline.data import synthetic
    from pipeline.data.sources import open_source
    from pipeline.index.loader import BatchPlan, make_loader
    from pipeline.models import create_model, eval_transform

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "wds"
        root.mkdir()
        with tarfile.open(root / "bench-validation-0000.tar", "w") as tar:
            for i, (_, image, label) in enumerate(
                    synthetic.iter_examples(args.decode_images, size=args.decode_size)):
                buf = io.BytesIO()
                image.save(buf, format="JPEG", quality=90)
                for ext, data in (("jpg", buf.getvalue()), ("cls", str(label).encode())):
                    info = tarfile.TarInfo(f"img{i:06d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        model = create_model("vit_tiny_patch16_224", "random", DEMO_SHAPE)
        transform = eval_transform(model, DEMO_SHAPE)
        for workers in sorted({0, args.workers}):
            source = open_source(f"webdataset:{root}", "validation")
            t = time.perf_counter()
            n = sum(len(b.numbers) for b in make_loader(
                BatchPlan(source, 128), source.decoder, transform, workers))
            out[f"workers={workers}"] = n / (time.perf_counter() - t)
    return {"jpeg_size": args.decode_size, "images": args.decode_images, "img_s": out}


# -- 3. memory vs number of images ----------------------------------------------------------
def child(n: int, out: str, workers: int, device: str) -> None:
    from pipeline.index import maps_pass as maps_pass_module
    from pipeline.index import stage
    from pipeline.index.stage import run_index
    from pipeline.runtime import prepare

    run = prepare(bench_config(Path(out), f"synthetic:{n}", workers, device, None))
    base = proc_status_kb("VmRSS") / 1024
    scan_peak: list[float] = []
    maps = maps_pass_module.maps_pass

    def timed_maps(*a, **kw):  # the peak so far is the scan's (pass 1) peak
        scan_peak.append(proc_status_kb("VmHWM") / 1024)
        return maps(*a, **kw)

    maps_pass_module.maps_pass = timed_maps
    stage.maps_pass = timed_maps
    t = time.perf_counter()
    run_index(run)
    dt = time.perf_counter() - t
    print(json.dumps({"images": n, "seconds": dt, "img_s": n / dt,
                      "rss_after_model_mb": base, "scan_peak_rss_mb": scan_peak[0],
                      "peak_rss_mb": proc_status_kb("VmHWM") / 1024}))


def bench_memory(args) -> list[dict]:
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(n), tmp, "--workers", str(args.workers),
                 "--device", args.device],
                capture_output=True, text=True, cwd=REPO)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-3000:])
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"   synthetic:{n:>6}: {r['img_s']:5.0f} img/s end to end; RSS after model "
                  f"{r['rss_after_model_mb']:.0f} MB, peak during scan "
                  f"{r['scan_peak_rss_mb']:.0f} MB, peak overall {r['peak_rss_mb']:.0f} MB",
                  flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    p.add_argument("--images", type=int, default=768, help="images for the scan comparison")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--decode-images", type=int, default=1000)
    p.add_argument("--decode-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", nargs="+", metavar="NAME [WEIGHTS [KEY=VALUE ...]]",
                   help="scan section: this model instead of the demo, e.g. "
                   "vit_base_patch16_224 random")
    p.add_argument("--batch", type=int, help="scan section: images per batch")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--sections", nargs="+", default=["scan", "decode", "memory"],
                   choices=["scan", "decode", "memory"])
    p.add_argument("--child", nargs=2, metavar=("N", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1], args.workers, args.device)
        return
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.quick:
        args.sizes, args.images, args.repeats, args.decode_images = [200, 600], 512, 2, 200
    print(f"bench_index on {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if "scan" in args.sections:
        report_scan(bench_scan(args))
    if "decode" in args.sections:
        report_decode(bench_decode(args))
    if "memory" in args.sections:
        report_memory(args)


def report_scan(scan: dict) -> None:
    print(f"\n1. scan vs bare forward, {scan['samples']} batches of {scan['batch']} pre-decoded "
          f"images each ({scan['layers']} layers / {scan['units']} units, {scan['threads']} "
          f"torch threads; {scan['model']})")
    for k in ("bare", "capture", "index"):
        q = scan["quartiles"][k]
        print(f"   {k:8s} {scan[f'{k}_img_s']:8.1f} img/s median   (quartiles {q[0]} .. {q[2]})")
    print(f"   index / bare    = {scan['index_over_bare']:.3f} wall, "
          f"{scan['cpu_index_over_bare']:.3f} CPU time  (target <= 1.15)")
    print(f"   index / capture = {scan['index_over_capture']:.3f} wall, "
          f"{scan['cpu_index_over_capture']:.3f} CPU time  (heaps + histograms + sums)")
    print(f"   index at {100 * scan['index_peak_fraction']:.1f}% of the measured "
          f"{scan['peak_dtype']} matmul peak ({scan['peak_gflops']:.0f} GFLOP/s)")


def report_decode(dec: dict) -> None:
    print(f"\n2. decode + eval transform, {dec['images']} JPEGs of {dec['jpeg_size']} px:")
    for k, v in dec["img_s"].items():
        print(f"   {k}: {v:.1f} img/s")


def report_memory(args) -> None:
    print("\n3. run_index on synthetic:N (fresh process each):")
    mem = bench_memory(args)
    lo, hi = mem[0], mem[-1]
    print(f"   {hi['images'] / lo['images']:.0f}x the images: peak RSS ratio "
          f"{hi['peak_rss_mb'] / lo['peak_rss_mb']:.3f} overall, "
          f"{hi['scan_peak_rss_mb'] / lo['scan_peak_rss_mb']:.3f} during the scan")


if __name__ == "__main__":
    main()
