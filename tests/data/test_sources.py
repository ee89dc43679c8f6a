"""Dataset sources: specs, local folders and tars through ``datasets``, decoding of odd files,
class names, sharding/resume of the streams, and the hub's error paths."""

from __future__ import annotations

import io
import types
from pathlib import Path

import datasets
import numpy as np
import pytest
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub.errors import GatedRepoError, OfflineModeIsEnabled, RepositoryNotFoundError
from PIL import Image

from pipeline.data import synthetic
from pipeline.data.sources import (
    Record,
    hub_error,
    open_image,
    open_source,
    readable_class_names,
    to_rgb,
)
from pipeline.errors import AtlasError
from pipeline.index.stage import run_index
from tests.index.support import (
    BROKEN,
    HTML_NAME,
    odd_images,
    tiny_run,
    write_imagefolder,
    write_webdataset,
)


# -- decoding ---------------------------------------------------------------------------------
def test_odd_images_decode_to_rgb_and_broken_ones_raise():
    for name, data in odd_images().items():
        if name in BROKEN:
            with pytest.raises(Exception):  # noqa: B017 - PIL raises several types
                open_image({"bytes": data, "path": name})
            continue
        img = open_image({"bytes": data, "path": name})
        assert img.mode == "RGB", name
        img.load()
        expect = {"one_pixel.png": (1, 1), "wide.png": (3000, 50)}.get(name, (48, 48))
        assert img.size == expect, name


def test_conversions_are_faithful():
    # transparency composites on white, not black
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    out = np.asarray(to_rgb(rgba))
    assert tuple(out[1, 1]) == (255, 255, 255) and tuple(out[0, 0]) == (0, 0, 255)
    # 16-bit grayscale is scaled to 8 bits, not clipped at 255
    deep = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    buf = io.BytesIO()
    deep.save(buf, format="PNG")
    out = np.asarray(open_image(buf.getvalue()))
    assert out[0, :, 0].tolist() == [0, 128, 255]
    # palette with a transparent index
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.info["transparency"] = 0
    out = np.asarray(to_rgb(pal))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[0, 1]) == (10, 200, 30)
    # CMYK goes through PIL's converter
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))
    assert tuple(np.asarray(to_rgb(cmyk))[0, 0]) == (255, 0, 0)


def test_truncated_images_are_not_silently_accepted():
    from PIL import ImageFile

    assert not ImageFile.LOAD_TRUNCATED_IMAGES
    with pytest.raises(OSError, match="truncated"):
        open_image(odd_images()["truncated.jpg"])


# -- specs and local sources ------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["imagenet", "hf:", "synthetic:0", "synthetic:x", "ftp:a"])
def test_bad_specs(spec):
    with pytest.raises(AtlasError):
        open_source(spec)


def test_missing_local_data(tmp_path):
    with pytest.raises(AtlasError, match="not a directory"):
        open_source(f"imagefolder:{tmp_path / 'nope'}")
    with pytest.raises(AtlasError, match="no .tar"):
        open_source(f"webdataset:{tmp_path}")
    with pytest.raises(AtlasError, match="splits"):
        open_source("synthetic:5", "test")


def test_imagefolder_ids_labels_and_class_names(tmp_path):
    root = write_imagefolder(tmp_path / "imgs", 14)
    src = open_source(f"imagefolder:{root}", "validation")  # single split: used whatever name
    recs = list(src.records())
    assert len(recs) == 14 and [r.number for r in recs] == list(range(14))
    dirs = [synthetic.class_dirname(n) for n in synthetic.CLASS_NAMES]
    assert src.class_names == sorted(dirs)
    for r in recs:
        cls, name = r.id.split("/")
        assert src.class_names[r.label] == cls and name.endswith(".png")
        dec = src.decoder(r)
        assert dec.id == r.id and dec.image.size == (40, 40)


