"""Captioned procedural images: the training data of the demo labeler (a tiny offline CLIP).

Like :mod:`pipeline.data.synthetic`, every example is a pure function of ``(seed, index,
size)``, and it reuses that module's drawing helpers. The class of example ``index`` is
:func:`class_of` ``(index)``, one of the demo's 12 classes (:data:`CLASS_NAMES`), cycling
through the five shapes twice for every texture once (shapes are the harder half: any 17
consecutive indices hold each shape twice and each texture once); a scene is one of

- ``"demo"``: drawn exactly as :func:`pipeline.data.synthetic.make_example` draws that class
  (random colours), captioned with the class words only, so the labeler sees the demo's images;
- ``"object"``: one shape in a named colour on a named background, with a size (small, large)
  and a position (left, right, top, bottom, centre);
- ``"objects"``: two or three small shapes of one kind and colour (a count);
- ``"pair"``: two different shapes in two colours, side by side or one above the other;
- ``"texture"``: a full-frame pattern (stripes, checkerboard, dots, noise blobs, gradient) in two
  named colours.

Named colours are jittered a little around a small palette (:data:`COLOURS`). Captions come from
several templates (:func:`variants`); every caption holds the class word of what is drawn
(``"checkerboard"``, ``"vertical"`` with ``"stripes"``, ``"circles"`` for several circles)
and uses only :data:`CONCEPT_WORDS`. The held-out set is another seed (``SPLIT_SEEDS``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline.data import synthetic
from pipeline.data.synthetic import (
    _DRAW,
    _TAU,
    _box,
    _coverage,
    _grid,
    _mix,
    _rotate,
    _smooth_noise,
    _square_wave,
)

Array = np.ndarray

CLASS_NAMES: tuple[str, ...] = synthetic.CLASS_NAMES
SHAPES: tuple[str, ...] = CLASS_NAMES[:5]
PLURALS: dict[str, str] = {"circle": "circles", "square": "squares", "triangle": "triangles",
                           "ring": "rings", "cross": "crosses"}
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.10, 0.10),
    "green": (0.10, 0.62, 0.15),
    "blue": (0.10, 0.22, 0.85),
    "yellow": (0.95, 0.90, 0.10),
    "orange": (1.00, 0.55, 0.05),
    "purple": (0.50, 0.15, 0.65),
    "pink": (1.00, 0.58, 0.78),
    "white": (0.96, 0.96, 0.96),
    "black": (0.04, 0.04, 0.04),
    "gray": (0.50, 0.50, 0.50),
    "brown": (0.50, 0.30, 0.12),
    "cyan": (0.10, 0.85, 0.90),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "centre")
COUNTS: tuple[str, ...] = ("one", "two", "three")
KINDS: tuple[str, ...] = ("demo", "object", "objects", "pair", "texture")
SPLIT_SEEDS = {"train": 0, "validation": 1}

_FUNCTION_WORDS = ("a", "an", "and", "at", "background", "from", "image", "in", "of", "on",
                   "pattern", "photo", "shape", "the", "to", "with")
_TEXTURE_WORDS = ("horizontal", "vertical", "diagonal", "stripes", "checkerboard", "dots",
                  "noise", "blobs", "gradient")
CONCEPT_WORDS: tuple[str, ...] = tuple(sorted(set(
    _FUNCTION_WORDS + SHAPES + tuple(PLURALS.values()) + _TEXTURE_WORDS + COLOUR_NAMES + SIZES
    + POSITIONS + COUNTS)))

_CYCLE: tuple[int, ...] = (*range(5), *range(5), *range(5, 12))  # class of index % 17
_SALT = 0xCA97_10E5  # keeps these streams apart from synthetic.py's
_JITTER = 0.07  # per channel, around the palette colour
_MIN_CONTRAST = 0.4  # RGB distance between the two named colours of one image
_KIND_P = {"shape": (0.40, 0.35, 0.15, 0.10, 0.0), "texture": (0.45, 0.0, 0.0, 0.0, 0.55)}
_POS_PHRASE = {"left": "on the left", "right": "on the right", "top": "at the top",
               "bottom": "at the bottom", "centre": "in the centre"}


@dataclass(frozen=True)
class Scene:
    """What an image shows, in words (``None``: not drawn with a name, e.g. demo colours)."""

    kind: str  # one of KINDS
    label: int  # index into CLASS_NAMES of the main shape or pattern
    colour: str | None = None  # the shape's colour, or a texture's first colour
    background: str | None = None  # the background, or a texture's second colour
    size: str | None = None  # "small" / "large" (single objects)
    position: str | None = None  # one of POSITIONS (single objects; first of a pair)
    count: int = 1  # how many shapes ("objects": 2 or 3)
    second: tuple[str, str, str] | None = None  # a pair's other (shape, colour, position)

    @property
    def name(self) -> str:
        return CLASS_NAMES[self.label]


# -- drawing -------------------------------------------------------------------------------
def _named(rng: np.random.Generator, name: str) -> Array:
    base = np.asarray(COLOURS[name], dtype=np.float32)
    return np.clip(base + rng.uniform(-_JITTER, _JITTER, 3).astype(np.float32), 0.0, 1.0)


def _two_names(rng: np.random.Generator) -> tuple[str, str]:
    """Two palette names at least ``_MIN_CONTRAST`` apart."""
    first = COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]
    a = np.asarray(COLOURS[first])
    ok = [n for n in COLOUR_NAMES if np.linalg.norm(np.asarray(COLOURS[n]) - a) >= _MIN_CONTRAST]
    return first, ok[int(rng.integers(len(ok)))]


def _background(rng: np.random.Generator, name: str, x: Array, y: Array) -> Array:
    """A named colour with a gentle linear gradient across it, ``(H, W, 3)``."""
    base = _named(rng, name)
    theta = rng.uniform(0.0, _TAU)
    t = (x - 0.5) * np.float32(np.cos(theta)) + (y - 0.5) * np.float32(np.sin(theta))
    delta = rng.uniform(-0.1, 0.1, 3).astype(np.float32)
    return np.clip(base + t[..., None] * delta, 0.0, 1.0)


def _shape_cover(rng: np.random.Generator, shape: str, x: Array, y: Array, size: int,
                 cx: float, cy: float, r: float) -> Array:
    """Coverage of one shape of radius ``r`` at ``(cx, cy)``, randomly rotated, as synthetic.py
    draws it."""
    u, v = _rotate(x, y, cx, cy, rng.uniform(0.0, _TAU))
    if shape == "circle":
        dist = np.hypot(u, v) - r
    elif shape == "square":
        dist = _box(u, v, r * 0.85, r * 0.85)
    elif shape == "triangle":
        dist = np.full_like(u, -np.inf)
        for k in range(3):
            a = np.pi / 2 + k * _TAU / 3
            dist = np.maximum(dist, u * np.float32(np.cos(a)) + v * np.float32(np.sin(a))
                              - r * 0.55)
    elif shape == "ring":
        dist = np.abs(np.hypot(u, v) - r) - r * rng.uniform(0.12, 0.25)
    else:  # cross
        w = r * rng.uniform(0.2, 0.35)
        dist = np.minimum(_box(u, v, r, w), _box(u, v, w, r))
    return _coverage(dist, size)


def _place(rng: np.random.Generator, position: str, r: float) -> tuple[float, float]:
    """A centre for a shape of radius ``r`` in the named region of the frame."""
    lo, hi = r + 0.03, 0.33  # the near third, the shape fully inside
    near = float(rng.uniform(lo, max(lo, hi)))
    across = float(rng.uniform(0.4, 0.6))
    if position == "centre":
        return tuple(float(c) for c in rng.uniform(0.44, 0.56, 2))  # type: ignore[return-value]
    if position == "left":
        return near, across
    if position == "right":
        return 1.0 - near, across
    if position == "top":
        return across, near
    return across, 1.0 - near  # bottom


def _draw_object(rng, label, x, y, size) -> tuple[Array, Scene]:
    shape = CLASS_NAMES[label]
    colour, background = _two_names(rng)
    big = bool(rng.random() < 0.5)
    r = float(rng.uniform(0.20, 0.27) if big else rng.uniform(0.09, 0.14))
    position = POSITIONS[int(rng.integers(len(POSITIONS)))]
    cx, cy = _place(rng, position, r)
    img = _background(rng, background, x, y)
    img = _mix(img, _named(rng, colour), _shape_cover(rng, shape, x, y, size, cx, cy, r))
    return img, Scene("object", label, colour, background, SIZES[int(big)], position)


def _draw_objects(rng, label, x, y, size) -> tuple[Array, Scene]:
    shape = CLASS_NAMES[label]
    colour, background = _two_names(rng)
    count = int(rng.integers(2, 4))
    r = float(rng.uniform(0.08, 0.12))
    centres: list[Array] = []
    for _ in range(200):  # rejection sampling: shapes apart and fully inside
        c = rng.uniform(r + 0.03, 1.0 - r - 0.03, 2)
        if all(np.linalg.norm(c - o) > 2.2 * r + 0.03 for o in centres):
            centres.append(c)
            if len(centres) == count:
                break
    count = len(centres)
    img = _background(rng, background, x, y)
    fg = _named(rng, colour)
    cover = np.zeros_like(x)
    for cx, cy in centres:
        cover = np.maximum(cover, _shape_cover(rng, shape, x, y, size, cx, cy, r))
    return _mix(img, fg, cover), Scene("objects", label, colour, background, count=count)


def _draw_pair(rng, label, x, y, size) -> tuple[Array, Scene]:
    other = [s for s in SHAPES if s != CLASS_NAMES[label]]
    shape2 = other[int(rng.integers(len(other)))]
    background = COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]
    bg = np.asarray(COLOURS[background])
    ok = [n for n in COLOUR_NAMES if np.linalg.norm(np.asarray(COLOURS[n]) - bg) >= _MIN_CONTRAST]
    c1, c2 = (ok[int(i)] for i in rng.integers(len(ok), size=2))
    p1, p2 = ("left", "right") if rng.random() < 0.5 else ("top", "bottom")
    if rng.random() < 0.5:
        p1, p2 = p2, p1
    img = _background(rng, background, x, y)
    for shape, colour, position in ((CLASS_NAMES[label], c1, p1), (shape2, c2, p2)):
        r = float(rng.uniform(0.1, 0.16))
        cx, cy = _place(rng, position, r)
        img = _mix(img, _named(rng, colour), _shape_cover(rng, shape, x, y, size, cx, cy, r))
    return img, Scene("pair", label, c1, background, position=p1, second=(shape2, c2, p2))


def _texture_cover(rng: np.random.Generator, name: str, x: Array, y: Array, size: int) -> Array:
    """A full-frame pattern's coverage in [0, 1], with synthetic.py's parameter ranges."""
    if name.endswith("stripes"):
        angle = {"horizontal": 0.0, "vertical": np.pi / 2}.get(
            name.split()[0], np.pi / 4 if rng.random() < 0.5 else 3 * np.pi / 4)
        angle += rng.uniform(-1.0, 1.0) * np.deg2rad(12.0)
        freq = rng.uniform(2.5, 7.0)
        _, v = _rotate(x, y, 0.5, 0.5, angle)
        phase = v * np.float32(_TAU * freq) + np.float32(rng.uniform(0.0, _TAU))
        return _square_wave(phase, rng.uniform(-0.4, 0.4), size / (_TAU * freq))
    if name == "checkerboard":
        cells = rng.uniform(3.0, 8.0)
        u, v = _rotate(x, y, 0.5, 0.5, rng.uniform(0.0, np.pi / 2))
        off = rng.uniform(0.0, _TAU, 2).astype(np.float32)
        k = np.float32(np.pi * cells)
        field = np.sin(u * k + off[0]) * np.sin(v * k + off[1])
        return np.clip(0.5 + field * (size / (np.pi * cells)), 0.0, 1.0)
    if name == "dots":
        n = int(rng.integers(8, 31))
        centres = rng.random((n, 2), dtype=np.float32)
        radii = rng.uniform(0.025, 0.06, n).astype(np.float32)
        dist = np.hypot(x[None] - centres[:, 0, None, None], y[None] - centres[:, 1, None, None])
        return _coverage((dist - radii[:, None, None]).min(axis=0), size)
    if name == "noise blobs":
        field = _smooth_noise(rng, int(rng.integers(3, 7)), size)
        level = np.quantile(field, rng.uniform(0.3, 0.7))
        return np.clip(0.5 + (field - level) * rng.uniform(2.0, 6.0), 0.0, 1.0)
    theta = rng.uniform(0.0, _TAU)  # gradient
    t = (x - 0.5) * np.float32(np.cos(theta)) + (y - 0.5) * np.float32(np.sin(theta))
    return np.clip(t / np.float32(np.sqrt(0.5)) + 0.5, 0.0, 1.0) ** np.float32(
        rng.uniform(0.6, 1.6))


def _draw_texture(rng, label, x, y, size) -> tuple[Array, Scene]:
    first, second = _two_names(rng)  # pattern colour, background colour
    cover = _texture_cover(rng, CLASS_NAMES[label], x, y, size)
    return _mix(_named(rng, second), _named(rng, first), cover), Scene(
        "texture", label, first, second)


def _draw_demo(rng, label, x, y, size) -> tuple[Array, Scene]:
    return _DRAW[label](rng, x, y, size), Scene("demo", label)


_KIND_DRAW = {"demo": _draw_demo, "object": _draw_object, "objects": _draw_objects,
              "pair": _draw_pair, "texture": _draw_texture}


# -- captions ------------------------------------------------------------------------------
def _a(phrase: str) -> str:
    """``phrase`` with an indefinite article where English wants one."""
    if phrase.split()[-1] in ("stripes", "dots", "blobs", "noise"):
        return phrase
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase




def variants(scene: Scene) -> tuple[str, ...]:
    """Every caption template filled in for ``scene`` (one is picked per example)."""
    name = scene.name
    if scene.kind == "demo":
        return (_a(name), "a photo of " + _a(name), "an image of " + _a(name), name,
                f"a {name} shape" if name in SHAPES else f"{_a(name)} pattern")
    c, bg = scene.colour, scene.background
    if scene.kind == "object":
        pos, sz = _POS_PHRASE[scene.position], scene.size
        return (f"{_a(c)} {name}", f"{_a(sz)} {c} {name}", f"{_a(c)} {name} on {_a(bg)} background",
                f"a photo of {_a(c)} {name}", f"{_a(sz)} {name} {pos}",
                f"{_a(c)} {name} {pos} on {_a(bg)} background", name, _a(name),
                f"one {c} {name}", f"{_a(sz)} {c} {name} {pos}", f"a {name} shape {pos}",
                f"an image of {_a(sz)} {c} {name} on {_a(bg)} background")
    if scene.kind == "objects":
        n, many = COUNTS[scene.count - 1], PLURALS[name]
        return (f"{n} {c} {many}", f"{n} {many} on {_a(bg)} background",
                f"{n} small {c} {many} on {_a(bg)} background", many, f"a photo of {n} {many}",
                f"{c} {many}", f"{n} {many}")
    if scene.kind == "pair":
        s2, c2, p2 = scene.second
        p1 = scene.position
        return (f"{_a(c)} {name} and {_a(c2)} {s2}", f"{_a(name)} and {_a(s2)}",
                f"{_a(c)} {name} {_POS_PHRASE[p1]} and {_a(c2)} {s2} {_POS_PHRASE[p2]}",
                f"{_a(name)} and {_a(s2)} on {_a(bg)} background",
                f"a photo of {_a(name)} and {_a(s2)}")
    # texture
    if name.endswith("stripes"):
        o = name.split()[0]
        return (f"{c} and {bg} {name}", name, f"{o} {c} stripes on {_a(bg)} background",
                f"a photo of {name}", f"{c} {name}", f"{name} in {c} and {bg}",
                f"{_a(o)} stripes pattern")
    if name == "checkerboard":
        return (f"{_a(c)} and {bg} checkerboard", "a checkerboard", "checkerboard",
                f"a checkerboard of {c} and {bg}", "a photo of a checkerboard",
                "a checkerboard pattern")
    if name == "dots":
        return (f"{c} dots on {_a(bg)} background", "dots", f"{c} dots", "a photo of dots",
                f"{_a(bg)} background with {c} dots", "a pattern of dots")
    if name == "noise blobs":
        return (f"{c} and {bg} noise blobs", "noise blobs", f"{c} noise blobs",
                "a photo of noise blobs", f"{c} noise blobs on {_a(bg)} background")
    return (f"a gradient from {bg} to {c}", f"{_a(bg)} to {c} gradient", "a gradient",
            "gradient", "a photo of a gradient", f"{_a(bg)} and {c} gradient")


def caption_words(caption: str) -> list[str]:
    """The words of a caption, lower case."""
    return re.findall(r"[a-z]+", caption.lower())


# -- public API ----------------------------------------------------------------------------
def class_of(index: int) -> int:
    """The class (index into :data:`CLASS_NAMES`) of example ``index``, for any seed."""
    return _CYCLE[index % len(_CYCLE)]


def make_scene(index: int, seed: int = 0, size: int = 64) -> tuple[Image.Image, Scene]:
    """The RGB image of example ``index`` and what it shows; a pure function of
    ``(seed, index, size)``. Its class is :func:`class_of` ``(index)`` (``Scene.label``)."""
    if index < 0 or seed < 0 or size < 8:
        raise ValueError(f"need index >= 0, seed >= 0, size >= 8 (got {index}, {seed}, {size})")
    label = class_of(index)
    rng = np.random.default_rng([_SALT, seed, index])
    p = _KIND_P["shape" if label < len(SHAPES) else "texture"]
    kind = KINDS[int(rng.choice(len(KINDS), p=p))]
    x, y = _grid(size)
    img, scene = _KIND_DRAW[kind](rng, label, x, y, size)
    sigma = np.float32(rng.uniform(0.0, 0.03))
    img = img + sigma * rng.standard_normal(img.shape, dtype=np.float32)
    pixels = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="RGB"), scene


def caption_choice(index: int, seed: int, n: int) -> int:
    """Which of ``n`` caption variants example ``index`` uses (a stream apart from the image)."""
    return int(np.random.default_rng([_SALT, seed, index, 1]).integers(n))


def make_captioned(index: int, seed: int = 0, size: int = 64) -> tuple[Image.Image, str]:
    """The image of example ``index`` and one caption of it; a pure function of
    ``(seed, index, size)``.

    >>> image, caption = make_captioned(13)
    >>> image.size, CLASS_NAMES[class_of(13)], "checkerboard" in caption
    ((64, 64), 'checkerboard', True)
    >>> make_captioned(13)[1] == caption and make_captioned(13)[0].tobytes() == image.tobytes()
    True
    >>> all(w in CONCEPT_WORDS for i in range(24) for w in caption_words(make_captioned(i)[1]))
    True
    """
    image, scene = make_scene(index, seed, size)
    options = variants(scene)
    return image, options[caption_choice(index, seed, len(options))]
