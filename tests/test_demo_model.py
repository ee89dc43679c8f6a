"""The bundled demo model: its card is complete and its held-out accuracy reproduces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from timm.data import create_transform, resolve_model_data_config

from pipeline.data.synthetic import CLASS_NAMES, iter_examples

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads((DEMO / "model.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def model(card) -> torch.nn.Module:
    m = timm.create_model(card["model"], pretrained=False, **card["model_kwargs"])
    state = load_file(str(DEMO / card["weights"]))
    result = m.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return m.eval()


def test_card_describes_the_fixed_architecture(card):
    assert card["model"] == "vit_tiny_patch16_224"
    assert card["model_kwargs"] == {"num_classes": len(CLASS_NAMES), "img_size": 64,
                                    "patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 3}
    assert card["weights"] == "vit-demo.safetensors"
    assert card["classes"] == list(CLASS_NAMES)
    assert card["image_size"] == 64
    assert isinstance(card["seed"], int)
    assert card["accuracy"]["n"] == 2000
    assert 0.8 < card["accuracy"]["validation"] <= 1.0
    weights = DEMO / card["weights"]
    assert weights.stat().st_size <= 10 * 1024 * 1024
    text = (DEMO / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert f"{card['accuracy']['validation']:.4f}" in text
    assert "scripts/train_demo_model.py" in text
    assert all(name in text for name in CLASS_NAMES)


def test_model_has_four_ffn_layers_of_384_units_on_an_8x8_grid(model):
    acts = [name for name, _ in model.named_modules() if name.endswith("mlp.act")]
    assert acts == [f"blocks.{i}.mlp.act" for i in range(4)]
    assert all(model.blocks[i].mlp.fc1.out_features == 384 for i in range(4))
    assert model.patch_embed.grid_size == (8, 8)
    assert model.num_prefix_tokens == 1


@torch.no_grad()
def test_held_out_accuracy_reproduces_the_card(card, model):
    torch.set_num_threads(2)
    cfg = resolve_model_data_config(model)
    cfg["input_size"] = (3, card["image_size"], card["image_size"])
    tf = create_transform(**cfg)
    n = card["accuracy"]["n"]
    correct = 0
    batch: list[torch.Tensor] = []
    labels: list[int] = []
    for k, (_, image, label) in enumerate(iter_examples(n, "validation", card["image_size"])):
        batch.append(tf(image))
        labels.append(label)
        if len(batch) == 200 or k == n - 1:
            pred = model(torch.stack(batch)).argmax(1)
            correct += int((pred == torch.tensor(labels)).sum())
            batch, labels = [], []
    accuracy = correct / n
    assert abs(accuracy - card["accuracy"]["validation"]) <= 0.005, accuracy


@torch.no_grad()
def test_pipeline_loader_accepts_the_checkpoint(card, model):
    # The atlas loads the demo through its own loader (--weights PATH --model-kwargs ...).
    from pipeline.models.load import create_model, eval_transform

    loaded = create_model(card["model"], str(DEMO / card["weights"]), card["model_kwargs"])
    tf = eval_transform(loaded, card["model_kwargs"])
    x = torch.stack([tf(image) for _, image, _ in iter_examples(8, "validation")])
    assert x.shape == (8, 3, 64, 64)
    assert torch.allclose(loaded(x), model(x), atol=1e-5)
