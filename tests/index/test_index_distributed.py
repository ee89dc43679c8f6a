"""``torchrun --nproc-per-node 2`` (gloo, CPU) gives the same index as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from pipeline.index.results import load_examples, load_image_stats, load_layer_index
from pipeline.index.stage import run_index
from tests.index.support import (
    assert_same_index,
    assert_same_probe,
    tiny_run,
    write_webdataset,
)

REPO = Path(__file__).resolve().parents[2]

# Each rank: AtlasConfig → prepare() → run_index(), for two sources in one process group.
SCRIPT = """
import sys
from pathlib import Path
from pipeline import distributed
from pipeline.index.stage import run_index
from pipeline.runtime import prepare
from tests.index.support import tiny_config

out, wds = Path(sys.argv[1]), sys.argv[2]
run_index(prepare(tiny_config(out / "synthetic", "synthetic:70", index_batch_size=6)))
run_index(prepare(tiny_config(out / "wds", f"webdataset:{wds}", index_batch_size=5,
                              channels="0:40")))
assert distributed.world_size() == 2
"""


def test_two_processes_equal_one(tmp_path):
    wds = write_webdataset(tmp_path / "data", 45, shards=2, broken={7: b"junk", 30: b"GIF89a-cut"})
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "--no-python", sys.executable, "-c", SCRIPT,
         str(tmp_path / "multi"), str(wds)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    cases = [("synthetic", "synthetic:70", {}),
             ("wds", f"webdataset:{wds}", {"channels": "0:40"})]
    torch.set_num_threads(1)  # as the ranks (OMP_NUM_THREADS=1): same kernels, same rounding
    for name, spec, extra in cases:
        single = tiny_run(tmp_path / "single" / name, spec, index_batch_size=16, **extra)
        run_index(single)
        multi = tiny_run(tmp_path / "multi" / name, spec, fresh=False, **extra)
        for index in single.layers:
            a, b = load_layer_index(single.store, index), load_layer_index(multi.store, index)
            # ids identical (a swap is tolerated only between scores equal to float error),
            # scores, mean, max and maps to float tolerance
            assert_same_index(a, b, atol=1e-6)
            assert (a.top_ids == b.top_ids).mean() > 0.99
            assert np.abs(b.hist_counts - a.hist_counts).sum(1).max() <= 2
            np.testing.assert_allclose(b.hist_edges, a.hist_edges, rtol=1e-6)
            np.testing.assert_array_equal(b.top_classes, a.top_classes)
            np.testing.assert_allclose(b.top_class_means, a.top_class_means, atol=1e-6)
            np.testing.assert_array_equal(b.units, a.units)
            # quantile examples: the same intervals and (but where float error moved a score
            # across an edge) the same examples, scores and maps
            np.testing.assert_allclose(b.quantile_edges, a.quantile_edges, rtol=1e-6,
                                       equal_nan=True)
            same = (a.quantile_ids == b.quantile_ids).all(axis=-1)
            assert same.mean() > 0.97
            np.testing.assert_allclose(b.quantile_scores[same], a.quantile_scores[same],
                                       atol=1e-6)
            np.testing.assert_allclose(b.quantile_maps[same], a.quantile_maps[same], atol=1e-4)
        assert_same_probe(single.store, multi.store, single.layers, atol=1e-5)
        ea = json.loads(single.store.examples_path.read_text())
        eb = json.loads(multi.store.examples_path.read_text())
        for key in ("examples", "skipped", "classes", "images_seen", "fingerprint"):
            assert ea[key] == eb[key], (name, key)
        ia, ib = load_image_stats(single.store), load_image_stats(multi.store)
        assert ia.count == ib.count and ia.count > 0
        for key in ("spectrum", "colour_mean", "colour_cov"):
            np.testing.assert_allclose(getattr(ib, key), getattr(ia, key), rtol=1e-5, atol=1e-6)
        thumbs = [t for t in load_examples(multi.store).thumbs if t]
        assert thumbs and all((multi.store.index_dir / t).is_file() for t in thumbs)
        assert not multi.store.index_work_dir.exists()
    skipped = json.loads(multi.store.examples_path.read_text())["skipped"]
    assert [s["number"] for s in skipped] == [7, 30]  # one broken file on each rank
    from pipeline.index.results import load_probe

    probe = load_probe(multi.store, 0).numbers.tolist()
    assert 7 not in probe and 30 not in probe and len(probe) == 43
