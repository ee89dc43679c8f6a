"""Image sources for the index: ``--dataset SPEC`` → a stream of numbered records.

Specs::

    hf:<id>[:<config>]     a Hugging Face hub dataset, streamed (``--split``); the default for
                           real runs is ImageNet-1k validation, ``hf:timm/imagenet-1k-wds``
                           (WebDataset shards, ungated). Alternatives: ``hf:ILSVRC/imagenet-1k``
                           (parquet, gated: accept the terms on its page first),
                           ``hf:evanarlian/imagenet_1k_resized_256`` (smaller, resized copy).
                           The token comes from ``HF_TOKEN`` or ``huggingface-cli login``.
    imagefolder:<dir>      ``dir/<class>/<image>`` (or ``dir/<split>/<class>/<image>``), read by
                           ``datasets``' own ``imagefolder`` builder
    webdataset:<dir>       local tar shards laid out like timm/imagenet-1k-wds: ``{key}.jpg`` +
                           ``{key}.cls`` (integer label) + optional ``{key}.json`` and
                           ``{key}.mask.png`` (the object mask, nonzero = object); tars whose
                           name contains the split (``...-validation-0000.tar``) are preferred
    synthetic:<n>          ``n`` procedural images from ``pipeline.data.synthetic``

A record is one example *before* decoding: its example number (position in the stream, the
same whatever the sharding), a stable id shown in the atlas, its label, and the undecoded
payload. Decoding (``Decoder``) is a separate picklable callable so that it runs inside
DataLoader workers, where a broken file costs one skipped example and never the run.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.errors import AtlasError

ID_COLUMNS = ("__key__", "id", "image_id", "file_name", "filename", "key")
LABEL_COLUMNS = ("label", "cls", "labels", "class", "target")
IMAGE_COLUMNS = ("image", "jpg", "jpeg", "png", "webp", "img")
MASK_COLUMNS = ("mask.png", "mask")  # a sample's object mask (``{key}.mask.png`` in a tar)
CLASS_NAME_KEYS = ("class_name", "label_name", "classname")  # in a webdataset ``.json``
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Record:
    """One undecoded example. ``id``/``label`` may be None until the decoder supplies them."""

    number: int
    payload: Any
    id: str | None = None
    label: int | None = None
    label_name: str | None = None
    mask: Any = None  # an undecoded object mask the source carries (a WebDataset mask.png)


@dataclass(frozen=True)
class Decoded:
    image: Image.Image  # RGB
    id: str
    label: int | None
    mask: Image.Image | None = None  # the object mask the source carries (nonzero = object)


# -- decoding -------------------------------------------------------------------------------
def to_rgb(img: Image.Image) -> Image.Image:
    """Fully decode ``img`` (raising on truncated data) and convert any mode to RGB.

    Transparency is composited on white; 16-bit and float images are scaled to 8 bits
    instead of being clipped; palette, grayscale, CMYK, YCbCr... go through PIL's converter.
    Animated files give their first frame.
    """
    img.load()
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max(initial=0.0)
        if img.mode.startswith("I;16") or top > 255:
            arr = arr * (255.0 / 65535.0)
        elif img.mode == "F" and top <= 1.0:
            arr = arr * 255.0
        img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        out = Image.new("RGB", rgba.size, WHITE)
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return img.convert("RGB")


def open_image(payload: dict[str, Any] | bytes | str) -> Image.Image:
    """An RGB image from ``datasets``' undecoded form ``{"bytes", "path"}``, bytes or a path."""
    if isinstance(payload, dict):
        data, path = payload.get("bytes"), payload.get("path")
    elif isinstance(payload, bytes | bytearray):
        data, path = payload, None
    else:
        data, path = None, payload
    if data is None:
        if path is None:
            raise ValueError("example has no image")
        if "://" in str(path):  # hub folders stream files by URL (hf://...)
            import fsspec

            with fsspec.open(path, "rb") as f:
                data = f.read()
        else:
            data = Path(path).read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        return to_rgb(img)


@dataclass(frozen=True)
class Decoder:
    """Picklable ``record → Decoded``: files and bytes, or drawing a synthetic image."""

    kind: str  # "file" | "synthetic"
    split: str = "validation"
    size: int = 64

    def __call__(self, record: Record) -> Decoded:
        if self.kind == "synthetic":
            from pipeline.data import synthetic

            ((id_, image, label),) = synthetic.iter_examples(1, self.split, self.size,
                                                             start=record.payload)
            return Decoded(image, id_, label)
        image = open_image(record.payload)
        mask = None
        if record.mask is not None:
            try:
                mask = (record.mask if isinstance(record.mask, Image.Image)
                        else open_image(record.mask)).convert("L")
            except Exception:  # a broken mask costs the example its mask, not its place
                mask = None
        return Decoded(image, record.id or f"#{record.number}", record.label, mask)


