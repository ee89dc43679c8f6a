"""The ``label`` stage: every unit's top concepts by SoftWPMI, into ``DIR/label``.

Inputs are the index's probe set (each unit's scores over the first ``probe_images``
examples, ``DIR/index/probe``) and the labeler's embeddings of those images: made in the
index pass when ``build`` has a labeler, else here by one pass over the probe images. The
concepts' text embeddings are computed once per labeler and concept set and cached in
``DIR/label/cache``. Each layer's labels are written atomically when it is done, with the
run's fingerprint (labeler, concepts, parameters, index), so a rerun skips finished layers
and a changed input redoes them.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline import distributed, ids
from pipeline.config import LabelConfig
from pipeline.data.sources import open_source
from pipeline.errors import AtlasError
from pipeline.ids import say
from pipeline.index.loader import BatchPlan, make_loader
from pipeline.index.probe import ProbeEncoder
from pipeline.index.results import (
    ProbeProfiles,
    load_examples,
    load_probe,
    load_probe_embeddings,
)
from pipeline.label.concepts import ConceptSet, default_concepts, read_concepts
from pipeline.label.dissect import (
    SoftWPMI,
    best_concepts,
    concept_probabilities,
    soft_wpmi,
    top_images,
)
from pipeline.label.evaluate import accuracy_table, label_accuracy
from pipeline.label.labelers import Labeler, load_labeler, parse_labeler
from pipeline.runtime import Run
from pipeline.store import atomic_save_npz, concept_embeddings_path

TOP_CONCEPTS = 5




def check_label_options(label: LabelConfig, model: str) -> None:
    """Fail early (before any model is loaded) on a bad labeler or concepts file; ``model``:
    the atlas's model name (the ``self`` labeler is its own towers).

    >>> check_label_options(LabelConfig(labeler="self"), "vit_tiny_patch16_224")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pipeline.errors.AtlasError: labeler self needs a CLIP ViT whose towers open_clip holds ...
    """
    if label.labeler:
        parse_labeler(label.labeler, model)
    if label.concepts:
        read_concepts(label.concepts)


def probe_encoder(labeler: Labeler) -> ProbeEncoder:
    """The labeler's image side, to ride along the index pass."""
    return ProbeEncoder(labeler.id, labeler.preprocess, labeler.encode_images)


def concept_set(run: Run) -> ConceptSet:
    if run.config.label.concepts:
        return read_concepts(run.config.label.concepts)
    examples = load_examples(run.store)
    return default_concepts(None if examples is None else examples.class_names)


def run_label(run: Run, labeler: Labeler | None = None) -> None:
    """Label every selected layer of ``run``'s atlas (needs its index; see the module
    docstring). Runs on the main process; other ranks wait."""
    if distributed.is_main():
        _label(run, labeler)
    distributed.barrier()


def _label(run: Run, labeler: Labeler | None) -> None:
    cfg, store = run.config.label, run.store
    if not cfg.labeler:
        raise AtlasError("no labeler: set labeler to demo | self | DIR | "
                         "open_clip:<model>/<pretrained>", option="labeler")
    data = store.index_info()
    if data is None:
        raise AtlasError(f"{store.root} has no finished dataset index: labels are computed from "
                         "it; run the index stage on it first")
    profiles = {i: load_probe(store, i) for i in run.layers}
    absent = [i for i, p in profiles.items() if p is None]
    if absent:
        raise AtlasError(f"{store.root}'s index has no probe profiles for layers {absent} "
                         "(an older index?): rerun the index stage on it")
    labeler = labeler or load_labeler(cfg.labeler, run.device, run.config.model.name)
    concepts = concept_set(run)
    lam = labeler.default_lambda if cfg.lam is None else cfg.lam
    params = SoftWPMI(scale=cfg.scale, top_k=cfg.topk, lam=lam)
    fingerprint = ids.fingerprint({"labeler": labeler.id, "concepts": concepts.digest,
                                   "params": params.to_dict(), "index": data.get("fingerprint")})
    todo = [i for i in run.layers if not store.labels_done(i, fingerprint)]
    first = next(iter(profiles.values()))
    info = {
        "labeler": cfg.labeler, "labeler_id": labeler.id, "concepts": concepts.info(),
        "params": params.to_dict(), "probe_images": int(len(first.numbers)),
        "fingerprint": fingerprint,
    }
    store.write_label_info(info)
    if not todo:
        say(f"label: complete for this configuration ({store.label_dir}), nothing to do")
        return
    t0 = time.perf_counter()
    images = image_embeddings(run, labeler, first.numbers)
    texts = text_embeddings(run, labeler, concepts)
    probabilities = concept_probabilities(images, texts, params.scale, run.device)
    for i in tqdm(todo, desc="label", unit="layer", dynamic_ncols=True):
        store.write_labels(i, fingerprint, label_layer(profiles[i], probabilities,
                                                        concepts.concepts, params))
    say(f"label: {len(todo)} layers against {len(concepts.concepts)} concepts "
         f"({concepts.source}) in {time.perf_counter() - t0:.1f} s -> {store.label_dir}")
    accuracy = label_accuracy(store, run.layers)
    if accuracy:
        store.write_label_info({**info, "accuracy": {str(k): v for k, v in accuracy.items()}})
        say("label: units whose top examples are >= 70% one class, and how often their "
             "words name it:\n" + accuracy_table(accuracy))


