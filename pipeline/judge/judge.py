"""Judges: image models independent of the atlas's model that measure how recognisable a
visualization is. A judge embeds images (for the 2-AFC) and classifies them zero-shot over
the dataset's class names (for transferability). It measures and never steers: no recipe
uses it.

A judge SPEC is a labeler SPEC (``demo``, ``open_clip:<model>/<pretrained>``, a local-dir
folder, ``self``: see ``pipeline.label.labelers``), whose image tower embeds and whose text
tower names the classes, or ``cnn:demo`` / ``cnn:PATH``: a small CNN classifier (the bundled
one is trained on the demo's procedural images: a second judge of another architecture).
``grey:SPEC`` is the judge SPEC shown every image in grey (``pipeline.judge.grey``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from PIL import Image

from pipeline.errors import AtlasError
from pipeline.judge.grey import GREY_PREFIX, GreyJudge

CNN_PREFIX = "cnn:"


class Judge(Protocol):
    """What a judge offers: an id, unit-norm embeddings, zero-shot classes."""

    id: str

    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``(N, H, W, 3)`` → float32 ``(N, D)`` unit-norm embeddings."""

    def classify(self, images: np.ndarray, class_names: list[str]) -> np.ndarray:
        """uint8 ``(N, H, W, 3)`` → ``(N,)`` int index into ``class_names``."""


class LabelerJudge:
    """A CLIP labeler as a judge: its image tower embeds, its text tower names classes.

    >>> judge = load_judge("demo")
    >>> pixels = np.zeros((2, 64, 64, 3), np.uint8)
    >>> judge.embed(pixels).shape[0], judge.classify(pixels, ["ring", "dots"]).shape
    (2, (2,))
    """

    def __init__(self, labeler, name: str):
        self.labeler, self.name = labeler, name
        self.id = labeler.id
        self._texts: dict[tuple[str, ...], np.ndarray] = {}

    def embed(self, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
        out = []
        for i in range(0, len(images), batch_size):
            pixels = torch.stack([self.labeler.preprocess(Image.fromarray(np.asarray(im)))
                                  for im in images[i:i + batch_size]])
            out.append(self.labeler.encode_images(pixels))
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def classify(self, images: np.ndarray, class_names: list[str]) -> np.ndarray:
        key = tuple(class_names)
        if key not in self._texts:
            self._texts[key] = self.labeler.encode_texts(list(class_names))
        return (self.embed(images) @ self._texts[key].T).argmax(1)


def load_judge(spec: str, model: str | None = None, device: torch.device | str = "cpu") -> Judge:
    """Load a judge by SPEC (see the module docstring; ``model``: the atlas's timm name, for
    the labeler spec ``self``).

    >>> load_judge("cnn:demo").id, load_judge("grey:cnn:demo").id
    ('demo-cnn', 'grey:demo-cnn')
    """
    spec = spec.strip()
    if spec.startswith(GREY_PREFIX):
        return GreyJudge(load_judge(_seen(spec), model, device))
    if spec.startswith(CNN_PREFIX):
        from pipeline.judge.cnn import load_cnn_judge

        path = spec[len(CNN_PREFIX):]
        return load_cnn_judge(None if path in ("", "demo") else path)
    from pipeline.label.labelers import load_labeler, parse_labeler

    try:
        parsed = parse_labeler(spec, model)
    except AtlasError as exc:
        raise AtlasError(f"bad judge {spec!r}: {exc} (or cnn:demo, cnn:PATH, grey:SPEC)",
                         option="judge") from None
    return LabelerJudge(load_labeler(parsed, device), spec)


def _seen(spec: str) -> str:
    """The judge that ``grey:SPEC`` shows its images to: SPEC (itself no ``grey:`` one)."""
    inner = spec[len(GREY_PREFIX):].strip()
    if not inner or inner == "none" or inner.startswith(GREY_PREFIX):
        raise AtlasError(f"bad judge {spec!r}: grey: takes one judge SPEC, e.g. grey:cnn:demo",
                         option="judge")
    return inner


def check_judge(spec: str | None, model: str | None = None) -> None:
    """Check a judge SPEC without loading weights (a clear error before long work).

    >>> check_judge("cnn:demo"); check_judge("grey:demo"); check_judge(None)
    >>> check_judge("nonsense")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pipeline.errors.AtlasError: bad judge 'nonsense': ...
    """
    if spec is None or spec == "none":
        return
    if spec.startswith(GREY_PREFIX):
        check_judge(_seen(spec), model)
        return
    if spec.startswith(CNN_PREFIX):  # a few hundred KB: loading it is the check
        load_judge(spec)
        return
    from pipeline.label.labelers import parse_labeler

    try:
        parse_labeler(spec, model)
    except AtlasError as exc:
        raise AtlasError(f"bad judge {spec!r}: {exc} (or cnn:demo, cnn:PATH, grey:SPEC)",
                         option="judge") from None
