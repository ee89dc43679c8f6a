"""The relations stage on tiny indexed atlases: similar units against brute-force correlation,
across layers and atlases, layer maps, resume and errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import AtlasError
from pipeline.index.results import load_probe
from pipeline.index.stage import run_index
from pipeline.relations.similar import search, standardize
from pipeline.relations.stage import check_same_probe, relate, relate_atlases, similar_across
from tests.index.support import tiny_run

REPO = Path(__file__).resolve().parents[2]
K = 5


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    """A tiny indexed atlas (2 layers × 192 units, 60 probe images), related with PCA maps."""
    run = tiny_run(tmp_path_factory.mktemp("rel") / "a", "synthetic:60")
    run_index(run)
    relate(run.store, k=K, method="pca")
    return run


def _correlations(store, layer):
    p = load_probe(store, layer)
    return p.units, np.corrcoef(p.profiles.astype(np.float64).T)  # (units, units)


def _brute_force(corr_row: np.ndarray, k: int):
    """Rows and scores of the top-k of one unit's correlations, sorted by (-score, row)."""
    c = np.nan_to_num(corr_row, nan=0.0)
    order = np.lexsort((np.arange(len(c)), -c))[:k]
    return order, c[order]


def _check_group(entries, units_b, corr, k):
    """``entries`` ({"unit", "score"}, best first) equal the brute-force top-k of ``corr``
    (the unit's correlations with ``units_b``): scores to float error, ids but for near-ties."""
    got_units = [e["unit"] for e in entries]
    got = np.array([e["score"] for e in entries])
    rows, want = _brute_force(corr, k)
    np.testing.assert_allclose(got, want, atol=2e-4)  # float16 profiles, 4-digit JSON
    for g, w, s in zip(got_units, units_b[rows].tolist(), want, strict=True):
        if g != w:  # only a near-tie may swap
            assert abs(corr[np.flatnonzero(units_b == g)[0]] - s) < 1e-4


def test_similar_units_equal_brute_force_correlation(atlas):
    store = atlas.store
    units, corr = _correlations(store, 0)
    p0, p1 = load_probe(store, 0), load_probe(store, 1)
    cross = np.corrcoef(p0.profiles.astype(np.float64).T, p1.profiles.astype(np.float64).T)
    n = len(units)
    cross = cross[:n, n:]  # layer 0 units × layer 1 units
    similar = store.similar(0)
    assert sorted(similar) == units.tolist()
    for u in range(0, n, 7):
        own = [e for e in similar[u] if e["layer"] == 0]
        other = [e for e in similar[u] if e["layer"] == 1]
        assert [e["layer"] for e in similar[u]] == [0] * K + [1] * K  # own layer first
        assert u not in [e["unit"] for e in own]
        assert all(e["model"] == atlas.config.model.name for e in similar[u])
        row = corr[u].copy()
        row[u] = -np.inf  # never itself
        _check_group(own, units, row, K)
        _check_group(other, p1.units, cross[u], K)
        scores = [e["score"] for e in own]
        assert scores == sorted(scores, reverse=True)


def test_search_is_exact_inner_product():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(200, 40)).astype(np.float32) @ rng.normal(size=(40, 300)) \
        .astype(np.float32)
    x = standardize(base)  # profiles of 300 units over 200 images -> (300, 200)
    rows, scores = search(x, x, 7, exclude_self=True)
    c = np.corrcoef(base.T.astype(np.float64))
    np.fill_diagonal(c, -np.inf)
    want = np.argsort(-c, axis=1, kind="stable")[:, :7]
    np.testing.assert_allclose(scores, np.take_along_axis(c, want, 1), atol=1e-5)
    assert (rows == want).mean() > 0.99
    constant = standardize(np.ones((5, 2)))
    assert not constant.any()  # a unit that never varies correlates 0 with everything


def test_layer_map_and_typical_units(atlas, tmp_path):
    store = atlas.store
    m = store.layer_map(1)
    assert m["method"] == "pca" and len(m["units"]) == 192
    xy = np.array([[u["x"], u["y"]] for u in m["units"]])
    assert xy.min() >= 0 and xy.max() <= 1 and np.isclose(xy.max(0), 1).any()
    typical = [t["unit"] for t in m["typical"]]
    assert len(typical) == 8 == len(set(typical)) and set(typical) <= set(range(192))
    sizes = [t["size"] for t in m["typical"]]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == 192
    assert 0 < m["preservation"] <= 1
    info = store.relations_info()
    assert info["k"] == K and info["layers"] == [0, 1] and info["probe_images"] == 60
    assert set(info["maps"]) == {"0", "1"}


def test_umap_map_is_deterministic(atlas, tmp_path):
    """The same index gives the same UMAP map (seeded; one process)."""
    import shutil

    maps = []
    for name in ("x", "y"):
        copy = tmp_path / name
        shutil.copytree(atlas.store.root, copy, ignore=shutil.ignore_patterns("relations"))
        other = tiny_run(copy, "synthetic:60", fresh=False)
        relate(other.store, [1], k=K, method="umap")
        maps.append(other.store.layer_map(1))
    assert maps[0] == maps[1] and maps[0]["method"] == "umap"
    assert maps[0]["preservation"] > atlas.store.layer_map(1)["preservation"]  # than PCA


