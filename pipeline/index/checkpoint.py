"""Resumable state of the streaming pass, one set of files per process under DIR/index/work/.

``work/r{rank}of{world}/state.npz``
    every layer's statistics (heaps, histograms, sums) as arrays ``L{layer:03d}.{name}``, the
    dataset's image statistics (``images.{name}``, see ``image_stats``), plus ``meta`` (JSON): the
    index fingerprint, how many of this rank's records were consumed, the source's
    ``state_dict()`` there, and whether the pass finished.
``work/r{rank}of{world}/examples-{start:010d}.json``
    the records (number, id, label) consumed between two checkpoints, so that the list of all
    examples never has to sit in memory. A chunk is written before the state that covers it.

``work/r{rank}of{world}/maps-state.json`` and ``maps-{start:010d}.npz``
    the same for the second pass: where it stands (records consumed, source state, images
    done, failed decodes), and the patch maps found between two checkpoints.

All are written atomically; a killed run resumes from the last state and gives the same
result as an uninterrupted one.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.index.image_stats import ImageStats
from pipeline.index.loader import Batch
from pipeline.index.stats import LayerStats
from pipeline.store import atomic_save_npz, atomic_write_json, read_json


def rank_dir(work: Path, rank: int, world: int) -> Path:
    return work / f"r{rank}of{world}"


@dataclass
class PassState:
    meta: dict[str, Any]
    stats: dict[int, dict[str, np.ndarray]]
    images: dict[str, np.ndarray] = field(default_factory=dict)  # ImageStats.state()


def save_state(path: Path, meta: dict[str, Any], stats: dict[int, LayerStats],
               images: ImageStats | None = None) -> None:
    arrays = {f"L{index:03d}.{key}": value
              for index, s in stats.items() for key, value in s.state().items()}
    if images is not None:
        arrays.update({f"images.{key}": value for key, value in images.state().items()})
    arrays["meta"] = np.array(json.dumps(meta))
    atomic_save_npz(path, **arrays)


def load_state(path: Path) -> PassState | None:
    """The saved state, or None if absent or unreadable (then the pass starts over)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            stats: dict[int, dict[str, np.ndarray]] = {}
            images: dict[str, np.ndarray] = {}
            for key in z.files:
                if key == "meta":
                    continue
                group, _, name = key.partition(".")
                if group == "images":
                    images[name] = z[key]
                else:
                    stats.setdefault(int(group[1:]), {})[name] = z[key]
        return PassState(meta, stats, images)
    except (OSError, ValueError, KeyError):
        return None


@dataclass
class ExampleLog:
    """Records consumed since the last checkpoint; flushed to a chunk file at each one."""

    dir: Path
    start: int = 0  # this rank's consumed count where the pending chunk begins
    records: list[list] = field(default_factory=list)
    skipped: list[list] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)

    def add(self, batch: Batch) -> None:
        for number, ident, label, name in batch.records:
            self.records.append([number, ident, label])
            if label is not None and name is not None:
                self.names.setdefault(label, name)
        self.skipped.extend([list(s) for s in batch.skipped])

    def flush(self, end: int) -> None:
        atomic_write_json(self.dir / f"examples-{self.start:010d}.json", {
            "start": self.start, "end": end, "records": self.records, "skipped": self.skipped,
            "names": {str(k): v for k, v in self.names.items()},
        })
        self.start, self.records, self.skipped, self.names = end, [], [], {}

    def drop_after(self, consumed: int) -> None:
        """Remove chunks a killed run wrote past its last saved state."""
        for path in self.dir.glob("examples-*.json"):
            if int(path.stem.split("-")[1]) >= consumed:
                path.unlink(missing_ok=True)

    def read(self) -> tuple[list[list], list[list], dict[int, str]]:
        """All flushed records (ordered), skipped entries and class names of this rank."""
        records: list[list] = []
        skipped: list[list] = []
        names: dict[int, str] = {}
        expect = 0
        for path in sorted(self.dir.glob("examples-*.json")):
            chunk = read_json(path)
            if chunk["start"] != expect:
                raise RuntimeError(f"index work files are inconsistent at {path}")
            expect = chunk["end"]
            records.extend(chunk["records"])
            skipped.extend(chunk["skipped"])
            for k, v in chunk["names"].items():
                names.setdefault(int(k), v)
        return records, skipped, names


# layer -> [(flat slots, maps, masking figures or None)]
MapPieces = dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]]


@dataclass
class MapsProgress:
    consumed: int = 0  # records of this rank's share read by the second pass
    source_state: str | None = None
    done: int = 0  # selected images run so far
    failed: list[list] = field(default_factory=list)
    finished: bool = False


@dataclass
class MapsLog:
    """Checkpoints of the second pass: a chunk file of new maps, then the state covering it."""

    dir: Path
    fingerprint: str

    @property
    def state_path(self) -> Path:
        return self.dir / "maps-state.json"

    def _chunks(self) -> list[tuple[int, Path]]:
        return sorted((int(p.stem.split("-")[1]), p) for p in self.dir.glob("maps-*.npz"))

    def progress(self) -> MapsProgress | None:
        """The saved progress of this configuration's pass, if any."""
        try:
            saved = read_json(self.state_path)
        except (OSError, ValueError):
            return None
        if not saved or saved.get("fingerprint") != self.fingerprint:
            return None
        return MapsProgress(saved["consumed"], saved["source_state"], saved["done"],
                            saved["failed"], saved["finished"])

    def load(self) -> tuple[MapsProgress, MapPieces]:
        """The saved progress and maps (dropping chunks past it), or a fresh start."""
        progress = self.progress()
        if progress is None:
            for _, path in self._chunks():
                path.unlink(missing_ok=True)
            return MapsProgress(), {}
        pieces: MapPieces = {}
        for start, path in self._chunks():
            if start >= progress.consumed:  # written by a killed run after its last state
                path.unlink(missing_ok=True)
                continue
            with np.load(path, allow_pickle=False) as z:
                for key in z.files:
                    if key.endswith(".slots"):
                        layer = key.removesuffix(".slots")
                        figs = z[f"{layer}.figures"] if f"{layer}.figures" in z.files else None
                        pieces.setdefault(int(layer[1:]), []).append(
                            (z[key], z[f"{layer}.maps"], figs))
        return progress, pieces

    def save(self, start: int, progress: MapsProgress, new: MapPieces) -> None:
        """Write the maps found since ``start`` (this rank's consumed count), then the state."""
        arrays = {}
        for index, parts in new.items():
            if parts:
                arrays[f"L{index:03d}.slots"] = np.concatenate([p[0] for p in parts])
                arrays[f"L{index:03d}.maps"] = np.concatenate([p[1] for p in parts])
                if parts[0][2] is not None:
                    arrays[f"L{index:03d}.figures"] = np.concatenate([p[2] for p in parts])
        if arrays:
            atomic_save_npz(self.dir / f"maps-{start:010d}.npz", **arrays)
        atomic_write_json(self.state_path, {
            "fingerprint": self.fingerprint, "consumed": progress.consumed,
            "source_state": progress.source_state, "done": progress.done,
            "failed": progress.failed, "finished": progress.finished,
        })


def clear(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
