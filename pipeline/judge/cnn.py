"""A second judge of another architecture: a small CNN trained on the demo's procedural images.

The atlas's default judge is its labeler (a CLIP ViT). Issue 21 asks that every conclusion about
recognisability be checked with a judge that shares nothing with a ViT: this one is a few
conv/BN/ReLU stages, a global average pool and a linear head, in plain torch, trained by
``scripts/train_demo_judge.py`` on ``pipeline.data.synthetic`` (seeds the demo model never saw).

- ``embed``: the pooled penultimate features, L2-normalized (for 2-AFC);
- ``classify``: the head's argmax, restricted to the class names asked about (transferability).

The bundled judge lives in ``data/demo/judge/`` (``judge.json`` + ``judge.safetensors``, fp16).

>>> judge = load_cnn_judge()
>>> judge.id, judge.input_size, len(judge.class_names)
('demo-cnn', 64, 12)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import AtlasError
from pipeline.resources import bundled_model_dir

CONFIG_NAME = "judge.json"
WEIGHTS_NAME = "judge.safetensors"
RETRAIN = "python scripts/train_demo_judge.py --out data/demo/judge"


def demo_judge_dir() -> Path:
    """``data/demo/judge``: the bundled CNN judge.

    >>> demo_judge_dir().parts[-2:]
    ('demo', 'judge')
    """
    return bundled_model_dir("demo") / "judge"


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """A stride-2 stem conv, then stages of 3×3 conv/BN/ReLU with a 2×2 max pool between
    stages, a global average pool and a linear head. ``features`` gives the pooled vector.

    >>> net = SmallCNN(num_classes=12, stem=8, stages=[[8], [16]]).eval()
    >>> x = torch.zeros(2, 3, 64, 64)
    >>> tuple(net(x).shape), tuple(net.features(x).shape)
    ((2, 12), (2, 16))
    """

    def __init__(self, num_classes: int, stem: int = 24,
                 stages: Sequence[Sequence[int]] = ((32,), (64, 64), (128,))) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(3, stem, stride=2)]
        width = stem
        for i, stage in enumerate(stages):
            if i:
                layers.append(nn.MaxPool2d(2))
            for w in stage:
                layers.append(_conv(width, w))
                width = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)
        self.embed_dim = width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled last-stage features, ``(N, embed_dim)``."""
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_cnn(architecture: dict[str, Any]) -> SmallCNN:
    """The network a config's ``architecture`` describes (untrained).

    >>> build_cnn({"type": "SmallCNN", "num_classes": 3, "stem": 4, "stages": [[4]]}).embed_dim
    4
    """
    arch = dict(architecture)
    kind = arch.pop("type", "SmallCNN")
    if kind != "SmallCNN":
        raise AtlasError(f"unknown judge architecture {kind!r} (this version knows SmallCNN)")
    return SmallCNN(**arch)


