"""The benchmark scripts run (tiny settings) and print their figures: they must not rot.
Their numbers are not checked here: speed targets live in the scripts' own output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

CASES = {
    "bench_visualize.py": (["--steps", "2", "--units-per-layer", "2", "--images", "64",
                            "--recipes", "scripts/recipes/polish50.json",
                            "--judges", "cnn:demo", "--diversity", "2"],
                           ["best dataset examples", "polish50", "vs paper", "% peak",
                            "polish50 #2"]),
    "bench_diversity.py": (["--steps", "2", "--units-per-layer", "1", "--weights", "0,1"],
                           ["activation vs N=1", "Gram similarity", "| 1 |"]),
    "bench_fast_paths.py": (["--steps", "2", "--features", "4", "--layers", "0",
                             "--variants", "eager", "channels-last"],
                            ["channels-last", "x eager"]),
    "bench_index.py": (["--quick", "--sections", "scan", "--images", "256", "--repeats", "1",
                        "--workers", "0"], ["index / bare", "matmul peak"]),
    "bench_label.py": (["--units", "32", "--images", "300", "--concepts", "200",
                        "--baseline-units", "8", "--text-sample", "0"],
                       ["SoftWPMI (batched)", "batched vs loop", "peak RSS"]),
    "bench_site.py": (["--units", "16", "--small-units", "8", "--examples", "100",
                       "--map-units", "512", "--word-units", "5000"],
                      ["feature pages/s", "peak RSS main", "sampled peaks: main anonymous"]),
    "bench_site_processes.py": (["--depth", "1", "--width", "16", "--topk", "4",
                                 "--examples", "128"],
                                ["feature pages/s", "byte for byte the same: yes"]),
    "bench_search.py": (["--units", "2000", "--layers", "4"],
                        ["shard max", "header search's head", "unit of the largest class"]),
    "bench_paint.py": (["--runs", "1", "--no-throttle"], ["method/", "LCP", "KiB loaded"]),
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_script_runs(script):
    args, expected = CASES[script]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / script), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for text in expected:
        assert text in proc.stdout, proc.stdout[-2000:]
