"""The atlas on disk: layout, atomic writes, manifests and resume.

Layout of an atlas directory (``--out DIR``)::

    DIR/atlas.json                         config, model spec, weights id, versions
    DIR/visualize/<recipe>/L{layer:03d}/chunk-{start:05d}.json   a finished chunk of units
    DIR/visualize/<recipe>/L{layer:03d}/u{unit:05d}.png          the unit's visualization
    DIR/visualize/<recipe>/L{layer:03d}/u{unit:05d}.attr.png     its attribution map, if any
    DIR/index/...                          dataset top-k, histograms, patch maps, thumbnails
    DIR/index/probe/...                    per-unit profiles over the probe images (see index)
    DIR/label/label.json                   the labeler, concept set and SoftWPMI parameters
    DIR/label/L{layer:03d}.json            per unit, its top concepts and SoftWPMI scores
    DIR/label/cache/...                    labeler embeddings of the probe images and concepts
    DIR/build/docs/...                     generated Markdown for mkdocs (rebuildable)
    DIR/site/...                           the built static site

Every file is written to a temporary name in the same directory and renamed into place, so
a killed run leaves either the old file or the new one, never half of one. A chunk's JSON is
written last: its presence means every image it names is on disk.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline import ATLAS_VERSION
from pipeline.errors import AtlasError

FORMAT_VERSION = 2  # 2: visualizations per recipe, fidelity


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False))


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def encode_png(image: np.ndarray) -> bytes:
    """uint8 ``(H, W, 3)`` array to PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


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
                        "choose another --out"
                    )
            if old["model"]["layers"] != json.loads(json.dumps(model["layers"])):
                raise AtlasError(f"{self.root} holds an atlas of a differently shaped model "
                                 "(other --model-kwargs?): choose another --out")
        atomic_write_json(self.manifest_path, {
            "format_version": FORMAT_VERSION,
            "atlas_version": ATLAS_VERSION,
            "config": config,
            "model": model,
            "weights_id": weights_id,
        }, indent=2)

    # -- visualizations ---------------------------------------------------------------------
    def vis_recipes(self) -> list[str]:
        """Names of the recipes with results, in the config's ``recipe`` order (the first is
        the one a feature page shows first), then any others found on disk, by name."""
        root = self.root / "visualize"
        found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        order = []
        if self.exists():
            order = [r.strip() for r in str(self.manifest()["config"].get("recipe", "")).split(",")]
        return [n for n in order if n in found] + [n for n in found if n not in order]

    def _recipe_name(self, recipe: str | None) -> str:
        if recipe is not None:
            return recipe
        found = self.vis_recipes()
        if found:
            return found[0]
        if self.exists():
            return str(self.manifest()["config"].get("recipe", "default")).split(",")[0].strip()
        return "default"

    def vis_dir(self, layer: int, recipe: str | None = None) -> Path:
        """``DIR/visualize/<recipe>/L{layer:03d}``; ``recipe=None``: the atlas's first recipe."""
        return self.root / "visualize" / self._recipe_name(recipe) / f"L{layer:03d}"

    def vis_chunk_path(self, layer: int, start: int, recipe: str | None = None) -> Path:
        return self.vis_dir(layer, recipe) / f"chunk-{start:05d}.json"

    @staticmethod
    def vis_image_name(unit: int) -> str:
        return f"u{unit:05d}.png"

    @staticmethod
    def vis_attribution_name(unit: int) -> str:
        return f"u{unit:05d}.attr.png"

    def vis_chunk_units(self, layer: int, start: int, recipe: dict[str, Any],
                        index_id: str | None = None) -> set[int]:
        """The units a finished chunk holds, if it was made with ``recipe`` against the index
        ``index_id``; else none (a changed recipe or index redoes the chunk)."""
        path = self.vis_chunk_path(layer, start, recipe["name"])
        try:
            chunk = read_json(path) if path.is_file() else {}
        except (OSError, ValueError):
            return set()
        if chunk.get("recipe") != recipe or chunk.get("index") != index_id:
            return set()
        return {r["unit"] for r in chunk.get("units", [])}

    def vis_chunk_done(self, layer: int, start: int, recipe: dict[str, Any],
                       units: Sequence[int] = (), index_id: str | None = None) -> bool:
        """Whether a chunk made with ``recipe`` against ``index_id`` holds every unit of
        ``units`` (a rerun with other ``--channels`` redoes a chunk that lacks some)."""
        have = self.vis_chunk_units(layer, start, recipe, index_id)
        return bool(have) and set(units) <= have

    def write_vis_chunk(self, layer: int, start: int, recipe: dict[str, Any],
                        results: list[dict[str, Any]], images: list[np.ndarray],
                        attributions: list[np.ndarray] | None = None,
                        index_id: str | None = None) -> None:
        """Images (uint8 ``(H, W, 3)``) and attribution maps (uint8 ``(H, W)``, optional)
        first, then the chunk JSON that marks them finished. ``recipe`` is the recipe's dict
        (``Recipe.to_dict()``, with its ``name``): it is saved with every chunk."""
        directory = self.vis_dir(layer, recipe["name"])
        for i, (result, image) in enumerate(zip(results, images, strict=True)):
            name = self.vis_image_name(result["unit"])
            atomic_write_bytes(directory / name, encode_png(image))
            result["image"] = name
            if attributions is not None:
                name = self.vis_attribution_name(result["unit"])
                atomic_write_bytes(directory / name, encode_png(attributions[i]))
                result["attribution"] = name
        atomic_write_json(self.vis_chunk_path(layer, start, recipe["name"]), {
            "layer": layer, "start": start, "recipe": recipe, "index": index_id,
            "units": results,
        })

    def vis_results(self, layer: int, recipe: str | None = None) -> dict[int, dict[str, Any]]:
        """{unit: {"unit", "activation", "image", "fidelity", "attribution"?, "recipe"}} of
        every finished chunk of ``layer`` (``"recipe"``: the chunk's recipe dict)."""
        out: dict[int, dict[str, Any]] = {}
        for path in sorted(self.vis_dir(layer, recipe).glob("chunk-*.json")):
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
        path = self.label_dir / "label.json"
        return read_json(path) if path.is_file() else None

    def write_label_info(self, info: dict[str, Any]) -> None:
        atomic_write_json(self.label_dir / "label.json", info, indent=2)

    def label_path(self, layer: int) -> Path:
        return self.label_dir / f"L{layer:03d}.json"

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
