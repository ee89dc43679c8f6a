"""A judge that sees light and dark only: any judge, shown every image in grey.

``grey:SPEC`` wraps the judge ``SPEC`` so that each image it embeds or classifies (the
visualization, and the top and bottom examples it is compared with) is first turned to its
luminance (ITU-R BT.601: ``0.299 R + 0.587 G + 0.114 B``), repeated over the three channels.
It asks whether a visualization is recognised by its pattern, not only by its colours: the
Method page's "Nor from colour at all" table.

>>> from pipeline.judge import load_judge
>>> judge = load_judge("grey:cnn:demo")
>>> judge.id
'grey:demo-cnn'
>>> red, grey = np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8, 3), np.uint8)
>>> red[..., 0], grey[...] = 200, 60  # the same luminance: 0.299 * 200 = 59.8
>>> bool(np.array_equal(luminance(red), grey))
True
"""

from __future__ import annotations

import numpy as np

GREY_PREFIX = "grey:"
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601


def luminance(images: np.ndarray) -> np.ndarray:
    """uint8 ``(..., H, W, 3)`` → the same shape, each pixel its luminance in all channels."""
    luma = np.asarray(images, np.float32) @ LUMA
    return np.repeat(np.rint(luma).clip(0, 255).astype(np.uint8)[..., None], 3, -1)


class GreyJudge:
    """``judge`` shown every image in grey (``luminance``); its id is ``grey:`` + the judge's."""

    def __init__(self, judge):
        self.judge = judge
        self.id = GREY_PREFIX + judge.id

    def embed(self, images: np.ndarray) -> np.ndarray:
        return self.judge.embed(luminance(images))

    def classify(self, images: np.ndarray, class_names: list[str]) -> np.ndarray:
        return self.judge.classify(luminance(images), class_names)