def test_imagefolder_with_split_directories(tmp_path):
    write_imagefolder(tmp_path / "d" / "train", 4)
    write_imagefolder(tmp_path / "d" / "validation", 6)
    assert len(list(open_source(f"imagefolder:{tmp_path / 'd'}", "validation").records())) == 6
    assert len(list(open_source(f"imagefolder:{tmp_path / 'd'}", "train").records())) == 4
    with pytest.raises(AtlasError, match="set split"):
        open_source(f"imagefolder:{tmp_path / 'd'}", "test")


def test_webdataset_keys_labels_split_files_and_json_names(tmp_path):
    root = write_webdataset(tmp_path / "w", 10, shards=2, class_names=["zero", HTML_NAME])
    write_webdataset(tmp_path / "w", 3, shards=1, split="train")
    src = open_source(f"webdataset:{root}", "validation")
    recs = list(src.records())
    assert [r.id for r in recs] == [f"sample{i:05d}" for i in range(10)]
    assert [r.label for r in recs] == [i % synthetic.NUM_CLASSES for i in range(10)]
    assert recs[1].label_name == HTML_NAME and recs[2].label_name == "zero"
    assert src.decoder(recs[4]).image.size == (40, 40)
    assert len(list(open_source(f"webdataset:{root}", "train").records())) == 3


def test_streams_shard_by_example_number_and_resume(tmp_path):
    root = write_webdataset(tmp_path / "w", 23, shards=3)
    for spec in (f"webdataset:{root}", "synthetic:23"):
        src = open_source(spec)
        everything = [(r.number, r.id) for r in src.records()]
        assert [n for n, _ in everything] == list(range(23))
        shards = [[(r.number, r.id) for r in open_source(spec).records(rank, 3)]
                  for rank in range(3)]
        assert sorted(sum(shards, [])) == everything
        assert all(n % 3 == rank for rank, s in enumerate(shards) for n, _ in s)
        # resume from the state after 5 of rank 1's records, and by skipping
        src = open_source(spec)
        it = src.records(1, 3)
        head = [next(it) for _ in range(5)]
        state = src.state_dict()
        resumed = open_source(spec)
        rest = [r.number for r in resumed.records(1, 3, skip=5, state=state)]
        skipped = [r.number for r in open_source(spec).records(1, 3, skip=5)]
        assert [r.number for r in head] + rest == [n for n, _ in shards[1]]
        assert skipped == rest
        # a resumed stream leaves no trace: the next one (the maps pass) starts at 0
        assert [(r.number, r.id) for r in resumed.records()] == everything
        assert [(r.number, r.id) for r in resumed.records(1, 3)] == shards[1]
        if spec.startswith("webdataset"):
            assert state is not None


# -- class names ------------------------------------------------------------------------------
def test_synsets_become_readable_names():
    names = readable_class_names(["n01440764", "n02012849", "n03126707", HTML_NAME, "n99999999"])
    assert names[0] == "tench"
    assert names[1] == "crane (n02012849)" and names[2] == "crane (n03126707)"  # kept apart
    assert names[3] == HTML_NAME and names[4] == "n99999999"


def _fake_hub(monkeypatch, rows: int = 12, with_id: bool = True):
    """``datasets.load_dataset`` answering hf: ids with a small in-memory stream."""
    features = datasets.Features({
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=["n01440764", HTML_NAME, "plain"]),
        **({"image_id": datasets.Value("string")} if with_id else {}),
    })
    data = {"image": [synthetic.make_example(i, 1, 24)[0] for i in range(rows)],
            "label": [i % 3 for i in range(rows)]}
    if with_id:
        data["image_id"] = [f"img-{i}" for i in range(rows)]
    ds = datasets.Dataset.from_dict(data, features=features).to_iterable_dataset(num_shards=3)
    calls = []

    def load_dataset(path, name=None, **kw):
        calls.append((path, name, kw))
        return ds

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hf_source_columns_ids_and_names(monkeypatch):
    calls = _fake_hub(monkeypatch)
    src = open_source("hf:someone/tiny:cfg", "validation")
    assert calls[0][0] == "someone/tiny" and calls[0][1] == "cfg"
    assert calls[0][2]["streaming"] is True and calls[0][2]["split"] == "validation"
    assert src.class_names == ["tench", HTML_NAME, "plain"]
    recs = list(src.records())
    assert [r.id for r in recs] == [f"img-{i}" for i in range(12)]
    assert isinstance(recs[0].payload, dict) and recs[0].payload["bytes"]  # undecoded
    assert src.decoder(recs[0]).image.size == (24, 24)


def test_hf_source_without_id_column_numbers_rows(monkeypatch):
    _fake_hub(monkeypatch, with_id=False)
    recs = list(open_source("hf:someone/tiny", "validation").records())
    assert recs[3].id == "validation-00000003"


def test_hf_index_end_to_end_keeps_html_class_name(monkeypatch, tmp_path):
    _fake_hub(monkeypatch)
    run = tiny_run(tmp_path / "atlas", "hf:someone/tiny", topk=3)
    run_index(run)
    from pipeline.index.results import load_examples

    ex = load_examples(run.store)
    assert ex.class_names == ["tench", HTML_NAME, "plain"] and ex.ids[1] == "img-1"
    assert ex.label_name(1) == HTML_NAME


# -- hub errors -------------------------------------------------------------------------------
def _response(status: int):
    return types.SimpleNamespace(headers={}, request=None, status_code=status)


HUB_ERRORS = {
    "gated": GatedRepoError("Access to dataset x is restricted", response=_response(403)),
    "gated-datasets": DatasetNotFoundError("Dataset 'x' is a gated dataset on the Hub. You must "
                                           "be authenticated to access it."),
    "offline": ConnectionError("Couldn't reach 'x' on the Hub (LocalEntryNotFoundError)"),
    "offline-mode": OfflineModeIsEnabled("offline mode is enabled"),
    "missing": RepositoryNotFoundError("404", response=_response(404)),
    "missing-datasets": DatasetNotFoundError("Dataset 'x' doesn't exist on the Hub or cannot be "
                                             "accessed."),
}
ADVICE = {
    "gated": ["accept its terms", "huggingface.co/datasets/org/data", "huggingface-cli login",
              "HF_TOKEN"],
    "offline": ["cannot reach the Hugging Face hub", "no network", "imagefolder:"],
    "missing": ["not found", "check the id"],
}


@pytest.mark.parametrize("case", sorted(HUB_ERRORS))
def test_hub_errors_become_advice(monkeypatch, case):
    def load_dataset(*args, **kwargs):
        raise HUB_ERRORS[case]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(AtlasError) as info:
        open_source("hf:org/data", "validation")
    for phrase in ADVICE[case.split("-")[0]]:
        assert phrase in str(info.value), (case, str(info.value))


def test_network_loss_while_streaming_is_explained(monkeypatch, tmp_path):
    def broken():
        yield {"image": {"bytes": b"x", "path": None}, "label": 0}
        raise ConnectionError("Couldn't reach 'org/data' on the Hub (ReadTimeout)")

    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    ds = datasets.IterableDataset.from_generator(broken, features=features)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: ds)
    run = tiny_run(tmp_path / "atlas", "hf:org/data")
    with pytest.raises(AtlasError, match="cannot reach the Hugging Face hub"):
        run_index(run)


def test_hub_error_wraps_unknown_failures():
    err = hub_error(RuntimeError("boom"), "org/data")
    assert isinstance(err, AtlasError) and "boom" in str(err)


def test_decoder_is_picklable_for_workers():
    import pickle

    src = open_source("synthetic:3")
    dec = pickle.loads(pickle.dumps(src.decoder))
    out = dec(Record(2, 2))
    assert out.id == "synthetic-validation-000002" and out.label == 2
    assert out.image.size == (64, 64)
    assert Path(__file__).name.startswith("test_sources")
