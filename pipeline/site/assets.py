"""Cheap renderings of a feature's numbers: histogram as one SVG path, heatmaps as bytes.

Heatmaps are drawn in the browser: each top example's patch map is quantized to uint8 on a
scale shared by the feature's top-k (so overlays compare), base64-encoded into the page
(``encode_maps``: the same self-describing form ``feature.json`` holds its maps in), and
painted on a ``rows x cols`` canvas through a fixed colormap that the legend also shows.
Measured against writing one PNG overlay per example (``scripts/bench_site.py``), this costs
no files and no encoder time.
"""

from __future__ import annotations

import base64
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.store import (  # noqa: F401 - DISPLAY_*: the site's image encoding, from the store
    DISPLAY_MIN_PSNR,
    DISPLAY_SUFFIX,
    atomic_write_bytes,
    display_bytes,
    display_copy_path,
)

HIST_W, HIST_H = 300, 80


def heatmap_scale(maps: np.ndarray) -> tuple[float, float]:
    """``(lo, hi)`` shared by a feature's maps: ``lo = min(0, min)``, ``hi = max``."""
    if maps.size == 0:
        return 0.0, 1.0
    lo = min(0.0, float(maps.min()))
    hi = float(maps.max())
    return lo, hi if hi > lo else lo + 1.0


MAP_ENCODINGS = {"uint8-base64": 8, "uint4-base64": 4}  # name: bits a value


def _figure(x: float) -> float:
    """``x`` to 6 significant digits (what a scale or offset is written with)."""
    return float(f"{x:.6g}")


def encode_maps(maps: np.ndarray, lo: float | None = None, hi: float | None = None,
                bits: int = 8) -> dict:
    """``(..., rows, cols)`` float maps as one self-describing object, the form of every patch
    map in ``feature.json`` and on the feature page (``decode_maps``, and ``decode`` in
    ``assets/atlas.js``, read it back)::

        {"encoding": "uint8-base64", "shape": [k, rows, cols], "scale": s, "offset": o,
         "data": "<base64 of the k*rows*cols values, row-major, one byte each>"}

    A value is ``offset + scale * byte``; ``offset`` (``lo``) is left out when 0, as it is
    for maps that are nowhere negative. ``lo, hi`` default to ``heatmap_scale(maps)``, so 0
    is exact and the largest value is byte 255. ``bits=4``: ``"uint4-base64"``, 16 levels,
    two values a byte, high nibble first, an odd count ending in a zero nibble (the page's
    small quantile overlays). NaN counts as 0. Decoded values lie within ``scale / 2`` of the
    maps' (clipped to ``[lo, hi]``).

    >>> m = np.array([[[0.0, 0.5], [1.0, -0.2]]], np.float32)
    >>> enc = encode_maps(m)
    >>> enc["encoding"], enc["shape"], enc["scale"], enc["offset"], enc["data"]
    ('uint8-base64', [1, 2, 2], 0.00470588, -0.2, 'K5X/AA==')
    >>> bool(np.abs(decode_maps(enc) - m).max() <= enc["scale"] / 2)
    True
    """
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float64))
    if lo is None or hi is None:
        lo, hi = heatmap_scale(maps)
    if bits not in (4, 8):
        raise ValueError(f"maps are encoded at 4 or 8 bits, not {bits}")
    top = (1 << bits) - 1
    offset, scale = _figure(lo), _figure((hi - lo) / top)
    q = np.clip(np.rint((maps - offset) / scale), 0, top).astype(np.uint8).reshape(-1)
    if bits == 4:
        if q.size % 2:
            q = np.append(q, np.uint8(0))
        q = (q[0::2] << 4) | q[1::2]
    out: dict = {"encoding": f"uint{bits}-base64", "shape": [int(n) for n in maps.shape],
                 "scale": scale}
    if offset != 0:
        out["offset"] = offset
    out["data"] = base64.b64encode(q.tobytes()).decode("ascii")
    return out


