"""Helpers shared by the benchmark scripts: device timing, the measured matmul peak, model
options, process memory. torch is imported where needed (bench_site runs without it).

Importing it puts the checkout it is in first on ``sys.path``: a benchmark run from another
checkout (a worktree of older code, to compare) measures that checkout's ``pipeline``, not the
one the virtual environment's editable install points at. Every benchmark imports it before
``pipeline`` (bench_aliases puts its checkout first itself)."""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parent.parent
if sys.path[:1] != [str(REPO)]:
    sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    import torch


def proc_status_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status, e.g. VmRSS or VmHWM (kB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class MemorySampler:
    """Peaks of this process's and its child processes' anonymous and file-backed resident
    memory (``RssAnon``, ``RssFile`` of /proc/PID/status, in kB), sampled every ``every``
    seconds on a thread while the ``with`` block runs. Resident file pages (a memory-mapped
    file's, shared libraries') are page cache the kernel can drop again; anonymous memory is
    what a process holds. ``peaks``: ``{"main RssAnon": kB, "worker RssFile": kB, ...}``,
    a worker's being the largest any child reached.

    >>> with MemorySampler() as m:
    ...     time.sleep(0.05)
    >>> m.peaks["main RssAnon"] > 0
    True
    """

    def __init__(self, every: float = 0.1) -> None:
        import threading

        self.every, self.peaks = every, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _status(pid: int) -> dict[str, int]:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            return {}
        return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in lines)
                if k in ("RssAnon", "RssFile")}

    def _sample(self) -> None:
        pid = os.getpid()
        kids = []  # the children of every thread of this process, not only the main one
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                kids += [int(x) for x in (task / "children").read_text().split()]
            except OSError:
                continue
        for role, pids in (("main", [pid]), ("worker", kids)):
            for q in pids:
                for k, v in self._status(q).items():
                    self.peaks[f"{role} {k}"] = max(self.peaks.get(f"{role} {k}", 0), v)

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def busy_warning(when: str = "at the start", own: int = 0) -> str:
    """A warning line when other work loads the CPUs (1-minute load average above the core
    count plus ``own``, this run's own busy threads), so that speeds measured now are not
    compared with an idle run's; else "".

    >>> isinstance(busy_warning(), str)
    True
    """
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load <= cores + own:
        return ""
    return (f"WARNING: load average {load:.1f} on {cores} CPUs {when}: other work shares the "
            "machine, so this run's speeds (and ratios between runs) are not comparable")


def sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_dtype(device: torch.device) -> torch.dtype:
    """The dtype the pipeline computes in: bf16 (autocast) on CUDA, float32 elsewhere."""
    import torch

    return torch.bfloat16 if device.type == "cuda" else torch.float32


def matmul_peak(device: torch.device, dtype: torch.dtype | None = None, n: int = 4096,
                reps: int = 10) -> float:
    """Achieved FLOP/s of a large square matmul: this device's practical peak."""
    import torch

    dtype = dtype or peak_dtype(device)
    if device.type == "cpu":
        n = min(n, 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def add_layer_size_options(p: argparse.ArgumentParser) -> None:
    """``--units`` and ``--images``: the layer the label and relations benchmarks time,
    a ViT-B-sized one by default (3,072 units over 10,000 probe images)."""
    p.add_argument("--units", type=int, default=3072, help="units of the layer")
    p.add_argument("--images", type=int, default=10000, help="probe images")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--model/--weights/--model-kwargs, --device and --threads."""
    p.add_argument("--model", help="timm name (default: the demo model)")
    p.add_argument("--weights", default="random")
    p.add_argument("--model-kwargs", nargs="*", default=[])
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)


def load_model(args: argparse.Namespace):
    """The model the options name, on its device: (name, weights, model, spec, device)."""
    import torch

    from pipeline.config import demo_config
    from pipeline.models import create_model, parse_model_kwargs, spec_for
    from pipeline.runtime import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.model:
        name, weights, kwargs = args.model, args.weights, parse_model_kwargs(args.model_kwargs)
    else:
        demo = demo_config().model
        name, weights, kwargs = demo.name, demo.weights, demo.kwargs
    model = create_model(name, weights, kwargs).to(device)
    return name, weights, model, spec_for(model, name, kwargs), device


def timing_stats(layer):
    """Per-unit statistics for timing a recipe's selectivity term where no index exists
    (mean 0, std 1: the cost is the same whatever the values)."""
    import torch

    from pipeline.visualize.objectives import UnitStats

    return UnitStats(torch.zeros(layer.units), torch.ones(layer.units))
