"""The atlas on disk: layout, atomic writes, manifests and resume.

Layout of an atlas directory (``--out DIR``)::

    DIR/atlas.json                         config, model spec, weights id, versions
    DIR/visualize/recipes.json             the recipes' order as the visualize run asked for them
    DIR/visualize/<recipe>/L{layer:03d}/chunk-{start:05d}.json   a finished chunk of units
    DIR/visualize/<recipe>/L{layer:03d}/u{unit:05d}.png          the unit's visualization
    DIR/visualize/<recipe>/L{layer:03d}/u{unit:05d}.attr.png     its attribution map, if any
    DIR/visualize/<recipe>/L{layer:03d}/u{unit:05d}.d{k}.png     its image k = 1 … N-1 of
                                           N (``--diversity N``; image 0 is u{unit:05d}.png)
                                           (each PNG with its AVIF display copy beside it,
                                           ``.avif``: what the site shows, ``write_image``)
    DIR/index/examples.json                the dataset's examples and the index run; written
                                           last: its presence means the index is complete
    DIR/index/L{layer:03d}.npz             one layer's top-k, bottom-k, histograms, patch maps
                                           and whole-layer statistics (``LayerIndex``)
    DIR/index/image_stats.npz              the dataset's spectrum and colour statistics
    DIR/index/probe/L{layer:03d}.npz       the layer's profiles over the probe images
    DIR/index/probe/embeddings.npz         a labeler's embeddings of the probe images
    DIR/index/thumbs/{number:07d}.png      a thumbnail per selected example (and its .avif)
    DIR/index/work/r{rank}of{world}/...    checkpoints of an unfinished index run
    DIR/index/experiments.json             the model-output experiments (masked accuracy, CLS
                                           replaced by its mean: ``index.experiments``)
    DIR/index/work/experiments/state.npz   their checkpoint while unfinished
    DIR/label/label.json                   the labeler, concept set and SoftWPMI parameters
    DIR/label/L{layer:03d}.json            per unit, its top concepts and SoftWPMI scores
    DIR/label/cache/...                    labeler embeddings of the probe images and concepts
    DIR/relations/relations.json           the relations run: fingerprint, k, map method, layers
    DIR/relations/L{layer:03d}.npz         similar units per layer, the layer map, typical units
    DIR/relations/across/<slug>/L{layer:03d}.npz   similar units in another atlas (publish)
    DIR/build/docs/...                     generated Markdown for mkdocs (rebuildable)
    DIR/site/...                           the built static site

Outside any atlas, results that do not depend on the atlas are cached per user
(``user_cache_dir()``: ``$VIT_ATLAS_CACHE``, else ``$XDG_CACHE_HOME/vit-atlas``, else
``~/.cache/vit-atlas``)::

    CACHE/concepts/text-<key>.npz          a labeler's embeddings of a concept set (the key
                                           names both), shared by every atlas it labels

The store owns this layout: every stage asks it for its paths (what the files hold is each
stage's business: ``pipeline.index.results`` for the index). Every file is written to a
temporary name in the same directory and renamed into place, so a killed run leaves either
the old file or the new one, never half of one. A chunk's JSON is written last: its presence
means every image it names is on disk.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import struct
import tempfile
import threading
import zipfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, features

from pipeline.errors import AtlasError
from pipeline.version import ATLAS_VERSION

# atlas.json's format_version: the layout above. 2: visualizations per recipe, fidelity;
# 3: the index at format 5 (whole-layer statistics, bottom-k), DIR/visualize/recipes.json
FORMAT_VERSION = 3


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A file opened for writing under a temporary name beside ``path``, renamed to ``path``
    when the block ends without error (removed otherwise).

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "x.bin"
    >>> with atomic_file(target) as f:
    ...     _ = f.write(b"abc")
    >>> target.read_bytes()
    b'abc'
    """
    path = Path(path)
    # a name of this process and thread, created exclusively: open() gives it FILE_MODE
    # (mkstemp's random name costs more than the write of a small file; a site writes 100,000s)
    tmp: str | Path = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, flags, 0o666)
        chmod = False
    except FileExistsError:  # left by a process of the same id that stopped mid-write
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        chmod = True
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        if chmod:
            os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False))


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def read_npz(path: Path, mapped: Collection[str] = ()) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path`` (as ``atomic_save_npz`` writes them); those
    named in ``mapped`` are read-only memory maps of the file, not copies, so a process holds
    only the pages it reads and the kernel may drop them again (an array stored compressed,
    empty or of objects is read whole). A map keeps the file it opened: replacing the file
    (``atomic_save_npz`` renames a new one into place) does not change it.

    >>> import tempfile; p = Path(tempfile.mkdtemp()) / "a.npz"
    >>> atomic_save_npz(p, big=np.arange(6.0).reshape(2, 3), small=np.ones(2))
    >>> arrays = read_npz(p, mapped={"big"})
    >>> arrays["big"][1].tolist(), arrays["big"].flags.writeable, arrays["small"].tolist()
    ([3.0, 4.0, 5.0], False, [1.0, 1.0])
    """
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as fh:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if name in mapped and info.compress_type == zipfile.ZIP_STORED:
                fh.seek(info.header_offset + 26)  # the local header's name and extra lengths
                name_len, extra_len = struct.unpack("<HH", fh.read(4))
                fh.seek(info.header_offset + 30 + name_len + extra_len)
                version = np.lib.format.read_magic(fh)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(fh)
                if math.prod(shape) and not dtype.hasobject:
                    out[name] = np.asarray(np.memmap(path, dtype, "r", fh.tell(), shape,
                                                     "F" if fortran else "C"))
                    continue
            with archive.open(info) as member:
                out[name] = np.lib.format.read_array(member, allow_pickle=False)
    return out


# The site's display copies: AVIF, 4:4:4 (no colour subsampling: lossy WebP's 4:2:0 loses
# too much of the saturated colour detail of visualizations and shapes), at the first quality
# of DISPLAY_QUALITIES that keeps a PSNR of at least DISPLAY_MIN_PSNR dB against the image;
# where the first keeps DISPLAY_HEADROOM dB more than that (a smooth image: an attribution
# map), at DISPLAY_SMOOTH_QUALITY if that still keeps it. Measured on the demo's 64-px images
# (``scripts/bench_site.py --codecs``): 0.37-0.38x the bytes of format 13's WebP (lossy at
# quality 90 where that kept 38 dB, else lossless) for visualizations and thumbnails.
DISPLAY_SUFFIX = ".avif"
DISPLAY_QUALITIES = (93, 97, 100)  # libavif's quality (0-100); 100 is its best, near-lossless
DISPLAY_SMOOTH_QUALITY = 80
DISPLAY_MIN_PSNR = 38.0  # dB against the original
DISPLAY_HEADROOM = 6.0  # dB
DISPLAY_SPEED = 8  # libavif's encoder speed (0 slowest - 10): 8 is ~2x faster than 6, as small
_AVIF_MISSING = ("this Pillow cannot write AVIF (the site's image format): "
                 "pip install 'pillow>=11.3'")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, in dB (inf: identical).

    >>> psnr(np.zeros((2, 2), np.uint8), np.full((2, 2), 255, np.uint8))
    0.0
    """
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0 ** 2 / mse) if mse > 0 else float("inf")