def label_layer(profiles: ProbeProfiles, probabilities: torch.Tensor,
                concepts: tuple[str, ...], params: SoftWPMI,
                n: int = TOP_CONCEPTS) -> dict[int, list[dict]]:
    """``{unit: [{"concept", "score"}, ...]}`` of one layer, best first.

    >>> import numpy as np, torch
    >>> prof = ProbeProfiles(np.arange(2), np.array([[1, 0], [0, 1]], np.float16),
    ...                      np.zeros(2, np.float32), np.array([4, 7]))
    >>> P = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    >>> out = label_layer(prof, P, ("red", "blue"), SoftWPMI(top_k=1), n=1)
    >>> out[4][0]["concept"], out[7][0]["concept"]
    ('red', 'blue')
    """
    scores = profiles.scores()
    top = top_images(scores, min(params.top_k, len(scores)))
    best = best_concepts(soft_wpmi(probabilities, top, params), concepts, n)
    units = profiles.units if profiles.units is not None else np.arange(scores.shape[1])
    return {int(u): labels for u, labels in zip(units.tolist(), best, strict=True)}


def image_embeddings(run: Run, labeler: Labeler, numbers: np.ndarray) -> np.ndarray:
    """The labeler's embeddings of the probe images ``numbers``: from the index pass, the
    cache, or one pass over those images (then cached)."""
    found = load_probe_embeddings(run.store, labeler.id)
    if found is not None and np.array_equal(found[0], numbers):
        return found[1]
    cache = run.store.label_dir / "cache" / f"images-{ids.fingerprint([labeler.id])}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            if np.array_equal(z["numbers"], numbers):
                return z["embeddings"].astype(np.float32)
    cfg = run.config.index  # the probe images are the index's
    source = open_source(cfg.dataset, cfg.split, image_size=run.spec.input_size[-1])
    plan = BatchPlan(source, cfg.batch_size, wanted=numbers)
    loader = make_loader(plan, source.decoder, labeler.preprocess, cfg.workers)
    got_numbers, out = [], []
    with tqdm(total=len(numbers), desc="label: embed probe images", unit="img",
              dynamic_ncols=True) as bar:
        for batch in loader:
            if batch.pixels is not None:
                out.append(labeler.encode_images(batch.pixels))
                got_numbers.append(batch.numbers)
                bar.update(len(batch.numbers))
    got = np.concatenate(got_numbers) if got_numbers else np.zeros(0, np.int64)
    if not np.array_equal(got, numbers):
        raise AtlasError("label: the probe images no longer decode as they did in the index "
                         "pass (has the dataset changed?); rerun the index stage")
    embeddings = np.concatenate(out).astype(np.float32)
    atomic_save_npz(cache, numbers=numbers, embeddings=embeddings.astype(np.float16))
    return embeddings


def text_embeddings(run: Run, labeler: Labeler, concepts: ConceptSet) -> np.ndarray:
    """The labeler's embeddings of the concepts, cached per labeler and concept set, in the
    atlas and in the user cache (another atlas labelled alike reuses them). They are float16
    wherever they come from, so a fresh run and a cached one label alike."""
    key = ids.fingerprint([labeler.id, concepts.digest])
    cache = run.store.label_dir / "cache" / f"text-{key}.npz"
    shared = concept_embeddings_path(key)
    for path in (cache, shared):
        try:
            with np.load(path) as z:
                embeddings = z["embeddings"]
        except (OSError, ValueError, KeyError):  # absent, or unreadable: made again
            continue
        if embeddings.shape[0] == len(concepts.concepts):
            if path != cache:
                atomic_save_npz(cache, embeddings=embeddings)
            return embeddings.astype(np.float32)
    out = []
    step = 512
    for lo in tqdm(range(0, len(concepts.concepts), step), desc="label: embed concepts",
                   unit="batch", dynamic_ncols=True):
        out.append(labeler.encode_texts(concepts.concepts[lo:lo + step]))
    embeddings = np.concatenate(out).astype(np.float16)
    atomic_save_npz(cache, embeddings=embeddings)
    try:
        atomic_save_npz(shared, embeddings=embeddings)
    except OSError as exc:  # a read-only home: the atlas's own cache is enough
        say(f"label: could not write the user cache {shared} ({exc})")
    return embeddings.astype(np.float32)