def decode_maps(enc: dict) -> np.ndarray:
    """The float32 maps of an ``encode_maps`` object, in its ``shape``.

    >>> decode_maps({"encoding": "uint4-base64", "shape": [3], "scale": 0.5, "data": "H/A="})
    array([0.5, 7.5, 7.5], dtype=float32)
    """
    bits = MAP_ENCODINGS.get(enc.get("encoding"))
    if bits is None:
        raise ValueError(f"unknown map encoding {enc.get('encoding')!r} (known: "
                         f"{', '.join(MAP_ENCODINGS)})")
    shape = [int(n) for n in enc["shape"]]
    n = int(np.prod(shape))
    raw = np.frombuffer(base64.b64decode(enc["data"]), np.uint8)
    if bits == 4:
        raw = np.stack([raw >> 4, raw & 15], 1).reshape(-1)
    if raw.size < n:
        raise ValueError(f"map data holds {raw.size} values, its shape {shape} needs {n}")
    values = enc.get("offset", 0.0) + enc["scale"] * raw[:n].astype(np.float64)
    return values.astype(np.float32).reshape(shape)


def decode_record(obj: object) -> object:
    """``obj`` (a ``feature.json`` record, or any part of one) with every ``encode_maps``
    object replaced by its maps as nested lists of floats (``decode_maps``), and a whole
    record's compact fields written out (``expand_record``): what
    ``pipeline.open(...).feature(...)`` returns. Everything else is left as it is.

    >>> decode_record({"maps": {"encoding": "uint8-base64", "shape": [1, 2], "scale": 0.5,
    ...                         "data": "AAI="}, "n": 3})
    {'maps': [[0.0, 1.0]], 'n': 3}
    """
    if isinstance(obj, dict) and "format_version" in obj and "similar" in obj:
        obj = expand_record(obj)
    if isinstance(obj, dict):
        if "encoding" in obj and "data" in obj and "shape" in obj:
            return decode_maps(obj).tolist()
        return {k: decode_record(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_record(v) for v in obj]
    return obj


def expand_record(record: dict) -> dict:
    """A ``feature.json`` record (format 11) with what it leaves to be inferred written out,
    as format 10 wrote it: ``similar``'s ``model`` (null or, from format 15, absent: the
    feature's own model) and ``slug`` (absent: null for every unit), the examples' and
    ``top_classes``' ``label`` (format 15: the record's ``class_names`` name each class
    once), ``histogram``'s ``edges`` (from its ``range``:
    bins of equal width), the examples' ``image`` column (from ``images``, their URL with
    ``{example}`` for the number), in ``top`` and ``quantiles``, and the primary recipe's
    entry of ``recipes`` (its ``recipe``, ``visualization``, ``activation``, ``fidelity``,
    ``attribution`` and, from format 12, ``diversity``: the record's own). Other records and
    fields are returned as they are.

    >>> r = expand_record({"format_version": 11, "model": "m", "similar": {
    ...     "model": [None, "o"], "layer": [0, 1], "unit": [2, 3], "score": [0.5, 0.4]},
    ...     "histogram": {"counts": [3, 0, 1], "range": [-0.5, 1.0]}})
    >>> r["similar"]["model"], r["similar"]["slug"], r["histogram"]["edges"]
    (['m', 'o'], [None, None], [-0.5, 0.0, 0.5, 1.0])
    >>> expand_record({"recipe": {"steps": 2}, "visualization": "v.avif", "activation": 1.5,
    ...                "recipes": [{"name": "a"}, {"name": "b", "visualization": "b.avif"}]}
    ...               )["recipes"][0]  # doctest: +NORMALIZE_WHITESPACE
    {'name': 'a', 'recipe': {'steps': 2}, 'visualization': 'v.avif', 'activation': 1.5,
     'fidelity': None}
    >>> expand_record({"top": {"example": [7, 3], "images": "../x/e{example}.avif"}})["top"]
    {'example': [7, 3], 'image': ['../x/e7.avif', '../x/e3.avif']}
    >>> expand_record({"model": "m", "similar": {"layer": [0], "unit": [2], "score": [0.5]},
    ...                "top_classes": {"label_index": [4, 9], "mean": [1.5, 1.0]},
    ...                "class_names": {"4": "tench"}})["top_classes"]["label"]
    ['tench', '9']
    """
    out = dict(record)
    recipes = out.get("recipes")
    if recipes and "visualization" not in recipes[0] and out.get("visualization") is not None:
        first = {"name": recipes[0]["name"], "recipe": out.get("recipe"),
                 "visualization": out["visualization"], "activation": out.get("activation"),
                 "fidelity": out.get("fidelity")}
        if "attribution" in out:
            first["attribution"] = out["attribution"]
        if "diversity" in out:  # format 12: several images per unit
            first["diversity"] = out["diversity"]
        out["recipes"] = [{**first, **recipes[0]}, *recipes[1:]]
    if "top" in out:
        out["top"] = _expand_images(out["top"])
    quantiles = out.get("quantiles")
    if isinstance(quantiles, dict) and "examples" in quantiles:
        out["quantiles"] = {**quantiles, "examples": _expand_images(quantiles["examples"])}
    sim = out.get("similar")
    if isinstance(sim, dict) and "unit" in sim:
        out["similar"] = expand_similar(sim, record.get("model"))
    names = out.get("class_names")
    if isinstance(names, dict):  # format 15: each class named once; its rows' label again
        for key in ("top", "top_classes"):
            out[key] = _expand_labels(out.get(key), names)
        if isinstance(out.get("quantiles"), dict):
            q = out["quantiles"]
            out["quantiles"] = {**q, "examples": _expand_labels(q.get("examples"), names)}
    hist = out.get("histogram")
    if isinstance(hist, dict) and "edges" not in hist and "range" in hist:
        lo, hi = hist["range"]
        n = len(hist["counts"])
        edges = [float(f"{lo + (hi - lo) * i / n:.6g}") for i in range(n + 1)] if n else [lo, hi]
        out["histogram"] = {**hist, "edges": edges}
    return out


def expand_similar(similar: dict[str, list], model: str | None) -> dict[str, list]:
    """``feature.json``'s ``similar`` columns with every unit's ``model`` (null, or from
    format 15 no column: ``model``, the feature's own) and ``slug`` (no column: null).

    >>> expand_similar({"layer": [0], "unit": [2], "score": [0.5]}, "m")["model"]
    ['m']
    """
    out = dict(similar)
    models = out.get("model", [None] * len(out["unit"]))
    out["model"] = [model if m is None else m for m in models]
    out.setdefault("slug", [None] * len(out["unit"]))
    return out


def _expand_labels(cols: object, names: dict[str, str]) -> object:
    """Columns with ``label_index`` and no ``label``: the ``label`` column again, each class's
    name from ``names`` (its number as text where it has none, as format 14 wrote it)."""
    if not isinstance(cols, dict) or "label_index" not in cols or "label" in cols:
        return cols
    labels = [None if c is None else names.get(str(c), str(c)) for c in cols["label_index"]]
    return {**cols, "label": labels}


def _expand_images(cols: object) -> object:
    if not isinstance(cols, dict) or "images" not in cols:
        return cols
    out = {k: v for k, v in cols.items() if k != "images"}
    out["image"] = [cols["images"].replace("{example}", str(n)) for n in cols["example"]]
    return out


def significant_decimals(values: np.ndarray, digits: int = 4) -> int:
    """Decimals that keep ``digits`` significant digits of the largest magnitude in ``values``."""
    top = float(np.abs(values).max()) if values.size else 0.0
    if top == 0.0 or not math.isfinite(top):
        return digits
    return max(0, digits - 1 - math.floor(math.log10(top)))


def histogram_path(counts: np.ndarray) -> tuple[str, str]:
    """Bars of ``counts`` (log scale) in a ``HIST_W x HIST_H`` box, as one filled SVG path in
    bin units (``M0 <bottom>``, then ``V<top>h<bins>`` for each run of bins of one height, to
    whole pixels; a bin that holds images at least 1 pixel high), and the x scale of a bin
    (the path's ``transform``): about 5 bytes a bin, against 12 for a stroked line per bar.

    >>> histogram_path(np.array([0, 9, 99, 99, 0, 0, 0]))
    ('M0 80h1V40h1V0h2V80h3z', '42.86')
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.size == 0:
        return "", "1"
    heights = np.log1p(counts)
    top = float(heights.max()) or 1.0
    tops = np.rint(HIST_H - heights / top * HIST_H).astype(int)
    tops[(counts > 0) & (tops >= HIST_H)] = HIST_H - 1  # a bin with images shows
    parts, y, run = [f"M0 {HIST_H}"], HIST_H, 0
    for t in tops.tolist():
        if t != y and run:
            parts.append(f"h{run}")
            run = 0
        if t != y:
            parts.append(f"V{t}")
            y = t
        run += 1
    parts.append(f"h{run}")
    if y != HIST_H:
        parts.append(f"V{HIST_H}")
    return "".join(parts) + "z", f"{HIST_W / counts.size:.4g}"


def clip_histogram(counts: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``counts`` and ``edges`` without the empty bins at either end (all of them when every
    bin is empty), so that the axis spans the scores images reached.

    >>> c, e = clip_histogram(np.array([0, 2, 0, 1, 0, 0]), np.arange(7.0))
    >>> c.tolist(), e.tolist()
    ([2, 0, 1], [1.0, 2.0, 3.0, 4.0])
    """
    counts, edges = np.asarray(counts), np.asarray(edges)
    full = np.flatnonzero(counts)
    if full.size == 0:
        return counts, edges
    lo, hi = int(full[0]), int(full[-1]) + 1
    return counts[lo:hi], edges[lo:hi + 1]


def histogram_x(value: float, edges: np.ndarray) -> float | None:
    """Horizontal position of ``value`` on a histogram drawn over ``edges``."""
    lo, hi = float(edges[0]), float(edges[-1])
    if not (math.isfinite(value) and hi > lo):
        return None
    return round(min(max((value - lo) / (hi - lo), 0.0), 1.0) * HIST_W, 1)


def write_display(src: Path, dst: Path) -> int:
    """Put the display copy of the atlas image ``src`` (a PNG: it stays as it is, lossless) at
    ``dst``, atomically and world-readable; its size in bytes. The display copy the stage that
    made ``src`` wrote beside it (``store.display_copy_path``) is linked; an atlas made before
    those copies (or with WebP ones, before site format 14) has its image encoded here
    (``display_bytes``: the same bytes)."""
    copy = display_copy_path(Path(src))
    try:
        link_or_copy(copy, dst)
        return os.stat(dst).st_size
    except FileNotFoundError:  # no display copy: an atlas made before them
        pass
    with Image.open(src) as image:
        data, _ = display_bytes(image)
    dst.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dst, data)
    if os.stat(dst).st_mode & 0o444 != 0o444:
        os.chmod(dst, 0o644)
    return len(data)


def display_copy(path: str) -> str:
    """``store.display_copy_path`` of ``path`` given as text (no ``Path`` made: the site
    stage links thousands).

    >>> paths = ("v/L001/u00005.png", "v.d/u1", "v/.png", "v/u.x.png", "v/u.", "u.png")
    >>> [display_copy(p) for p in paths] == [str(display_copy_path(Path(p))) for p in paths]
    True
    """
    head, sep, name = path.rpartition("/")
    i = name.rfind(".")  # Path.suffix: a dot neither first nor last in the name
    return f"{head}{sep}{name[:i] if 0 < i < len(name) - 1 else name}{DISPLAY_SUFFIX}"


def link_display(src: str, dst: str) -> None:
    """``write_display(src, dst)`` in fewer system calls where, as in the site stage's fresh
    folder, the display copy of ``src`` is there to link and ``dst`` is not: one hard link
    and one ``stat`` of the file linked (to make it world-readable, as ``link_or_copy``
    does), against two ``stat`` calls and ``Path`` objects; anything else (no display copy,
    no folder, another file system, ``dst`` there already) goes to ``write_display``."""
    try:
        os.link(display_copy(src), dst)
    except OSError:
        write_display(Path(src), Path(dst))
        return
    mode = os.stat(dst).st_mode
    if mode & 0o444 != 0o444:
        os.chmod(dst, mode | 0o444)


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def write_new(path: str, data: bytes) -> None:
    """Write ``data`` to ``path``, a new file in a folder no one reads before it is complete
    (the site stage's fresh site folder, which a failed build removes whole), its folder made
    if missing: written in place, not under a temporary name renamed into place
    (``atomic_write_bytes``, which a file already at ``path`` gets: replaced, not written
    through, as it may be a link to the atlas's). The file's mode is ``open``'s, as there.

    >>> import tempfile
    >>> where = tempfile.mkdtemp() + "/a/b.txt"
    >>> write_new(where, b"1"); write_new(where, b"22"); Path(where).read_bytes()
    b'22'
    """
    for attempt in (1, 2):
        try:
            fd = os.open(path, _NEW_FILE, 0o666)
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except FileExistsError:
            atomic_write_bytes(Path(path), data)
            return
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def link_or_copy(src: Path, dst: Path) -> None:
    """Put ``src`` at ``dst`` atomically: a hard link where the file system allows, else a copy.

    Linked files share the store's inode, so they are made world-readable (as pages are).
    """
    mode = os.stat(src).st_mode  # FileNotFoundError: no src
    if mode & 0o444 != 0o444:
        os.chmod(src, mode | 0o444)
    try:
        os.link(src, dst)  # a new name appears whole: nothing to rename into place
        return
    except FileNotFoundError:
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        os.link(src, tmp)
    except OSError:
        atomic_write_bytes(dst, Path(src).read_bytes())
        return
    os.replace(tmp, dst)