def avif_bytes(image: Image.Image, quality: int) -> tuple[bytes, float]:
    """``image`` (RGB or RGBA) as 4:4:4 AVIF at ``quality``, and the PSNR it keeps. One
    encoder thread: the same bytes on every machine of the same libavif.

    >>> data, db = avif_bytes(Image.new("RGB", (8, 8), (200, 30, 30)), 93)
    >>> data[4:12], db > 38
    (b'ftypavif', True)
    """
    buf = io.BytesIO()
    image.save(buf, format="AVIF", quality=quality, subsampling="4:4:4", speed=DISPLAY_SPEED,
               max_threads=1)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as back:
        return data, psnr(np.asarray(back.convert(image.mode)), np.asarray(image))


def display_bytes(image: Image.Image) -> tuple[bytes, float]:
    """``image`` as the site shows it (``DISPLAY_SUFFIX``; the rule above), and the PSNR it
    keeps. Deterministic: the same pixels give the same bytes.

    >>> data, db = display_bytes(Image.new("RGB", (8, 8), (200, 30, 30)))
    >>> data[4:12], db >= DISPLAY_MIN_PSNR
    (b'ftypavif', True)
    """
    if not features.check("avif"):
        raise AtlasError(_AVIF_MISSING)
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    for quality in DISPLAY_QUALITIES:
        data, kept = avif_bytes(image, quality)
        if kept >= DISPLAY_MIN_PSNR:
            break
    if quality == DISPLAY_QUALITIES[0] and kept >= DISPLAY_MIN_PSNR + DISPLAY_HEADROOM:
        smooth = avif_bytes(image, DISPLAY_SMOOTH_QUALITY)
        if smooth[1] >= DISPLAY_MIN_PSNR:
            return smooth
    return data, kept


def display_copy_path(path: Path) -> Path:
    """The display copy beside an atlas image (the site shows it; the PNG is the record).

    >>> display_copy_path(Path("visualize/default/L000/u00005.png")).name
    'u00005.avif'
    """
    return Path(path).with_suffix(DISPLAY_SUFFIX)


def write_image(path: Path, image: np.ndarray) -> None:
    """An atlas image (uint8 ``(H, W, 3)`` or ``(H, W)``): its display copy
    (``display_bytes``), then the lossless PNG at ``path``, whose presence marks both written."""
    atomic_write_bytes(display_copy_path(path), display_bytes(Image.fromarray(image))[0])
    atomic_write_bytes(path, encode_png(image))


def encode_png(image: np.ndarray) -> bytes:
    """uint8 ``(H, W, 3)`` array to PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_json_if_any(path: Path) -> Any | None:
    """``read_json(path)``, or None when the file is absent (a stage that has not run)."""
    path = Path(path)
    return read_json(path) if path.is_file() else None


def user_cache_dir() -> Path:
    """The per-user cache of results shared by atlases (see the module docstring).

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"VIT_ATLAS_CACHE": "/tmp/vit-atlas-cache"}):
    ...     str(user_cache_dir())
    '/tmp/vit-atlas-cache'
    """
    if os.environ.get("VIT_ATLAS_CACHE"):
        return Path(os.environ["VIT_ATLAS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vit-atlas"


def concept_embeddings_path(key: str) -> Path:
    """Where the user cache keeps the concept embeddings named by ``key``."""
    return user_cache_dir() / "concepts" / f"text-{key}.npz"


def layer_file(directory: Path, layer: int, suffix: str) -> Path:
    """``directory/L{layer:03d}{suffix}``: every stage's per-layer file name.

    >>> layer_file(Path("DIR/label"), 3, ".json").name
    'L003.json'
    """
    return Path(directory) / f"L{layer:03d}{suffix}"


class SimilarUnits(Mapping[int, list[dict[str, Any]]]):
    """``AtlasStore.similar``'s mapping of a layer: each unit's list is made from the
    relations' arrays when asked for, not all at once (a layer of 4,096 units related to 25
    layers would make some 800,000 dicts up front, in every process that reads it).

    >>> parts = [{"model": "m", "units": np.array([3, 5]), "similar_layers": np.array([0]),
    ...           "similar_units": np.array([[[5, -1]], [[3, 4]]]),
    ...           "similar_scores": np.array([[[0.5, 0.0]], [[0.5, 0.25]]])}]
    >>> rows = SimilarUnits(parts)
    >>> list(rows), rows[3], len(rows[5]), rows.count(5)
    ([3, 5], [{'model': 'm', 'layer': 0, 'unit': 5, 'score': 0.5}], 2, 2)
    >>> rows.columns(5)
    (['m', 'm'], [0, 0], [3, 4], [0.5, 0.25])
    """

    def __init__(self, parts: list[Any]):
        self._parts = [(str(p["model"]), np.asarray(p["similar_layers"]), p["similar_units"],
                        p["similar_scores"]) for p in parts]
        self._rows = {int(u): r for r, u in enumerate(parts[0]["units"].tolist())} \
            if parts else {}

    def columns(self, unit: int) -> tuple[list[str], list[int], list[int], list[float]]:
        """``unit``'s entries as columns: models, layers, units, scores (rounded to 4
        places), in the mapping's order, without a dict per entry."""
        r = self._rows[unit]
        models: list[str] = []
        layers: list[int] = []
        units: list[int] = []
        scores: list[float] = []
        for model, groups, ids, sims in self._parts:
            found = ids[r]  # (groups, k); -1: no unit
            keep = found >= 0
            n = int(keep.sum())
            if n:
                models += [model] * n
                layers += np.broadcast_to(groups[:, None], found.shape)[keep].tolist()
                units += found[keep].tolist()
                scores += [round(s, 4) for s in sims[r][keep].tolist()]
        return models, layers, units, scores

    def count(self, unit: int) -> int:
        """How many entries ``unit`` has (``len(self[unit])``, without making them)."""
        r = self._rows[unit]
        return sum(int((ids[r] >= 0).sum()) for _, _, ids, _ in self._parts)

    def __contains__(self, unit: object) -> bool:
        return unit in self._rows

    def __getitem__(self, unit: int) -> list[dict[str, Any]]:
        return [{"model": m, "layer": layer, "unit": u, "score": s}
                for m, layer, u, s in zip(*self.columns(unit), strict=True)]

    def __iter__(self) -> Iterator[int]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


class ChunkedResults(Mapping[int, dict[str, Any]]):
    """``AtlasStore.vis_results(..., lazy=True)``: a recipe's results of one layer, each
    chunk's parsed when one of its units is asked for and kept while it is among the
    ``cached`` last asked for. Only the units' places are held (some 100 bytes a unit), not
    their results (some 2 KiB a unit as dicts: a layer of 100,000 units would hold 200 MB in
    every process that reads it). The same keys, order and results as ``vis_results``;
    reading in unit order parses each chunk once.

    >>> import tempfile
    >>> store = AtlasStore(tempfile.mkdtemp())
    >>> for start in (0, 2):
    ...     atomic_write_json(store.vis_chunk_path(0, start, "r"), {"recipe": {"name": "r"},
    ...         "units": [{"unit": u, "activation": float(u)} for u in (start, start + 1)]})
    >>> rows = store.vis_results(0, "r", lazy=True)
    >>> list(rows), rows[3]["activation"], 5 in rows, dict(rows) == store.vis_results(0, "r")
    ([0, 1, 2, 3], 3.0, False, True)
    """

    def __init__(self, paths: Sequence[Path], cached: int = 2):
        self._paths = list(paths)
        self._cached = cached
        self._chunks: dict[int, dict[int, dict[str, Any]]] = {}  # the last read, oldest first
        self._where: dict[int, int] = {}  # unit -> its chunk, in vis_results' order
        for c in range(len(self._paths)):
            for unit in self._chunk(c):  # a later chunk's result wins, as in vis_results
                self._where[unit] = c

    def _chunk(self, c: int) -> dict[int, dict[str, Any]]:
        found = self._chunks.pop(c, None)
        if found is None:
            chunk = read_json(self._paths[c])
            recipe = chunk.get("recipe") or {}
            found = {r["unit"]: {**r, "recipe": recipe} for r in chunk["units"]}
            while len(self._chunks) >= self._cached:
                del self._chunks[next(iter(self._chunks))]
        self._chunks[c] = found
        return found

    def __getitem__(self, unit: int) -> dict[str, Any]:
        return self._chunk(self._where[unit])[unit]

    def __contains__(self, unit: object) -> bool:
        return unit in self._where

    def __iter__(self) -> Iterator[int]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


class AtlasStore:
    """Read and write one atlas directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- manifest ---------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "atlas.json"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> dict[str, Any]:
        if not self.exists():
            raise AtlasError(f"{self.root} holds no atlas (no atlas.json): run `vit-atlas build`")
        return read_json(self.manifest_path)

    def init(self, config: dict[str, Any], model: dict[str, Any], weights_id: str) -> None:
        """Write ``atlas.json``; refuse to mix results of another model or weights."""
        if self.exists():
            old = self.manifest()
            for key, new in (("model", model["name"]), ("weights_id", weights_id)):
                was = old["model"]["name"] if key == "model" else old.get(key)
                if was != new:
                    raise AtlasError(
                        f"{self.root} already holds an atlas of {key} '{was}', not '{new}': "
                        "choose another out directory", option="out"
                    )
            was, now = old["model"]["layers"], json.loads(json.dumps(model["layers"]))
            if was[:len(now)] != now[:len(was)]:
                raise AtlasError(f"{self.root} holds an atlas of a differently shaped model "
                                 "(other model_kwargs?): choose another out directory",
                                 option="out")
            if len(was) > len(now):  # a run of fewer kinds keeps the others' layers
                model = {**model, "layers": was}
        atomic_write_json(self.manifest_path, {
            "format_version": FORMAT_VERSION,
            "atlas_version": ATLAS_VERSION,
            "config": config,
            "model": model,
            "weights_id": weights_id,
        }, indent=2)

    # -- index ------------------------------------------------------------------------------
    @property
    def index_dir(self) -> Path:
        """``DIR/index``: the dataset index (see ``pipeline.index.results`` for its files)."""
        return self.root / "index"

    @property
    def examples_path(self) -> Path:
        """``DIR/index/examples.json``, written last: its presence means the index is complete.

        >>> AtlasStore("DIR").examples_path.as_posix()
        'DIR/index/examples.json'
        """
        return self.index_dir / "examples.json"

    def index_layer_path(self, layer: int) -> Path:
        """``DIR/index/L{layer:03d}.npz``: one layer's ``LayerIndex``."""
        return layer_file(self.index_dir, layer, ".npz")

    @property
    def image_stats_path(self) -> Path:
        """``DIR/index/image_stats.npz``: the dataset's image statistics."""
        return self.index_dir / "image_stats.npz"

    @property
    def probe_dir(self) -> Path:
        """``DIR/index/probe``: profiles over the probe images, and their embeddings."""
        return self.index_dir / "probe"

    def probe_path(self, layer: int) -> Path:
        """``DIR/index/probe/L{layer:03d}.npz``: one layer's ``ProbeProfiles``."""
        return layer_file(self.probe_dir, layer, ".npz")

    @property
    def probe_embeddings_path(self) -> Path:
        """``DIR/index/probe/embeddings.npz``: a labeler's embeddings of the probe images."""
        return self.probe_dir / "embeddings.npz"

    @property
    def thumbs_dir(self) -> Path:
        """``DIR/index/thumbs``: one thumbnail per selected example."""
        return self.index_dir / "thumbs"

    @property
    def index_work_dir(self) -> Path:
        """``DIR/index/work``: checkpoints of an unfinished index run."""
        return self.index_dir / "work"

    @property
    def experiments_path(self) -> Path:
        """``DIR/index/experiments.json``: the index stage's model-output experiments.

        >>> AtlasStore("DIR").experiments_path.as_posix()
        'DIR/index/experiments.json'
        """
        return self.index_dir / "experiments.json"

    @property
    def experiments_work_dir(self) -> Path:
        """``DIR/index/work/experiments``: the experiments' checkpoint while unfinished."""
        return self.index_work_dir / "experiments"

    def experiments(self) -> dict[str, Any] | None:
        """``experiments.json`` (see ``pipeline.index.experiments.result``), or None (not
        measured, or unreadable)."""
        try:
            return read_json_if_any(self.experiments_path)
        except (OSError, ValueError):
            return None

    def index_info(self) -> dict[str, Any] | None:
        """``examples.json`` of a complete index, or None (none, or unreadable).

        >>> AtlasStore("/nonexistent").index_info() is None
        True
        """
        try:
            return read_json_if_any(self.examples_path)
        except (OSError, ValueError):
            return None

    # -- visualizations ---------------------------------------------------------------------
    @property
    def vis_order_path(self) -> Path:
        """``DIR/visualize/recipes.json``: ``{"order": [recipe name, ...]}`` as last asked."""
        return self.root / "visualize" / "recipes.json"

    def write_vis_order(self, names: Sequence[str]) -> None:
        """Record the order of the recipes a visualize run was asked for (their names, as
        their results are filed: a recipe file's name is the one inside it).

        >>> import tempfile
        >>> store = AtlasStore(tempfile.mkdtemp())
        >>> store.write_vis_order(["polish25", "default"])
        >>> for name in ("default", "polish25", "paper"):
        ...     (store.root / "visualize" / name).mkdir(parents=True)
        >>> store.vis_recipes()
        ['polish25', 'default', 'paper']
        """
        atomic_write_json(self.vis_order_path, {"order": list(names)})

    def vis_order(self) -> list[str]:
        """The recorded recipe order (empty before a visualize run records one)."""
        try:
            data = read_json_if_any(self.vis_order_path) or {}
        except (OSError, ValueError):
            return []
        return [str(n) for n in data.get("order", [])]

    def vis_recipes(self) -> list[str]:
        """Names of the recipes with results, in the recorded order (the first is the one a
        feature page shows first), then any others found on disk, by name."""
        root = self.root / "visualize"
        found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        order = self.vis_order()
        return [n for n in order if n in found] + [n for n in found if n not in order]

    def _recipe_name(self, recipe: str | None) -> str:
        if recipe is not None:
            return recipe
        found = self.vis_recipes() or self.vis_order()
        return found[0] if found else "default"

    def vis_dir(self, layer: int, recipe: str | None = None) -> Path:
        """``DIR/visualize/<recipe>/L{layer:03d}``; ``recipe=None``: the atlas's first recipe."""
        return self.root / "visualize" / self._recipe_name(recipe) / f"L{layer:03d}"

    def vis_chunk_path(self, layer: int, start: int, recipe: str | None = None) -> Path:
        return self.vis_dir(layer, recipe) / f"chunk-{start:05d}.json"

    @staticmethod
    def vis_image_name(unit: int, image: int = 0) -> str:
        """A unit's visualization file; ``image`` k > 0: its k-th further image (``diversity``).

        >>> AtlasStore.vis_image_name(12), AtlasStore.vis_image_name(12, 1)
        ('u00012.png', 'u00012.d1.png')
        """
        return f"u{unit:05d}.png" if image == 0 else f"u{unit:05d}.d{image}.png"

    @staticmethod
    def vis_attribution_name(unit: int) -> str:
        return f"u{unit:05d}.attr.png"

    def vis_chunk_units(self, layer: int, start: int, recipe: dict[str, Any],
                        index_id: str | None = None, diversity: int = 1) -> set[int]:
        """The units a finished chunk holds, if it was made with ``recipe`` against the index
        ``index_id`` with ``diversity`` images per unit; else none (a changed recipe, index
        or number of images redoes the chunk)."""
        path = self.vis_chunk_path(layer, start, recipe["name"])
        try:
            chunk = read_json(path) if path.is_file() else {}
        except (OSError, ValueError):
            return set()
        if (chunk.get("recipe") != recipe or chunk.get("index") != index_id
                or chunk.get("diversity", 1) != diversity):
            return set()
        return {r["unit"] for r in chunk.get("units", [])}

    def vis_chunk_done(self, layer: int, start: int, recipe: dict[str, Any],
                       units: Sequence[int] = (), index_id: str | None = None,
                       diversity: int = 1) -> bool:
        """Whether a chunk made with ``recipe`` against ``index_id`` (``diversity`` images
        per unit) holds every unit of ``units`` (a rerun with other ``--channels`` redoes a
        chunk that lacks some)."""
        have = self.vis_chunk_units(layer, start, recipe, index_id, diversity)
        return bool(have) and set(units) <= have

    def write_vis_chunk(self, layer: int, start: int, recipe: dict[str, Any],
                        results: list[dict[str, Any]], images: list[np.ndarray],
                        attributions: list[np.ndarray] | None = None,
                        index_id: str | None = None,
                        more_images: list[list[np.ndarray]] | None = None,
                        pool: Executor | None = None) -> None:
        """Images (uint8 ``(H, W, 3)``) and attribution maps (uint8 ``(H, W)``, optional)
        first, then the chunk JSON that marks them finished. ``recipe`` is the recipe's dict
        (``Recipe.to_dict()``, with its ``name``): it is saved with every chunk. ``pool``:
        threads that encode and write the images (each its own files; the same bytes).

        ``more_images``: per result, the unit's further images 1 … N-1 (``diversity``
        N > 1), written as ``vis_image_name(unit, k)``; their names go to the result's
        ``diversity["images"]`` and N to the chunk's ``diversity``.

        >>> import tempfile
        >>> store = AtlasStore(tempfile.mkdtemp())
        >>> im = np.zeros((4, 4, 3), np.uint8)
        >>> results = [{"unit": 3, "activation": 1.0, "diversity": {"activations": [0.5]}}]
        >>> store.write_vis_chunk(0, 0, {"name": "r"}, results, [im], more_images=[[im]])
        >>> store.vis_results(0, "r")[3]["diversity"]["images"]
        ['u00003.d1.png']
        >>> store.vis_chunk_done(0, 0, {"name": "r"}, [3]), store.vis_chunk_done(
        ...     0, 0, {"name": "r"}, [3], diversity=2)
        (False, True)
        """
        directory = self.vis_dir(layer, recipe["name"])
        files: list[tuple[Path, np.ndarray]] = []
        for i, (result, image) in enumerate(zip(results, images, strict=True)):
            name = self.vis_image_name(result["unit"])
            files.append((directory / name, image))
            result["image"] = name
            if attributions is not None:
                name = self.vis_attribution_name(result["unit"])
                files.append((directory / name, attributions[i]))
                result["attribution"] = name
            if more_images is not None:
                names = [self.vis_image_name(result["unit"], k + 1)
                         for k in range(len(more_images[i]))]
                files += [(directory / name, extra)
                          for name, extra in zip(names, more_images[i], strict=True)]
                result["diversity"] = {"images": names, **result.get("diversity", {})}
        paths, arrays = zip(*files, strict=True) if files else ((), ())
        for _ in (pool.map if pool is not None else map)(write_image, paths, arrays):
            pass  # a failed write raises here, before the chunk JSON
        chunk = {"layer": layer, "start": start, "recipe": recipe, "index": index_id}
        if more_images is not None:
            chunk["diversity"] = 1 + max((len(m) for m in more_images), default=0)
        atomic_write_json(self.vis_chunk_path(layer, start, recipe["name"]),
                          {**chunk, "units": results})

    def vis_results(self, layer: int, recipe: str | None = None, *,
                    lazy: bool = False) -> Mapping[int, dict[str, Any]]:
        """{unit: {"unit", "activation", "image", "fidelity", "attribution"?, "recipe"}} of
        every finished chunk of ``layer`` (``"recipe"``: the chunk's recipe dict); ``lazy``:
        read chunk by chunk as units are asked for (``ChunkedResults``), else a dict."""
        paths = sorted(self.vis_dir(layer, recipe).glob("chunk-*.json"))
        if lazy:
            return ChunkedResults(paths)
        out: dict[int, dict[str, Any]] = {}
        for path in paths:
            chunk = read_json(path)
            for result in chunk["units"]:
                out[result["unit"]] = {**result, "recipe": chunk.get("recipe") or {}}
        return out

    # -- labels -----------------------------------------------------------------------------
    @property
    def label_dir(self) -> Path:
        return self.root / "label"

    def label_info(self) -> dict[str, Any] | None:
        """``DIR/label/label.json``: ``{"labeler", "labeler_id", "concepts": {"source",
        "count", "digest"}, "params", "probe_images", "fingerprint"}``; None before labelling."""
        return read_json_if_any(self.label_dir / "label.json")

    def write_label_info(self, info: dict[str, Any]) -> None:
        atomic_write_json(self.label_dir / "label.json", info, indent=2)

    def label_path(self, layer: int) -> Path:
        return layer_file(self.label_dir, layer, ".json")

    def labels_done(self, layer: int, fingerprint: str) -> bool:
        """Whether ``layer`` was labelled with the labelling run ``fingerprint``."""
        path = self.label_path(layer)
        try:
            return path.is_file() and read_json(path).get("fingerprint") == fingerprint
        except (OSError, ValueError):
            return False

    def write_labels(self, layer: int, fingerprint: str,
                     labels: dict[int, list[dict[str, Any]]]) -> None:
        """``labels``: ``{unit: [{"concept", "score"}, ...]}``, best first."""
        atomic_write_json(self.label_path(layer), {
            "layer": layer, "fingerprint": fingerprint,
            "units": [{"unit": int(u), "labels": labels[u]} for u in sorted(labels)],
        })

    def labels(self, layer: int) -> dict[int, list[dict[str, Any]]]:
        """``{unit: [{"concept", "score"}, ...]}`` best first; empty when not labelled (or
        labelled by another labelling run than the one ``label.json`` describes)."""
        info, path = self.label_info(), self.label_path(layer)
        if info is None or not path.is_file():
            return {}
        data = read_json(path)
        if data.get("fingerprint") != info.get("fingerprint"):
            return {}
        return {int(r["unit"]): list(r["labels"]) for r in data["units"]}

    # -- relations --------------------------------------------------------------------------
    @property
    def relations_dir(self) -> Path:
        return self.root / "relations"

    def relations_info(self) -> dict[str, Any] | None:
        """``DIR/relations/relations.json``: ``{"format_version", "fingerprint", "index",
        "model", "k", "map", "layers", "probe_images", "maps": {layer: {"method",
        "preservation"}}}``; None before the ``relations`` stage."""
        return read_json_if_any(self.relations_dir / "relations.json")

    def write_relations_info(self, info: dict[str, Any]) -> None:
        atomic_write_json(self.relations_dir / "relations.json", info, indent=2)

    def relations_path(self, layer: int) -> Path:
        return layer_file(self.relations_dir, layer, ".npz")

    def _relations_arrays(self, path: Path, fingerprint: str | None) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError):
            return None
        if fingerprint is not None and str(arrays.get("fingerprint")) != fingerprint:
            return None
        return arrays

    def relations_done(self, layer: int, fingerprint: str) -> bool:
        """Whether ``layer``'s relations were made by the relations run ``fingerprint``."""
        return self._relations_arrays(self.relations_path(layer), fingerprint) is not None

    def write_relations(self, layer: int, fingerprint: str, arrays: dict[str, np.ndarray]) -> None:
        """One layer's relations (see ``pipeline.relations.stage``), atomically."""
        atomic_save_npz(self.relations_path(layer), fingerprint=np.array(fingerprint), **arrays)

    def relations_across_path(self, other: str, layer: int) -> Path:
        """Similar units of ``layer`` in another atlas ``other`` (its model slug)."""
        return layer_file(self.relations_dir / "across" / other, layer, ".npz")

    def write_relations_across(self, other: str, layer: int, fingerprint: str,
                               arrays: dict[str, np.ndarray]) -> None:
        atomic_save_npz(self.relations_across_path(other, layer),
                        fingerprint=np.array(fingerprint), **arrays)

    def _current_relations(self, layer: int) -> dict[str, Any] | None:
        """The layer's relations if made by the run ``relations.json`` names, against the
        index the atlas holds now."""
        info, index = self.relations_info(), self.index_info()
        current = None if index is None else index.get("fingerprint")
        if info is None or info.get("index") != current:
            return None
        return self._relations_arrays(self.relations_path(layer), info.get("fingerprint"))

    def similar(self, layer: int) -> SimilarUnits:
        """``{unit: [{"model", "layer", "unit", "score"}, ...]}``: the unit's most correlated
        units in its own layer, then in each other layer of its model, then in each layer of
        every other atlas related to this one; best first within each (model, layer) group.
        Empty before the ``relations`` stage (or when its results are stale)."""
        found = self._current_relations(layer)
        if found is None:
            return SimilarUnits([])
        parts = [found]
        across = self.relations_dir / "across"
        if across.is_dir():
            for d in sorted(p for p in across.iterdir() if p.is_dir()):
                other = self._relations_arrays(layer_file(d, layer, ".npz"), None)
                if other is not None and np.array_equal(other["units"], found["units"]):
                    parts.append(other)
        return SimilarUnits(parts)

    def layer_map(self, layer: int) -> dict[str, Any] | None:
        """``{"method": "umap" | "pca", "preservation": float, "units": [{"unit", "x", "y"}],
        "typical": [{"unit", "size"}]}``: the layer's units in 2-D (x, y in [0, 1]) and its
        most typical units (nearest the centres of k-means clusters of the profiles, largest
        cluster first); None before the ``relations`` stage."""
        found = self._current_relations(layer)
        if found is None:
            return None
        xy = found["map_xy"].tolist()
        return {
            "method": str(found["map_method"]),
            "preservation": round(float(found["map_preservation"]), 4),
            "units": [{"unit": int(u), "x": round(p[0], 4), "y": round(p[1], 4)}
                      for u, p in zip(found["units"].tolist(), xy, strict=True)],
            "typical": [{"unit": int(u), "size": int(s)} for u, s in
                        zip(found["typical_units"].tolist(), found["typical_sizes"].tolist(),
                            strict=True)],
        }