def test_rerun_skips_finished_layers_and_a_changed_index_redoes_them(atlas, tmp_path, capfd):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(atlas.store.root, copy)
    run = tiny_run(copy, "synthetic:60", fresh=False)
    path = run.store.relations_path(0)
    before = path.stat().st_mtime_ns
    relate(run.store, k=K, method="pca")
    assert path.stat().st_mtime_ns == before and "nothing to do" in capfd.readouterr().err
    run.store.relations_path(1).unlink()
    relate(run.store, k=K, method="pca")
    assert path.stat().st_mtime_ns == before and run.store.relations_path(1).is_file()
    # another index (other --topk): the relations are stale until redone
    changed = tiny_run(copy, "synthetic:60", fresh=False, topk=3)
    run_index(changed)
    assert changed.store.similar(0) == {} and changed.store.layer_map(0) is None  # stale
    relate(changed.store, k=K, method="pca")  # redoes both layers
    assert path.stat().st_mtime_ns != before
    assert changed.store.similar(0) == atlas.store.similar(0)  # same probe profiles


KILL_SCRIPT = """
import sys, time
from pathlib import Path
from pipeline.relations import stage
from pipeline.store import AtlasStore
store = AtlasStore(Path(sys.argv[1]))
write = store.write_relations
def slow(layer, *a, **kw):
    write(layer, *a, **kw)
    time.sleep(60)  # killed here, after the first layer
store.write_relations = slow
stage.relate(store, k=5, method="pca")
"""


def test_kill_9_then_rerun_finishes(atlas, tmp_path):
    import shutil

    out = tmp_path / "killed"
    shutil.copytree(atlas.store.root, out, ignore=shutil.ignore_patterns("relations"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "relations" / "L000.npz").is_file():
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (out / "relations" / "L001.npz").exists()
    run = tiny_run(out, "synthetic:60", fresh=False)
    relate(run.store, k=K, method="pca")
    for layer in (0, 1):
        assert run.store.similar(layer) == atlas.store.similar(layer)
        assert run.store.layer_map(layer) == atlas.store.layer_map(layer)


def test_across_atlases(atlas, tmp_path):
    """Another model indexed over the same probe set: its units join each unit's groups."""
    other = tiny_run(tmp_path / "b", "synthetic:60", model="deit_tiny_patch16_224", seed=1,
                     layers="1")
    run_index(other)
    got = similar_across(atlas.store, other.store, k=3)
    assert sorted(got) == [0, 1]
    pa, pb = load_probe(atlas.store, 0), load_probe(other.store, 1)
    n = pa.profiles.shape[1]
    cross = np.corrcoef(pa.profiles.astype(np.float64).T, pb.profiles.astype(np.float64).T)
    for u in (0, 50, 191):
        entries = got[0][u]
        assert {e["model"] for e in entries} == {"deit_tiny_patch16_224"}
        assert {e["layer"] for e in entries} == {1}
        _check_group(entries, pb.units, cross[u, n:], 3)
    relate_atlases(atlas.store, other.store, k=3)
    mine = atlas.store.similar(0)
    assert [e["model"] for e in mine[5]][-3:] == ["deit_tiny_patch16_224"] * 3
    assert mine[5][-3:] == got[0][5]
    theirs = other.store.similar(1)
    assert theirs == {}  # the other atlas was never related itself ...
    relate(other.store, k=3, method="pca")
    theirs = other.store.similar(1)  # ... once it is, our units follow its own
    assert [e["model"] for e in theirs[0]] == ["deit_tiny_patch16_224"] * 3 + \
        [atlas.config.model.name] * 6
    different = tiny_run(tmp_path / "c", "synthetic:60", probe_images=30)
    run_index(different)
    with pytest.raises(AtlasError, match="different probe sets"):
        check_same_probe(atlas.store, different.store)
    shutil_rm = different.store.examples_path
    data = json.loads(shutil_rm.read_text())
    data["dataset"] = "synthetic:61"
    shutil_rm.write_text(json.dumps(data))
    with pytest.raises(AtlasError, match="different datasets"):
        check_same_probe(atlas.store, different.store)


def test_errors_say_which_command_to_run(atlas, tmp_path):
    import shutil

    empty = tiny_run(tmp_path / "empty", "synthetic:60")
    with pytest.raises(AtlasError, match=r"no finished dataset index.*run the index stage"):
        relate(empty.store)
    old = tmp_path / "old"
    shutil.copytree(atlas.store.root, old, ignore=shutil.ignore_patterns("relations", "probe"))
    run = tiny_run(old, "synthetic:60", fresh=False)
    with pytest.raises(AtlasError, match=r"no probe profiles .*rerun the index stage"):
        relate(run.store)
    with pytest.raises(AtlasError, match="layer_map must be one of"):
        relate(atlas.store, method="tsne")


def test_cli_relate(atlas, tmp_path, capfd):
    import shutil

    from pipeline import cli

    out = tmp_path / "cli"
    shutil.copytree(atlas.store.root, out, ignore=shutil.ignore_patterns("relations"))
    assert cli.main(["relate", "--out", str(out), "--similar-k", "2", "--layer-map", "pca",
                     "--device", "cpu"]) == 0
    run = tiny_run(out, "synthetic:60", fresh=False)
    assert len(run.store.similar(0)[0]) == 4 and run.store.relations_info()["k"] == 2
    assert "relate: 2 layers" in capfd.readouterr().err


def test_benchmark_script_runs():
    """scripts/bench_relations.py at tiny settings prints its figures (they are not checked)."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_relations.py"),
                           "--units", "300", "--images", "500", "--index-images", "64",
                           "--repeats", "1"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for text in ("exact search", "verdict:", "reads better:", "quantiles / bare"):
        assert text in proc.stdout, proc.stdout[-2000:]
