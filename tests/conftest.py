"""Shared fixtures: a tiny random-weight ViT that runs in milliseconds on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.config import AtlasConfig

TINY_MODEL = "vit_tiny_patch16_224"
TINY_KWARGS = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 2}


@pytest.fixture(scope="session", autouse=True)
def _user_cache(tmp_path_factory):
    """One user cache for the session (the demo builds share their concept embeddings), never
    the developer's own; subprocess builds inherit it."""
    old = os.environ.get("VIT_ATLAS_CACHE")
    os.environ["VIT_ATLAS_CACHE"] = str(tmp_path_factory.mktemp("user-cache"))
    yield
    if old is None:
        del os.environ["VIT_ATLAS_CACHE"]
    else:
        os.environ["VIT_ATLAS_CACHE"] = old


# pytest-xdist runs a process per CPU (README's test command): each then computes on its share
# of the CPUs, and so do the builds it starts (their OMP_NUM_THREADS, unless a test sets it)
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = 2 if _WORKERS == 1 else max(1, (os.cpu_count() or 2) // _WORKERS)
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))


# The test files that take longest (seconds on the 2-CPU CI machine, roughly, all their tests
# and fixtures together). pytest-xdist hands out a file at a time (--dist loadfile) in
# collection order (--no-loadscope-reorder, else it puts files with few tests last): these go
# first, longest first, so that the run does not end on one worker busy with a long file while
# the other has nothing left to do.
SLOW_FILES = {
    "tests/test_benchmarks.py": 250,
    "tests/test_distributed.py": 205,
    "tests/test_demo_atlas.py": 80,
    "tests/pages/test_foreground_site.py": 80,
    "tests/test_fast_paths.py": 85,
    "tests/visualize/test_visualize.py": 85,
    "tests/test_demo_visualizations.py": 75,
    "tests/pages/test_grid_browser.py": 70,
    "tests/relations/test_relations.py": 60,
    "tests/pages/test_bytes.py": 40,
    "tests/pages/test_diversity_site.py": 30,
    "tests/pages/test_findings.py": 25,
    "tests/index/test_index.py": 25,
    "tests/pages/test_kinds_site.py": 25,
    "tests/index/test_index_distributed.py": 20,
}


def pytest_collection_modifyitems(items):
    """The slow files' tests first, longest file first; the rest in collection order."""
    order = {item: i for i, item in enumerate(items)}
    items.sort(key=lambda item: (-SLOW_FILES.get(item.nodeid.split("::")[0], 0), order[item]))


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(THREADS)


@pytest.fixture
def tiny_config(tmp_path) -> AtlasConfig:
    return AtlasConfig().replace(
        model=TINY_MODEL, weights="random", model_kwargs=dict(TINY_KWARGS),
        out=str(tmp_path / "atlas"), dataset="synthetic:64", steps=8, topk=4, workers=0)


def synthetic_unit_stats(model, spec, layer, n: int = 128):
    """Per-unit statistics of ``layer`` over ``n`` procedural images at the model's input size
    (what the index would give the selectivity term)."""
    import numpy as np

    from pipeline.data.synthetic import make_example
    from pipeline.visualize.optimize import measure_unit_stats

    size = spec.input_size[1]
    pixels = [np.array(make_example(i, seed=7, size=size)[0]) for i in range(n)]
    images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255
    return measure_unit_stats(model, spec, layer, images)


def demo_build(out: Path, *args: str, command: str = "build") -> subprocess.CompletedProcess:
    """``python -m pipeline <command> --preset demo --out <out> <args>`` from the repository,
    as a user runs it; fails the test with the end of its output unless it succeeds."""
    proc = subprocess.run([sys.executable, "-m", "pipeline", command, "--preset", "demo",
                           "--out", str(out), *args], cwd=Path(__file__).resolve().parent.parent,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc
