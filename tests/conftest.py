"""Shared fixtures: a tiny random-weight ViT that runs in milliseconds on the CPU."""

from __future__ import annotations

import pytest
import torch

from pipeline.config import AtlasConfig

TINY_MODEL = "vit_tiny_patch16_224"
TINY_KWARGS = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 2}


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


@pytest.fixture
def tiny_config(tmp_path) -> AtlasConfig:
    return AtlasConfig(model=TINY_MODEL, weights="random", model_kwargs=dict(TINY_KWARGS),
                       out=str(tmp_path / "atlas"), dataset="synthetic:64", steps=8, topk=4,
                       workers=0)