class CNNJudge:
    """An image judge: unit-norm embeddings and class predictions of a trained ``SmallCNN``.

    Deterministic, CPU, batched. Images are uint8 ``(N, H, W, 3)`` of any size, resized
    (bilinear, antialiased) to ``input_size`` and normalized as in training.

    >>> from pipeline.data.synthetic import make_example
    >>> judge = load_cnn_judge()
    >>> image, label = make_example(5, seed=9)
    >>> batch = np.asarray(image)[None]
    >>> judge.embed(batch).shape
    (1, 128)
    >>> int(judge.classify(batch, judge.class_names)[0]) == label
    True
    """

    def __init__(self, model: SmallCNN, class_names: Sequence[str], input_size: int,
                 mean: Sequence[float], std: Sequence[float], id: str = "demo-cnn",
                 batch_size: int = 256, config: dict[str, Any] | None = None) -> None:
        self.model = model.eval()
        self.id = id
        self.class_names = list(class_names)
        self.input_size = int(input_size)
        self.batch_size = int(batch_size)
        self.config = dict(config or {})
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self._index = {name.strip().lower(): i for i, name in enumerate(self.class_names)}

    def __repr__(self) -> str:
        return f"CNNJudge(id={self.id!r}, input_size={self.input_size}, " \
               f"classes={len(self.class_names)})"

    # -- preprocessing -------------------------------------------------------------------
    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """uint8 ``(N, H, W, 3)`` → normalized float ``(N, 3, S, S)`` at the input size.

        >>> load_cnn_judge().preprocess(np.zeros((2, 32, 48, 3), np.uint8)).shape
        torch.Size([2, 3, 64, 64])
        """
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} "
                             f"{images.shape}")
        x = torch.tensor(images).permute(0, 3, 1, 2).float() / 255.0  # a copy: may be read-only
        s = self.input_size
        if x.shape[-2:] != (s, s) and len(x):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False,
                              antialias=True).clamp_(0.0, 1.0)
        return (x - self._mean) / self._std

    def _run(self, images: np.ndarray, logits: bool) -> torch.Tensor:
        x = self.preprocess(images)
        out = []
        with torch.inference_mode():
            for i in range(0, len(x), self.batch_size):
                f = self.model.features(x[i : i + self.batch_size])
                out.append(self.model.head(f) if logits else f)
        if not out:
            width = len(self.class_names) if logits else self.model.embed_dim
            return torch.zeros(0, width)
        return torch.cat(out)

    # -- the judge interface -------------------------------------------------------------
    def embed(self, images: np.ndarray) -> np.ndarray:
        """``(N, D)`` float32 unit-norm embeddings: the pooled penultimate features.

        >>> e = load_cnn_judge().embed(np.full((3, 20, 20, 3), 128, np.uint8))
        >>> e.shape, e.dtype, bool(np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5))
        ((3, 128), dtype('float32'), True)
        """
        f = F.normalize(self._run(images, logits=False), dim=1, eps=1e-12)
        return f.numpy().astype(np.float32, copy=False)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """``(N, len(self.class_names))`` float32 head outputs.

        >>> load_cnn_judge().logits(np.zeros((1, 64, 64, 3), np.uint8)).shape
        (1, 12)
        """
        return self._run(images, logits=True).numpy().astype(np.float32, copy=False)

    def known(self, class_names: Sequence[str]) -> list[int | None]:
        """For each given name, the judge's class index (case-insensitive), or None.

        >>> load_cnn_judge().known(["Circle", "cat", "dots"])
        [0, None, 9]
        """
        return [self._index.get(str(name).strip().lower()) for name in class_names]

    def classify(self, images: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
        """``(N,)`` int64 index into ``class_names`` of the judge's predicted class, among the
        given names the judge knows; a name it does not know is never predicted.

        >>> from pipeline.data.synthetic import make_example
        >>> img = np.asarray(make_example(0, seed=9)[0])[None]  # a circle
        >>> load_cnn_judge().classify(img, ["square", "unicorn", "CIRCLE"]).tolist()
        [2]
        """
        mine = self.known(class_names)
        given = [i for i, m in enumerate(mine) if m is not None]
        if not given:
            raise ValueError(f"none of the class names {list(class_names)!r} is known to judge "
                             f"{self.id!r}, which knows {self.class_names!r}")
        logits = self._run(images, logits=True)
        sub = logits[:, [mine[i] for i in given]]
        return np.asarray(given, dtype=np.int64)[sub.argmax(dim=1).numpy()]


def load_cnn_judge(path: str | Path | None = None) -> CNNJudge:
    """The CNN judge saved in ``path`` (a folder with ``judge.json``, or that file);
    ``None``: the bundled ``data/demo/judge``. AtlasError if it is missing or corrupt.

    >>> load_cnn_judge().id
    'demo-cnn'
    >>> load_cnn_judge("/nonexistent")
    Traceback (most recent call last):
    ...
    pipeline.errors.AtlasError: no CNN judge at /nonexistent: judge.json is missing ...
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    bundled = path is None
    path = Path(demo_judge_dir() if bundled else path)
    folder, config_path = (path.parent, path) if path.suffix == ".json" else (path,
                                                                              path / CONFIG_NAME)
    hint = f"reinstall from a full checkout or train it: {RETRAIN}" if bundled else \
        f"train one with {RETRAIN}"
    if not config_path.is_file():
        raise AtlasError(f"no CNN judge at {path}: {config_path.name} is missing ({hint})")
    try:
        config = json.loads(config_path.read_text())
        weights = folder / config.get("weights", WEIGHTS_NAME)
        arch = config["architecture"]
        names = config["class_names"]
        size = config["input_size"]
        norm = config["normalization"]
        mean, std = norm["mean"], norm["std"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise AtlasError(f"corrupt CNN judge config {config_path}: {e!r} ({hint})") from e
    if not weights.is_file():
        raise AtlasError(f"the CNN judge's weights are missing: {weights} ({hint})")
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError, ValueError) as e:
        raise AtlasError(f"corrupt CNN judge weights {weights}: {e} ({hint})") from e
    model = build_cnn(arch)
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as e:
        raise AtlasError(f"the CNN judge's weights {weights} do not fit its config "
                         f"{config_path}: {e}") from e
    return CNNJudge(model, names, size, mean, std,
                    id=config.get("id", "demo-cnn" if bundled else f"cnn:{folder}"),
                    config=config)
