"""A procedural, labelled image dataset: shapes, stripes, checkers, textures and gradients.

Every image is a pure function of ``(seed, index, size)``: the label is ``index % NUM_CLASSES``
(so any run of consecutive indices is balanced) and everything else (colours, position, scale,
rotation, background, noise) is drawn from a numpy ``Generator`` seeded by ``(seed, index)``.
Colours are random for every class, so a class is defined by its pattern or shape, not its
colour. Drawing is vectorised numpy on a normalized ``[0, 1]²`` grid with about one pixel of
anti-aliasing, so the same ``(seed, index)`` gives the same picture at any ``size``.

The held-out set is the same generator with another seed (``SPLIT_SEEDS``).

Each drawing also gives its object *cover* (``make_mask``): the shape of a shape class, the
pattern's foreground colour of a stripe, checker, dot or blob class (its first colour for
full-frame patterns), nothing for a gradient. A pixel is object where the cover is >= 0.5.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.store import atomic_write_bytes, encode_png

CLASS_NAMES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "ring",
    "cross",
    "horizontal stripes",
    "vertical stripes",
    "diagonal stripes",
    "checkerboard",
    "dots",
    "noise blobs",
    "gradient",
)
NUM_CLASSES = len(CLASS_NAMES)
SPLIT_SEEDS = {"train": 0, "validation": 1}

_SALT = 0x5EED_A71A5  # keeps these streams apart from other users of SeedSequence([seed, i])
_TAU = 2.0 * np.pi

Array = np.ndarray
Pair = tuple[Array, Array]  # a drawing: (image, object cover)


# -- small helpers ---------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[Array, Array]:
    """Pixel-centre coordinates ``(x, y)`` in ``[0, 1]``, each ``(size, size)`` float32."""
    u = ((np.arange(size, dtype=np.float32) + 0.5) / size).astype(np.float32)
    return np.broadcast_to(u[None, :], (size, size)), np.broadcast_to(u[:, None], (size, size))


def _rotate(x: Array, y: Array, cx: float, cy: float, theta: float) -> tuple[Array, Array]:
    """Coordinates relative to ``(cx, cy)`` in a frame rotated by ``theta``."""
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    dx, dy = x - np.float32(cx), y - np.float32(cy)
    return c * dx + s * dy, -s * dx + c * dy


def _coverage(dist: Array, size: int) -> Array:
    """Signed distance (normalized units, < 0 inside) to an anti-aliased coverage in [0, 1]."""
    return np.clip(0.5 - dist * size, 0.0, 1.0)


def _box(u: Array, v: Array, hu: float, hv: float) -> Array:
    """Signed distance to an axis-aligned box with half sizes ``(hu, hv)``."""
    qu, qv = np.abs(u) - hu, np.abs(v) - hv
    outside = np.hypot(np.maximum(qu, 0.0), np.maximum(qv, 0.0))
    return outside + np.minimum(np.maximum(qu, qv), 0.0)


def _colour(rng: np.random.Generator) -> Array:
    return rng.random(3, dtype=np.float32)


def _contrasting(rng: np.random.Generator, other: Array, min_dist: float = 0.45) -> Array:
    """A random colour at least ``min_dist`` (RGB Euclidean) away from ``other``."""
    cands = rng.random((16, 3), dtype=np.float32)
    ok = np.linalg.norm(cands - other, axis=1) >= min_dist
    if ok.any():
        return cands[int(np.argmax(ok))]
    return np.where(other > 0.5, 0.0, 1.0).astype(np.float32)  # the far corner of the cube


def _mix(a: Array | np.floating, b: Array, alpha: Array) -> Array:
    """``a`` where alpha = 0, ``b`` where alpha = 1; colours (3,) or images (H, W, 3)."""
    return a + (b - a) * alpha[..., None]


def _background(rng: np.random.Generator, x: Array, y: Array) -> Array:
    """A random colour with a gentle linear gradient across it, ``(H, W, 3)``."""
    base = _colour(rng)
    theta = rng.uniform(0.0, _TAU)
    t = (x - 0.5) * np.float32(np.cos(theta)) + (y - 0.5) * np.float32(np.sin(theta))
    delta = rng.uniform(-0.2, 0.2, 3).astype(np.float32)
    return np.clip(base + t[..., None] * delta, 0.0, 1.0)


def _on_background(rng: np.random.Generator, x: Array, y: Array, cover: Array) -> Pair:
    """Paint ``cover`` in a colour that contrasts with a random background; (image, cover)."""
    bg = _background(rng, x, y)
    fg = _contrasting(rng, bg.mean(axis=(0, 1)))
    return _mix(bg, fg, cover), cover


def _two_tone(rng: np.random.Generator, cover: Array) -> Pair:
    """Two contrasting random colours mixed by ``cover`` (for full-frame patterns); (image,
    cover)."""
    a = _colour(rng)
    return _mix(a, _contrasting(rng, a), cover), cover


# -- shapes: one object on a background ----------------------------------------------------
def _shape_frame(rng: np.random.Generator, x: Array, y: Array) -> tuple[Array, Array, float]:
    r = float(rng.uniform(0.13, 0.27))
    cx, cy = rng.uniform(0.5 - (0.45 - r), 0.5 + (0.45 - r), 2)
    u, v = _rotate(x, y, cx, cy, rng.uniform(0.0, _TAU))
    return u, v, r


def _circle(rng: np.random.Generator, x: Array, y: Array, size: int) -> Pair:
    u, v, r = _shape_frame(rng, x, y)
    return _on_background(rng, x, y, _coverage(np.hypot(u, v) - r, size))


def _square(rng: np.random.Generator, x: Array, y: Array, size: int) -> Pair:
    u, v, r = _shape_frame(rng, x, y)
    h = r * 0.85
    return _on_background(rng, x, y, _coverage(_box(u, v, h, h), size))


def _triangle(rng: np.random.Generator, x: Array, y: Array, size: int) -> Pair:
    u, v, r = _shape_frame(rng, x, y)
    inradius = r * 0.55
    # Equilateral triangle = intersection of three half-planes with normals 120 degrees apart.
    dist = np.full_like(u, -np.inf)
    for k in range(3):
        a = np.pi / 2 + k * _TAU / 3
        dist = np.maximum(dist, u * np.float32(np.cos(a)) + v * np.float32(np.sin(a)) - inradius)
    return _on_background(rng, x, y, _coverage(dist, size))


def _ring(rng: np.random.Generator, x: Array, y: Array, size: int) -> Pair:
    u, v, r = _shape_frame(rng, x, y)
    half_width = r * rng.uniform(0.12, 0.25)
    return _on_background(rng, x, y, _coverage(np.abs(np.hypot(u, v) - r) - half_width, size))


def _cross(rng: np.random.Generator, x: Array, y: Array, size: int) -> Pair:
    u, v, r = _shape_frame(rng, x, y)
    w = r * rng.uniform(0.2, 0.35)
    dist = np.minimum(_box(u, v, r, w), _box(u, v, w, r))
    return _on_background(rng, x, y, _coverage(dist, size))


# -- periodic patterns over the whole frame ------------------------------------------------
def _square_wave(phase: Array, duty: float, px_per_rad: Array | float) -> Array:
    """Anti-aliased square wave from a phase field (radians); ``duty`` shifts stripe width."""
    return np.clip(0.5 + (np.sin(phase) - duty) * px_per_rad, 0.0, 1.0)


def _stripes(rng: np.random.Generator, x: Array, y: Array, size: int, angle: float) -> Pair:
    """Stripes running at ``angle`` (radians from horizontal), jittered by up to 12 degrees."""
    angle += rng.uniform(-1.0, 1.0) * np.deg2rad(12.0)
    freq = rng.uniform(2.5, 7.0)  # periods per image
    _, v = _rotate(x, y, 0.5, 0.5, angle)
    phase = v * np.float32(_TAU * freq) + np.float32(rng.uniform(0.0, _TAU))
    cover = _square_wave(phase, rng.uniform(-0.4, 0.4), size / (_TAU * freq))
    return _two_tone(rng, cover)


def _horizontal_stripes(rng: np.random.Generator, x: Array, y: Array, size: int) -> Pair:
    return _stripes(rng, x, y, size, 0.0)


def _vertical_stripes(rng: np.random.Generator, x: Array, y: Array, size: int) -> Pair:
    return _stripes(rng, x, y, size, np.pi / 2)


def _diagonal_stripes(rng: np.random.Generator, x: Array, y: Array, size: int) -> Pair:
    return _stripes(rng, x, y, size, np.pi / 4 if rng.random() < 0.5 else 3 * np.pi / 4)


def _checkerboard(rng: np.random.Generator, x: Array, y: Array, size: int) -> Pair:
    cells = rng.uniform(3.0, 8.0)  # cells per image side
    u, v = _rotate(x, y, 0.5, 0.5, rng.uniform(0.0, np.pi / 2))
    off = rng.uniform(0.0, _TAU, 2).astype(np.float32)
    k = np.float32(np.pi * cells)
    field = np.sin(u * k + off[0]) * np.sin(v * k + off[1])
    return _two_tone(rng, np.clip(0.5 + field * (size / (np.pi * cells)), 0.0, 1.0))


# -- textures ----------------------------------------------------------------------------
def _dots(rng: np.random.Generator, x: Array, y: Array, size: int) -> Pair:
    n = int(rng.integers(8, 31))
    centres = rng.random((n, 2), dtype=np.float32)
    radii = rng.uniform(0.025, 0.06, n).astype(np.float32)
    dist = np.hypot(x[None] - centres[:, 0, None, None], y[None] - centres[:, 1, None, None])
    return _on_background(rng, x, y, _coverage((dist - radii[:, None, None]).min(axis=0), size))


def _smooth_noise(rng: np.random.Generator, cells: int, size: int) -> Array:
    """Gaussian noise on a ``cells × cells`` lattice, bicubic-upsampled to ``size × size``."""
    low = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(low, mode="F").resize((size, size), Image.BICUBIC))


def _noise_blobs(rng: np.random.Generator, x: Array, y: Array, size: int) -> Pair:
    cells = int(rng.integers(3, 7))
    field = _smooth_noise(rng, cells, size)
    level = np.quantile(field, rng.uniform(0.3, 0.7))
    sharpness = rng.uniform(2.0, 6.0)
    return _two_tone(rng, np.clip(0.5 + (field - level) * sharpness, 0.0, 1.0))


def _gradient(rng: np.random.Generator, x: Array, y: Array, size: int) -> Pair:
    """A linear two-colour gradient; one in four is almost a solid colour."""
    theta = rng.uniform(0.0, _TAU)
    t = (x - 0.5) * np.float32(np.cos(theta)) + (y - 0.5) * np.float32(np.sin(theta))
    t = np.clip(t / np.float32(np.sqrt(0.5)) + 0.5, 0.0, 1.0) ** np.float32(rng.uniform(0.6, 1.6))
    a = _colour(rng)
    if rng.random() < 0.25:
        b = np.clip(a + rng.uniform(-0.12, 0.12, 3).astype(np.float32), 0.0, 1.0)
    else:
        b = _contrasting(rng, a, 0.35)
    return _mix(a, b, t), np.zeros_like(t)


# Each class's drawing with its object cover (make_mask), and the image alone (_DRAW, which
# other generators such as pipeline.data.captions call).
_DRAW_COVER: tuple[Callable[[np.random.Generator, Array, Array, int], Pair], ...] = (
    _circle,
    _square,
    _triangle,
    _ring,
    _cross,
    _horizontal_stripes,
    _vertical_stripes,
    _diagonal_stripes,
    _checkerboard,
    _dots,
    _noise_blobs,
    _gradient,
)
assert len(_DRAW_COVER) == NUM_CLASSES


def _image_only(draw: Callable[[np.random.Generator, Array, Array, int], Pair]
                ) -> Callable[[np.random.Generator, Array, Array, int], Array]:
    def image(rng: np.random.Generator, x: Array, y: Array, size: int) -> Array:
        return draw(rng, x, y, size)[0]

    image.__name__ = draw.__name__
    return image


_DRAW: tuple[Callable[[np.random.Generator, Array, Array, int], Array], ...] = tuple(
    _image_only(draw) for draw in _DRAW_COVER)


# -- public API ----------------------------------------------------------------------------
def make_example(index: int, seed: int = 0, size: int = 64) -> tuple[Image.Image, int]:
    """The RGB image and label of example ``index``; a pure function of ``(seed, index, size)``."""
    if index < 0 or seed < 0 or size < 8:
        raise ValueError(f"need index >= 0, seed >= 0, size >= 8 (got {index}, {seed}, {size})")
    label = index % NUM_CLASSES
    rng = np.random.default_rng([_SALT, seed, index])
    x, y = _grid(size)
    img = _DRAW[label](rng, x, y, size)
    sigma = np.float32(rng.uniform(0.0, 0.03))
    img = img + sigma * rng.standard_normal(img.shape, dtype=np.float32)
    pixels = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="RGB"), label


def make_mask(index: int, seed: int = 0, size: int = 64) -> Image.Image:
    """The object mask of example ``index`` (mode ``L``, 255 = object, 0 = background):
    where the drawing's cover is >= 0.5. Pure function of ``(seed, index, size)``.

    >>> m = np.asarray(make_mask(0, size=32)); m.shape, sorted(set(m.ravel().tolist()))
    ((32, 32), [0, 255])
    >>> int(np.asarray(make_mask(11, size=32)).max())  # a gradient has no object
    0
    """
    if index < 0 or seed < 0 or size < 8:
        raise ValueError(f"need index >= 0, seed >= 0, size >= 8 (got {index}, {seed}, {size})")
    rng = np.random.default_rng([_SALT, seed, index])
    x, y = _grid(size)
    _, cover = _DRAW_COVER[index % NUM_CLASSES](rng, x, y, size)
    return Image.fromarray(np.where(np.asarray(cover) >= 0.5, 255, 0).astype(np.uint8), mode="L")


def _split_seed(split: str) -> int:
    try:
        return SPLIT_SEEDS[split]
    except KeyError:
        raise ValueError(f"unknown split '{split}'; choose from {sorted(SPLIT_SEEDS)}") from None


def iter_examples(
    n: int, split: str = "validation", size: int = 64, start: int = 0
) -> Iterator[tuple[str, Image.Image, int]]:
    """``(id, image, label)`` for indices ``start … start + n - 1`` of ``split``.

    The id, ``synthetic-{split}-{index:06d}``, names the same image in every run.
    """
    seed = _split_seed(split)
    for index in range(start, start + n):
        image, label = make_example(index, seed, size)
        yield f"synthetic-{split}-{index:06d}", image, label


def class_dirname(name: str) -> str:
    """A filesystem-safe directory name: ``"horizontal stripes"`` → ``horizontal_stripes``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip()).strip("_") or "class"


def export_imagefolder(root: str | Path, n: int, split: str = "train", size: int = 64,
                       masks: str | Path | None = None) -> Path:
    """Write the first ``n`` examples of ``split`` as ``root/<class dir>/<id>.png`` and, with
    ``masks``, each one's object mask (``make_mask``) at the same relative path under it.

    Files are written atomically; ones already present are kept (a rerun resumes).
    Returns ``root``.
    """
    root = Path(root)
    dirs = [root / class_dirname(name) for name in CLASS_NAMES]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    seed = _split_seed(split)
    for index in range(n):
        label = index % NUM_CLASSES
        path = dirs[label] / f"synthetic-{split}-{index:06d}.png"
        if masks is not None:
            mask_path = Path(masks) / path.relative_to(root)
            if not mask_path.exists():
                mask = np.asarray(make_mask(index, seed, size))
                atomic_write_bytes(mask_path, encode_png(np.repeat(mask[..., None], 3, 2)))
        if path.exists():
            continue
        image, _ = make_example(index, seed, size)
        atomic_write_bytes(path, encode_png(np.asarray(image)))
    return root