# -- class names ----------------------------------------------------------------------------
SYNSET = re.compile(r"^n\d{8}$")


@lru_cache(maxsize=1)
def _imagenet_info():
    from timm.data import ImageNetInfo

    return ImageNetInfo("imagenet-1k")


def readable_class_names(names: list[str]) -> list[str]:
    """WordNet synsets (``n01440764``) → the first lemma (``tench``), via timm's bundled
    tables; a name repeated that way gets its synset appended. Other names stay unchanged."""
    info = _imagenet_info()
    out = []
    for name in names:
        if SYNSET.match(name):
            try:
                name_ = info.label_name_to_description(name).split(",")[0].strip()
            except KeyError:
                name_ = name
            out.append(name_ or name)
        else:
            out.append(name)
    seen: dict[str, int] = {}
    for name in out:
        seen[name] = seen.get(name, 0) + 1
    return [
        f"{new} ({old})" if seen[new] > 1 and new != old else new
        for new, old in zip(out, names, strict=True)
    ]


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k classes in the standard label order, as readable names."""
    return readable_class_names(list(_imagenet_info().label_names()))


def looks_like_imagenet_1k(spec: str) -> bool:
    return re.search(r"imagenet[-_ ]?1k", spec, re.IGNORECASE) is not None


# -- hub errors -----------------------------------------------------------------------------
NETWORK_NAMES = {"ConnectError", "ConnectTimeout", "TimeoutException", "ReadTimeout",
                 "NetworkError", "OfflineModeIsEnabled", "gaierror", "MaxRetryError"}


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def hub_error(exc: BaseException, repo: str) -> AtlasError:
    """Translate what ``datasets``/``huggingface_hub`` raise into advice for the user."""
    chain = _chain(exc)
    names = {t.__name__ for e in chain for t in type(e).__mro__}
    text = " ".join(str(e) for e in chain)
    page = f"https://huggingface.co/datasets/{repo}"
    login = ("log in with `huggingface-cli login` (or `hf auth login`), or set HF_TOKEN to a "
             "read token from https://huggingface.co/settings/tokens")
    if "GatedRepoError" in names or re.search(r"\bgated\b", text, re.IGNORECASE):
        return AtlasError(f"dataset '{repo}' is gated on the Hugging Face hub and this account "
                          f"has no access: accept its terms on {page}, then {login}.")
    if names & NETWORK_NAMES or "ConnectionError" in names or "TimeoutError" in names \
            or "Couldn't reach" in text:
        return AtlasError(f"cannot reach the Hugging Face hub to stream '{repo}' (no network, "
                          "or HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set). Connect and rerun "
                          "(an interrupted index resumes), or use a local copy: "
                          "dataset imagefolder:<dir> or webdataset:<dir>.", option="dataset")
    status = next((getattr(getattr(e, "response", None), "status_code", None) for e in chain
                   if getattr(e, "response", None) is not None), None)
    if status in (401, 403):
        return AtlasError(f"the Hugging Face hub refused access to '{repo}' (HTTP {status}): "
                          f"check that you may use it on {page}, then {login}.")
    if names & {"RepositoryNotFoundError", "DatasetNotFoundError", "DataFilesNotFoundError"}:
        return AtlasError(f"dataset '{repo}' was not found on the Hugging Face hub (or is "
                          f"private): check the id at {page}; for a private one, {login}.")
    return AtlasError(f"cannot open dataset '{repo}': {type(exc).__name__}: {exc}")


# -- sources --------------------------------------------------------------------------------
class Source:
    """A numbered stream of records plus what the atlas shows about it."""

    spec: str
    split: str
    decoder: Decoder
    class_names: list[str] | None = None  # known up front (ClassLabel, ImageNet); else None
    length: int | None = None  # examples in the split, when known

    def records(self, rank: int = 0, world: int = 1, skip: int = 0,
                state: dict | None = None) -> Iterator[Record]:
        """Records with number ≡ rank (mod world), in increasing order, after the first
        ``skip`` of them (or from ``state``, a ``state_dict()`` saved at that point)."""
        raise NotImplementedError

    def state_dict(self) -> dict | None:
        """Resumable position just after the last record ``records()`` yielded (or None)."""
        return None


class SyntheticSource(Source):
    """``synthetic:<n>``: random access, so sharding and resuming are arithmetic."""

    def __init__(self, n: int, split: str, size: int = 64):
        from pipeline.data import synthetic

        if split not in synthetic.SPLIT_SEEDS:
            raise AtlasError(f"synthetic data has splits {sorted(synthetic.SPLIT_SEEDS)}, "
                             f"not '{split}'")
        self.spec, self.split, self.length = f"synthetic:{n}", split, n
        self.decoder = Decoder("synthetic", split, max(8, size))
        self.class_names = list(synthetic.CLASS_NAMES)

    def records(self, rank: int = 0, world: int = 1, skip: int = 0,
                state: dict | None = None) -> Iterator[Record]:
        for number in range(rank + world * skip, self.length, world):
            yield Record(number, number)


class HFSource(Source):
    """Any ``datasets`` IterableDataset: hub datasets and the local folder/tar builders.

    ``load()`` opens the dataset; every stream gets a freshly opened one, because a
    ``load_state_dict()`` (resume) sticks to the dataset object and its example iterables
    and would make later streams (the maps pass) start there too.
    """

    def __init__(self, spec: str, split: str, load: Callable[[], Any],
                 root: Path | None = None):
        from datasets import ClassLabel
        from datasets import Image as HFImage

        self.spec, self.split, self.root, self._load = spec, split, root, load
        self.decoder = Decoder("file", split)
        dataset = self._with_features(load())
        features = dataset.features
        if features is None:
            raise AtlasError(f"{spec}: cannot tell the columns of this dataset")
        self.mask_col = next((c for c in MASK_COLUMNS if c in features), None)
        self.image_col = next((c for c, f in features.items() if isinstance(f, HFImage)
                               and c not in MASK_COLUMNS), None) \
            or next((c for c in IMAGE_COLUMNS if c in features), None)
        if self.image_col is None:
            raise AtlasError(f"{spec}: no image column among {list(features)}")
        self.label_col = next((c for c, f in features.items() if isinstance(f, ClassLabel)), None)
        if self.label_col is not None:
            self.class_names = readable_class_names(list(features[self.label_col].names))
        else:
            self.label_col = next((c for c in LABEL_COLUMNS if c in features), None)
            if self.label_col is not None and looks_like_imagenet_1k(spec):
                self.class_names = imagenet_class_names()
        self.id_col = next((c for c in ID_COLUMNS if c in features), None)
        self.json_col = "json" if "json" in features else None
        self._undecoded = isinstance(features.get(self.image_col), HFImage)
        self._unused: Any = self._prepare(dataset)
        splits = getattr(dataset.info, "splits", None) or {}
        info = splits.get(split) if hasattr(splits, "get") else None
        self.length = getattr(info, "num_examples", None) or None
        self._live: Any = None

    @staticmethod
    def _with_features(dataset: Any) -> Any:
        if dataset.features is None:
            dataset = dataset._resolve_features()  # reads one example to learn the columns
        return dataset

    def _prepare(self, dataset: Any) -> Any:
        dataset = self._with_features(dataset)
        return dataset.decode(False) if self._undecoded else dataset  # decode in workers

    def _fresh(self) -> Any:
        ds, self._unused = self._unused, None
        return ds if ds is not None else self._prepare(self._load())

    def records(self, rank: int = 0, world: int = 1, skip: int = 0,
                state: dict | None = None) -> Iterator[Record]:
        from datasets.distributed import split_dataset_by_node

        ds = self._fresh()
        if world > 1:  # "examples": rank keeps examples i ≡ rank (mod world): global numbers
            ds = split_dataset_by_node(ds, rank=rank, world_size=world, strategy="examples")
        resumed = False
        if state is not None:
            try:
                ds.load_state_dict(state)
                resumed = True
            except Exception:  # another datasets version: fall back to skipping
                resumed = False
        self._live = ds
        j = skip
        try:
            stream = iter(ds)
            if skip and not resumed:  # read past them: ``ds.skip`` counts before the node split
                for _ in itertools.islice(stream, skip):
                    pass
            for ex in stream:
                yield self._record(ex, rank + world * j)
                j += 1
        except AtlasError:
            raise
        except Exception as exc:
            if self.spec.startswith("hf:"):
                raise hub_error(exc, self.spec[3:].split(":")[0]) from exc
            raise AtlasError(f"{self.spec}: reading example {rank + world * j} failed: "
                             f"{type(exc).__name__}: {exc}") from exc

    def state_dict(self) -> dict | None:
        return None if self._live is None else self._live.state_dict()

    def _record(self, ex: dict[str, Any], number: int) -> Record:
        payload = ex.get(self.image_col)
        label = ex.get(self.label_col) if self.label_col else None
        label = int(label) if isinstance(label, int | np.integer) and label >= 0 else None
        name = None
        meta = ex.get(self.json_col) if self.json_col else None
        if isinstance(meta, dict):
            name = next((meta[k] for k in CLASS_NAME_KEYS if isinstance(meta.get(k), str)), None)
        mask = ex.get(self.mask_col) if self.mask_col else None
        return Record(number, payload, self._id(ex, payload, number), label, name, mask)

    def _id(self, ex: dict[str, Any], payload: Any, number: int) -> str:
        if self.root is not None and isinstance(payload, dict) and payload.get("path") \
                and not payload.get("bytes"):
            try:
                return Path(payload["path"]).resolve().relative_to(self.root).as_posix()
            except ValueError:
                pass
        if self.id_col is not None and ex.get(self.id_col) not in (None, ""):
            return str(ex[self.id_col])
        return f"{self.split}-{number:08d}"


# -- opening a spec -------------------------------------------------------------------------
def _hf_token() -> str | None:
    return os.environ.get("HF_TOKEN") or None  # None: huggingface_hub uses the stored login


def _pick_split(dsets: Any, split: str, where: str) -> Any:
    names = list(dsets)
    if split in dsets:
        return dsets[split]
    if len(names) == 1:  # a plain folder has one split, whatever it is called
        return dsets[names[0]]
    raise AtlasError(f"{where} has splits {names}, not '{split}': set split to one of them",
                     option="split")


def _open_imagefolder(path: Path, split: str) -> Source:
    import datasets

    if not path.is_dir():
        raise AtlasError(f"imagefolder: {path} is not a directory")
    def load() -> Any:
        try:
            dsets = datasets.load_dataset("imagefolder", data_dir=str(path), streaming=True)
        except Exception as exc:
            raise AtlasError(f"imagefolder:{path}: no readable images ({type(exc).__name__}: "
                             f"{exc})") from exc
        return _pick_split(dsets, split, str(path))

    return HFSource(f"imagefolder:{path}", split, load, root=path.resolve())


def _open_webdataset(path: Path, split: str) -> Source:
    import datasets

    tars = sorted(p for p in path.rglob("*.tar")) if path.is_dir() else []
    if not tars:
        raise AtlasError(f"webdataset: no .tar shards under {path}")
    keyed = [p for p in tars if re.search(rf"(^|[-_.]){re.escape(split)}([-_.]|$)", p.name)]
    files = [str(p) for p in (keyed or tars)]
    def load() -> Any:
        try:
            return datasets.load_dataset("webdataset", data_files={split: files}, split=split,
                                         streaming=True)
        except Exception as exc:
            raise AtlasError(f"webdataset:{path}: cannot read the shards "
                             f"({type(exc).__name__}: {exc})") from exc

    return HFSource(f"webdataset:{path}", split, load)


def _open_hub(repo: str, config: str | None, split: str) -> Source:
    import datasets

    def load() -> Any:
        try:
            return datasets.load_dataset(repo, config, split=split, streaming=True,
                                         token=_hf_token())
        except ValueError as exc:
            if "split" in str(exc).lower():
                raise AtlasError(f"hf:{repo}: {exc} (set split)", option="split") from exc
            raise hub_error(exc, repo) from exc
        except Exception as exc:
            raise hub_error(exc, repo) from exc

    return HFSource(f"hf:{repo}" + (f":{config}" if config else ""), split, load)


def open_source(spec: str, split: str = "validation", image_size: int = 64) -> Source:
    """Open ``--dataset SPEC`` (see the module doc). ``image_size``: synthetic drawing size."""
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise AtlasError(f"bad dataset '{spec}': expected hf:<id>[:<config>], "
                         "imagefolder:<dir>, webdataset:<dir> or synthetic:<n>")
    if kind == "synthetic":
        try:
            n = int(rest)
        except ValueError:
            n = -1
        if n <= 0:
            raise AtlasError(f"bad dataset '{spec}': synthetic:<n> needs a positive count")
        return SyntheticSource(n, split, image_size)
    if kind == "imagefolder":
        return _open_imagefolder(Path(rest).expanduser(), split)
    if kind == "webdataset":
        return _open_webdataset(Path(rest).expanduser(), split)
    if kind == "hf":
        repo, _, config = rest.partition(":")
        return _open_hub(repo, config or None, split)
    raise AtlasError(f"unknown dataset kind '{kind}' in '{spec}': use hf:, imagefolder:, "
                     "webdataset: or synthetic:")


def json_safe_state(state: dict | None) -> str | None:
    """A ``state_dict()`` as JSON text for a checkpoint, or None if it is not JSON-able."""
    if state is None:
        return None
    try:
        return json.dumps(state)
    except (TypeError, ValueError):
        return None
