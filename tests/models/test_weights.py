"""Local checkpoints load (state dicts, timm checkpoints, safetensors) or fail naming keys."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from pipeline.errors import AtlasError
from pipeline.models import create_model
from tests.conftest import TINY_KWARGS, TINY_MODEL


def _tiny(seed=1):
    return create_model(TINY_MODEL, "random", TINY_KWARGS, seed=seed)


@pytest.mark.parametrize("fmt", ["state_dict", "timm_checkpoint", "safetensors", "ddp"])
def test_local_checkpoint_roundtrip(tmp_path, fmt):
    src = _tiny(seed=5)
    state = src.state_dict()
    path = tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pth")
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif fmt == "timm_checkpoint":
        torch.save({"epoch": 3, "state_dict": state, "arch": TINY_MODEL}, path)
    elif fmt == "ddp":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    loaded = create_model(TINY_MODEL, str(path), TINY_KWARGS, seed=0)
    for k, v in state.items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_checkpoint_that_does_not_fit_names_keys(tmp_path):
    state = _tiny().state_dict()
    state.pop("blocks.1.mlp.fc2.bias")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(AtlasError) as err:
        create_model(TINY_MODEL, str(path), TINY_KWARGS)
    assert "blocks.1.mlp.fc2.bias" in str(err.value) and "extra.weight" in str(err.value)


def test_checkpoint_of_other_shape_names_mismatch(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(create_model(TINY_MODEL, "random", {**TINY_KWARGS, "embed_dim": 64}).state_dict(),
               path)
    with pytest.raises(AtlasError, match="shape mismatch"):
        create_model(TINY_MODEL, str(path), TINY_KWARGS)


def test_missing_and_corrupt_weights(tmp_path):
    with pytest.raises(AtlasError, match="not found"):
        create_model(TINY_MODEL, str(tmp_path / "nope.pth"), TINY_KWARGS)
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(AtlasError, match="cannot read weights"):
        create_model(TINY_MODEL, str(bad), TINY_KWARGS)


def test_hub_unreachable_suggests_local_weights(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "visualize", "--model", "vit_tiny_patch16_224",
         "--weights", "hub", "--dataset", "synthetic:8", "--recipe", "paper",  # needs no index
         "--out", str(tmp_path / "a")],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Hugging Face hub" in proc.stderr and "[--weights]" in proc.stderr  # the CLI's flag
    assert "Traceback" not in proc.stderr
