"""The bundled demo model: its card is complete and its held-out accuracy reproduces."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from timm.data import create_transform, resolve_model_data_config

from pipeline.data.synthetic import CLASS_NAMES, iter_examples

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"


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


# -- the second model (data/second): only for checking that recipes carry over ---------------
SECOND = DEMO.parent / "second"


@torch.no_grad()
def test_second_model_card_is_consistent_and_the_pipeline_loads_it():
    import shlex

    from pipeline.models.load import create_model, eval_transform, parse_model_kwargs

    card = json.loads((SECOND / "model.json").read_text(encoding="utf-8"))
    kwargs = {"num_classes": len(CLASS_NAMES), "img_size": 64, "patch_size": 8,
              "embed_dim": 128, "depth": 6, "num_heads": 4}
    assert card["model"] == "vit_small_patch16_224"
    assert card["model_kwargs"] == kwargs
    assert card["seed"] == 1 and card["image_size"] == 64
    assert card["classes"] == list(CLASS_NAMES)
    assert card["accuracy"]["n"] == 2000
    assert 1 / len(CLASS_NAMES) < card["accuracy"]["validation"] <= 1.0
    # the recorded command rebuilds these kwargs (defaults overridden by --model-kwargs)
    words = shlex.split(card["command"])
    assert words[:2] == ["python", "scripts/train_demo_model.py"]
    assert words[words.index("--seed") + 1] == "1"
    assert words[words.index("--model") + 1] == card["model"]
    assert words[words.index("--weights-name") + 1] == card["weights"]
    start = words.index("--model-kwargs") + 1
    given = parse_model_kwargs(list(itertools.takewhile(lambda w: not w.startswith("--"),
                                                        words[start:])))
    assert {**kwargs, **given} == kwargs and set(given) >= {"embed_dim", "depth", "num_heads"}
    weights = SECOND / card["weights"]
    assert weights.stat().st_size < 8 * 1024 * 1024
    text = (SECOND / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert f"{card['accuracy']['validation']:.4f}" in text
    assert card["command"] in text

    model = create_model(card["model"], str(weights), card["model_kwargs"])
    acts = [name for name, _ in model.named_modules() if name.endswith("mlp.act")]
    assert acts == [f"blocks.{i}.mlp.act" for i in range(6)]
    assert all(block.mlp.fc1.out_features == 512 for block in model.blocks)
    assert model.patch_embed.grid_size == (8, 8)
    tf = eval_transform(model, card["model_kwargs"])
    examples = list(iter_examples(64, "validation", card["image_size"]))
    x = torch.stack([tf(image) for _, image, _ in examples])
    pred = model(x).argmax(1)
    accuracy = (pred == torch.tensor([label for *_, label in examples])).float().mean().item()
    assert accuracy > 0.5, accuracy  # well above chance (1/12) on the first 64 held-out images
