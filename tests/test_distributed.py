"""``torchrun -m pipeline build`` over 2 CPU processes (gloo) gives the single-process atlas,
also when a rank dies and the job is rerun."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.index.results import load_layer_index
from pipeline.store import AtlasStore
from tests.conftest import TINY_KWARGS, TINY_MODEL

REPO = Path(__file__).resolve().parent.parent


def _args(out: Path, channels: str) -> list[str]:
    return ["build", "--model", TINY_MODEL, "--weights", "random", "--model-kwargs",
            *[f"{k}={v}" for k, v in TINY_KWARGS.items()], "--out", str(out),
            "--dataset", "synthetic:40", "--steps", "6", "--topk", "3", "--channels", channels,
            "--workers", "0", "--index-batch-size", "8",
            "--layer-map", "pca"]  # UMAP's JIT would cost each build ~10 s; test_relations has it


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _pixels(store: AtlasStore, layer: int) -> dict[int, np.ndarray]:
    return {u: np.asarray(Image.open(store.vis_dir(layer) / r["image"]), dtype=np.int16)
            for u, r in store.vis_results(layer).items()}


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """The one-process atlas of units 0:130 that the torchrun runs are compared with."""
    out = tmp_path_factory.mktemp("single") / "atlas"
    _run([sys.executable, "-m", "pipeline", *_args(out, "0:130")])
    return out


def _same_index(a: AtlasStore, b: AtlasStore, layer: int) -> None:
    """``b``'s top examples are ``a``'s, unit by unit (``b`` may hold fewer units)."""
    ia, ib = load_layer_index(a, layer), load_layer_index(b, layer)
    rows_a = {int(u): r for r, u in enumerate(ia.units if ia.units is not None
                                               else range(len(ia.top_ids)))}
    units_b = ib.units if ib.units is not None else range(len(ib.top_ids))
    for row, unit in enumerate(units_b):
        np.testing.assert_array_equal(ia.top_ids[rows_a[int(unit)]], ib.top_ids[row])
        np.testing.assert_allclose(ia.top_scores[rows_a[int(unit)]], ib.top_scores[row],
                                   atol=1e-5)


def test_torchrun_two_processes_equal_one(tmp_path, single):
    multi = tmp_path / "multi"
    # a previous (e.g. dead) run left the index and the first chunk of layer 0: it must be
    # reused, not redone (a chunk made against another index would be redone)
    _run([sys.executable, "-m", "pipeline", "index", *_args(multi, "0:130")[1:]])
    _run([sys.executable, "-m", "pipeline", "visualize", *_args(multi, "0:64")[1:],
          "--layers", "0"])
    kept = (AtlasStore(multi).vis_dir(0) / "chunk-00000.json").stat().st_mtime_ns
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
          "-m", "pipeline", *_args(multi, "0:130")])

    a, b = AtlasStore(single), AtlasStore(multi)
    assert (b.vis_dir(0) / "chunk-00000.json").stat().st_mtime_ns == kept
    for layer in (0, 1):
        ra, rb = a.vis_results(layer), b.vis_results(layer)
        assert sorted(ra) == sorted(rb) == list(range(130))
        for unit in ra:
            assert abs(ra[unit]["activation"] - rb[unit]["activation"]) < 1e-4
        pa, pb = _pixels(a, layer), _pixels(b, layer)
        assert max(np.abs(pa[u] - pb[u]).max() for u in pa) <= 2
        _same_index(a, b, layer)
    # the site was built once, with a page and a feature.json per unit
    site = multi / "site"
    pages = list(site.rglob("feature.json"))
    assert len(pages) == 2 * 130
    feature = json.loads(next(iter(pages)).read_text())
    assert feature["model"] == TINY_MODEL and len(feature["top"]["id"]) == 3


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of torchrun worker ``rank`` among the children of ``parent`` (via /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def test_rerun_after_a_rank_dies_resumes_every_ranks_chunks(tmp_path):
    """Rank 1 is killed mid-job; the rerun keeps both ranks' finished chunks, redoes the rest
    and ends with the single-process atlas."""
    single, multi = tmp_path / "single", tmp_path / "multi"
    # 2 layers x 192 units = 6 chunks of 64: rank 0 gets the even ones, rank 1 the odd ones
    args = [*_args(multi, "0:192"), "--steps", "40", "--batch-size", "64"][1:]
    _run([sys.executable, "-m", "pipeline", "index",
          *[str(single) if a == str(multi) else a for a in args]])
    shutil.copytree(single, multi)  # the same index, made once
    _run([sys.executable, "-m", "pipeline", "visualize",
          *[str(single) if a == str(multi) else a for a in args]])
    store = AtlasStore(multi)
    rank0_first, rank1_first = (store.vis_chunk_path(0, 0), store.vis_chunk_path(0, 64))
    rank1_last = store.vis_chunk_path(1, 128)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    job = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            "--nproc-per-node", "2", "-m", "pipeline", "visualize", *args],
                           cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (rank0_first.exists() and rank1_first.exists()):
            assert job.poll() is None and time.monotonic() < deadline, "job ended too early"
            time.sleep(0.05)
        victim = _rank_pid(job.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        assert job.wait(timeout=120) != 0  # torchrun reports the dead worker
    finally:
        job.kill()
        job.wait()
    assert not rank1_last.exists()  # rank 1 died with work left
    vis = store.root / "visualize"
    finished = {p: p.stat().st_mtime_ns for p in vis.rglob("chunk-*.json")}
    assert rank0_first in finished and rank1_first in finished

    plan = [store.vis_chunk_path(layer, start) for layer in (0, 1) for start in (0, 64, 128)]
    unfinished = [p for p in plan if p not in finished]
    rerun = _run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                  "--nproc-per-node", "2", "-m", "pipeline", "visualize", *args])
    # the leftover chunks are shared out afresh: rank 0 takes every other one, its own or not
    share = 64 * len(unfinished[0::2])
    assert f"visualize [default]: {share} features in this process" in rerun.stdout
    for path, mtime in finished.items():  # every rank's finished chunks were kept as is
        assert path.stat().st_mtime_ns == mtime
    a = AtlasStore(single)
    for layer in (0, 1):
        ra, rb = a.vis_results(layer), store.vis_results(layer)
        assert sorted(ra) == sorted(rb) == list(range(192))
        pa, pb = _pixels(a, layer), _pixels(store, layer)
        assert max(np.abs(pa[u] - pb[u]).max() for u in pa) <= 2


def test_two_nodes_through_rendezvous_equal_one_process(tmp_path, single):
    """``--nnodes 2`` over torchrun's c10d rendezvous (as ``srun torchrun`` runs it): ranks
    come from the rendezvous, not from the local rank, and the atlas is the same (as the
    one-process atlas of more units: a unit's image and examples do not depend on the others
    asked for)."""
    import socket

    multi = tmp_path / "multi"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
         "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "t",
         "-m", "pipeline", *_args(multi, "0:70")],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert all(node.returncode == 0 for node in nodes), "\n".join(o[-2000:] for o in outputs)
    assert sum("Atlas built in" in o for o in outputs) == 1  # the site, once
    a, b = AtlasStore(single), AtlasStore(multi)
    for layer in (0, 1):
        assert sorted(b.vis_results(layer)) == list(range(70))
        pa, pb = _pixels(a, layer), _pixels(b, layer)
        assert max(np.abs(pa[u] - pb[u]).max() for u in pb) <= 2
        _same_index(a, b, layer)


def test_bad_timeout_setting_is_a_clear_error(monkeypatch):
    from pipeline import distributed
    from pipeline.errors import AtlasError

    monkeypatch.setenv("VIT_ATLAS_DIST_TIMEOUT_H", "0.5")
    assert distributed._timeout().total_seconds() == 1800
    for bad in ("six", "0", "-1"):
        monkeypatch.setenv("VIT_ATLAS_DIST_TIMEOUT_H", bad)
        with pytest.raises(AtlasError, match="positive number of hours"):
            distributed._timeout()
