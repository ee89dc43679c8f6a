"""Bad input fails within seconds, before anything is loaded or written."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pipeline.cli import main

TINY = ["--model", "vit_tiny_patch16_224", "--weights", "random", "--model-kwargs",
        "img_size=32", "patch_size=8", "depth=2", "embed_dim=48", "num_heads=2",
        "--workers", "0", "--device", "cpu"]

CASES = {
    "missing folder": (["--dataset", "imagefolder:/does/not/exist"], "is not a directory"),
    "no tars": (["--dataset", "webdataset:{tmp}"], "no .tar shards"),
    "bad dataset kind": (["--dataset", "ftp:x"], "unknown dataset kind"),
    "bad layers": (["--layers", "5"], "bad layers '5'"),
    "bad channels": (["--channels", "0:x"], "bad channels"),
    "bad recipe": (["--recipe", "fancy"], "unknown recipe 'fancy'"),
    "missing weights": (["--weights", "/no/such.safetensors"], "does not exist"),
    "bad topk": (["--topk", "0"], "topk must be at least 1"),
    "bad quantile k": (["--quantile-k", "-1"], "quantile_k must not be negative"),
    "unknown labeler": (["--labeler", "open_clip:ViT-Q-16/openai"], "unknown open_clip model"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_fast_with_nothing_written(case, tmp_path, capsys):
    extra, message = CASES[case]
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]  # an empty folder
    out = tmp_path / "atlas"
    start = time.perf_counter()
    assert main(["build", *TINY, "--dataset", "synthetic:16", "--out", str(out), *extra]) == 2
    assert time.perf_counter() - start < 30
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_unknown_model_and_unreachable_hub(tmp_path, capsys):
    out = tmp_path / "atlas"
    assert main(["build", "--model", "vit_bsae_patch16_224", "--out", str(out)]) == 2
    assert "unknown model 'vit_bsae_patch16_224'. Did you mean" in capsys.readouterr().err
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "index", *TINY, "--dataset",
                           "hf:someone/no-such-dataset", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert time.perf_counter() - start < 30
    assert proc.returncode == 2
    assert "cannot reach the Hugging Face hub to stream 'someone/no-such-dataset'" in proc.stderr
    assert not out.exists()
