"""The index stage's model-output experiments (``DIR/index/experiments.json``, via the store).

Two of the paper's experiments (Ghiasi et al. 2022) need the whole model, not one layer:

- **classifier** (a model with a classifier head whose classes are the dataset's, and masks):
  over the first examples that have both a label and a mask, the model's top-1 accuracy against
  the dataset labels (matched to the head's classes by name where those are known:
  ``label_map``; an image folder numbers its classes in folder order) unmasked, with the
  background masked and with the foreground masked, each
  region replaced by the image's mean colour (``foreground.replace_regions``, as the masking
  ratios do). The paper: ViTs lose less than CNNs when the background goes.
- **cls** (a model with a CLS token): per block, the change in the model's output when the CLS
  token's state after that block is replaced by its mean over the same examples: the mean KL
  divergence of the class distributions (unchanged ‖ replaced) and the share of examples whose
  top-1 class stays the same. The paper's hypothesis: the CLS token matters only at the end.

Both run over the first ``experiment_images(cfg)`` examples of the dataset, in order, in one
process (rank 0; the other ranks wait), after the index is written: pass 1 measures the
accuracies and the CLS means, pass 2 (with a CLS token) the replacements. Sums are float64 in
stream order, so the figures do not depend on batch size. Checkpointed every
``checkpoint_every`` batches (``store.experiments_work_dir``): a rerun resumes there; a
finished result of the same index and settings is kept.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline import distributed
from pipeline.data.sources import Source
from pipeline.ids import fingerprint, say
from pipeline.index.foreground import replace_regions
from pipeline.index.loader import BatchPlan, make_loader
from pipeline.precision import autocast
from pipeline.store import atomic_save_npz, atomic_write_json, read_json_if_any

EXPERIMENTS_VERSION = 2  # 2: dataset labels matched to the head's classes by name
MAX_IMAGES = 512  # the experiments' examples: the first min(this, probe_images, max_images)
REGIONS = ("plain", "background", "foreground")  # accuracy unmasked, bg masked, fg masked
_SAME = object()  # measure's labels when not given: the dataset's own, where the counts match


def experiment_images(probe_images: int, max_images: int | None) -> int:
    """How many of the dataset's first examples the experiments use.

    >>> experiment_images(10000, None), experiment_images(64, 30)
    (512, 30)
    """
    n = min(MAX_IMAGES, probe_images)
    return n if max_images is None else min(n, max_images)


def cls_blocks(model: nn.Module) -> list[int]:
    """The blocks (indices into ``model.blocks``) whose output carries a CLS token at position
    0; empty for a model without one (Swin, Twins, PiT's pooled stages, ``class_token=False``).
    ConViT adds its CLS token only at ``local_up_to_layer``.

    >>> import timm
    >>> cls_blocks(timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8,
    ...                              depth=2, embed_dim=48, num_heads=2))
    [0, 1]
    """
    blocks = getattr(model, "blocks", None)
    if getattr(model, "cls_token", None) is None or not isinstance(blocks, nn.Module):
        return []
    start = int(getattr(model, "local_up_to_layer", 0) or 0)
    return list(range(start, len(blocks)))


def _class_key(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


def label_map(n_classes: int, dataset_names: list[str] | None,
              model_names: list[str] | None) -> np.ndarray | None:
    """For each dataset class, the index of the same class in the model's head: by name where
    the head's class names are known (``horizontal_stripes`` is ``horizontal stripes``), else
    the same index when the counts match; None where the head's classes are not the dataset's.

    >>> label_map(3, ["b", "a_c", "d"], ["a c", "b", "d"]).tolist()
    [1, 0, 2]
    >>> label_map(3, ["x", "y", "z"], None).tolist(), label_map(3, ["b", "e", "d"], ["a", "b", "d"])
    ([0, 1, 2], None)
    """
    if n_classes <= 0 or dataset_names is None or len(dataset_names) != n_classes:
        return None
    if model_names is None:
        return np.arange(n_classes)
    where = {_class_key(name): i for i, name in enumerate(model_names)}
    out = [where.get(_class_key(name), -1) for name in dataset_names]
    return None if min(out) < 0 or len(set(out)) != n_classes else np.array(out)


def head_class_names(model: nn.Module, weights: str) -> list[str] | None:
    """The model head's classes by name where they are known: the ``classes`` of a
    ``model.json`` beside a weights file (the bundled models' cards), ImageNet's for timm's
    1,000-class hub weights; None otherwise.

    >>> from pipeline.resources import bundled_model_dir
    >>> m = type("M", (), {"num_classes": 12})()
    >>> head_class_names(m, str(bundled_model_dir("demo") / "vit-demo.safetensors"))[:2]
    ['circle', 'square']
    """
    n = int(getattr(model, "num_classes", 0) or 0)
    card = Path(weights).parent / "model.json" if weights not in ("hub", "random") else None
    if card is not None and card.is_file():
        names = json.loads(card.read_text()).get("classes")
        if isinstance(names, list) and len(names) == n:
            return [str(x) for x in names]
    if weights == "hub" and n == 1000:
        from pipeline.data.sources import imagenet_class_names
        return imagenet_class_names()
    return None


@dataclass
class Sums:
    """What the experiments accumulate (float64, stream order)."""

    phase: int = 1  # 1: accuracies and CLS means; 2: replacements; 3: done
    consumed: int = 0  # records of the current phase read so far
    seen: int = 0  # examples decoded in pass 1
    labelled: int = 0  # examples with a label and a mask (the accuracies' denominator)
    right: np.ndarray = field(default_factory=lambda: np.zeros(len(REGIONS)))
    cls_count: int = 0
    cls_sum: np.ndarray | None = None  # (blocks, dim)
    compared: int = 0
    kl: np.ndarray | None = None  # (blocks,)
    agree: np.ndarray | None = None  # (blocks,)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"phase": np.array(self.phase), "consumed": np.array(self.consumed),
               "seen": np.array(self.seen),
               "labelled": np.array(self.labelled), "right": self.right,
               "cls_count": np.array(self.cls_count), "compared": np.array(self.compared)}
        for name in ("cls_sum", "kl", "agree"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_arrays(cls, z: dict[str, np.ndarray]) -> Sums:
        return cls(int(z["phase"]), int(z["consumed"]), int(z["seen"]), int(z["labelled"]),
                   z["right"],
                   int(z["cls_count"]), z.get("cls_sum"), int(z["compared"]), z.get("kl"),
                   z.get("agree"))


class ClsHooks:
    """Forward hooks on ``model.blocks``: record each block's CLS state (``states``) and, with
    ``replace = (block, mean)``, overwrite that block's CLS state with ``mean``."""

    def __init__(self, model: nn.Module, blocks: list[int]):
        self.model, self.blocks = model, blocks
        self.states: dict[int, torch.Tensor] = {}
        self.replace: tuple[int, torch.Tensor] | None = None
        self._handles: list[Any] = []

    def __enter__(self) -> ClsHooks:
        for b in self.blocks:
            self._handles.append(self.model.blocks[b].register_forward_hook(self._hook(b)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, b: int):
        def hook(module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor | None:
            self.states[b] = out[:, 0].detach().double()
            if self.replace is not None and self.replace[0] == b:
                out = out.clone()
                out[:, 0] = self.replace[1].to(out.dtype)
                return out
            return None
        return hook


def kl_and_agreement(plain: torch.Tensor, changed: torch.Tensor) -> tuple[float, int]:
    """Summed KL(softmax(plain) ‖ softmax(changed)) over the rows of two logit tensors (n,
    classes), in float64, and how many rows keep their top-1 class.

    >>> p = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> kl, same = kl_and_agreement(p, p.flip(1)); round(kl, 4), same
    (1.9853, 0)
    """
    lp = torch.log_softmax(plain.double(), -1)
    lq = torch.log_softmax(changed.double(), -1)
    kl = (lp.exp() * (lp - lq)).sum(-1).sum().item()
    same = int((plain.argmax(-1) == changed.argmax(-1)).sum().item())
    return float(kl), same


def _batches(source: Source, transform: Any, batch_size: int, stop: int, skip: int,
             workers: int, masks: Any) -> Iterator[Any]:
    plan = BatchPlan(source, batch_size, skip=skip, stop=stop)
    yield from make_loader(plan, source.decoder, transform, workers, masks=masks)


def measure(model: nn.Module, device: torch.device, source: Source, transform: Any,
            images: int, batch_size: int, masks: Any = None, workers: int = 0,
            sums: Sums | None = None, save: Any = None, every: int = 1,
            labels: Any = _SAME) -> Sums:
    """Both passes over the first ``images`` examples; ``masks``: a ``foreground.MaskReader``
    (None: no accuracy figures); ``labels``: the head's class of each dataset class
    (``label_map``; None: no accuracy figures); ``sums``: a checkpoint to resume from;
    ``save(sums)`` is called every ``every`` batches and at the end of each phase."""
    s = sums or Sums()
    blocks = cls_blocks(model)
    if labels is _SAME:
        labels = label_map(int(getattr(model, "num_classes", 0) or 0), source.class_names, None)
    score = masks is not None and labels is not None

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), autocast(device):
            return model(x).float()

    with ClsHooks(model, blocks) as hooks:
        if s.phase == 1:
            for i, batch in enumerate(_batches(source, transform, batch_size, images, s.consumed,
                                               workers, masks if score else None), start=1):
                s.consumed = batch.consumed
                s.seen += len(batch.numbers)
                if batch.pixels is not None:
                    x = batch.pixels.to(device)
                    hooks.states.clear()
                    logits = forward(x)
                    if blocks:
                        cls = torch.stack([hooks.states[b] for b in blocks], 1).cpu().numpy()
                        s.cls_sum = (np.zeros(cls.shape[1:]) if s.cls_sum is None
                                     else s.cls_sum) + cls.sum(0)
                        s.cls_count += len(cls)
                    if score:
                        _score(s, batch, x, logits, forward, labels)
                if save is not None and i % max(1, every) == 0:
                    save(s)
            s.phase, s.consumed = (2 if blocks and s.cls_count else 3), 0
            if save is not None:
                save(s)
        if s.phase == 2:
            mean = torch.as_tensor(s.cls_sum / s.cls_count, device=device)
            if s.kl is None:
                s.kl, s.agree = np.zeros(len(blocks)), np.zeros(len(blocks))
            for i, batch in enumerate(_batches(source, transform, batch_size, images, s.consumed,
                                               workers, None), start=1):
                s.consumed = batch.consumed
                if batch.pixels is not None:
                    x = batch.pixels.to(device)
                    hooks.replace = None
                    plain = forward(x)
                    for j, b in enumerate(blocks):
                        hooks.replace = (b, mean[j])
                        kl, same = kl_and_agreement(plain, forward(x))
                        s.kl[j] += kl
                        s.agree[j] += same
                    hooks.replace = None
                    s.compared += len(x)
                if save is not None and i % max(1, every) == 0:
                    save(s)
            s.phase, s.consumed = 3, 0
            if save is not None:
                save(s)
    return s


def _score(s: Sums, batch: Any, x: torch.Tensor, logits: torch.Tensor, forward: Any,
           head: np.ndarray) -> None:
    keep = [j for j, m in enumerate(batch.masks) if m is not None and batch.labels[j] >= 0]
    if not keep:
        return
    labels = torch.as_tensor(head[np.asarray(batch.labels)[keep]], device=x.device)
    masks = torch.as_tensor(np.stack([batch.masks[j] for j in keep]))
    xs = x[torch.as_tensor(keep, device=x.device)]
    s.right[0] += int((logits[keep].argmax(-1) == labels).sum().item())
    for r, region in enumerate(REGIONS[1:], start=1):
        pred = forward(replace_regions(xs, masks, region)).argmax(-1)
        s.right[r] += int((pred == labels).sum().item())
    s.labelled += len(keep)


def result(s: Sums, model: nn.Module, masks: bool, class_names: list[str] | None,
           key: str) -> dict[str, Any]:
    """``experiments.json``: ``{"format_version", "fingerprint", "images" (the examples looked
    at), "classifier", "cls"}``; ``classifier``: ``{"examples", "accuracy", "background_masked",
    "foreground_masked"}`` or None (no matching head, no masks, no labelled masked example);
    ``cls``: ``{"examples", "blocks", "kl", "agreement"}`` (per block, in forward order) or
    None (no CLS token)."""
    classifier = None
    if masks and s.labelled:
        acc = s.right / s.labelled
        classifier = {"examples": s.labelled, "accuracy": round(float(acc[0]), 6),
                      "background_masked": round(float(acc[1]), 6),
                      "foreground_masked": round(float(acc[2]), 6)}
    cls = None
    if s.compared and s.kl is not None:
        cls = {"examples": s.compared, "blocks": cls_blocks(model),
               "kl": [round(float(v), 6) for v in s.kl / s.compared],
               "agreement": [round(float(v), 6) for v in s.agree / s.compared]}
    return {"format_version": EXPERIMENTS_VERSION, "fingerprint": key, "images": s.seen,
            "classifier": classifier, "cls": cls}


def run_experiments(job: Any, source: Source, transform: Any) -> None:
    """Measure (or resume, or keep) ``experiments.json`` for the index ``job`` describes
    (an ``IndexJob``): rank 0 measures, the others wait."""
    run, cfg = job.run, job.run.config.index
    store = run.store
    images = experiment_images(cfg.probe_images, cfg.max_images)
    reader = job.mask_reader(source)
    key = fingerprint({"version": EXPERIMENTS_VERSION, "index": job.fingerprint,
                       "images": images})
    if distributed.is_main():
        done = read_json_if_any(store.experiments_path)
        if done is None or done.get("fingerprint") != key:
            say(f"index: experiments over the first {images} examples (masked accuracy, "
                "CLS replaced by its mean)")
            work = store.experiments_work_dir
            state = work / "state.npz"
            sums = None
            if state.is_file():
                with np.load(state, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
                if str(arrays.pop("fingerprint", "")) == key:
                    sums = Sums.from_arrays(arrays)

            def save(s: Sums) -> None:
                atomic_save_npz(state, fingerprint=np.array(key), **s.arrays())

            head = head_class_names(run.model, run.config.model.weights)
            labels = label_map(int(getattr(run.model, "num_classes", 0) or 0),
                               source.class_names, head)
            s = measure(run.model, run.device, source, transform, images, cfg.batch_size,
                        reader, cfg.workers, sums, save, cfg.checkpoint_every, labels)
            atomic_write_json(store.experiments_path,
                              result(s, run.model, reader is not None,
                                     source.class_names, key), indent=2)
            shutil.rmtree(work, ignore_errors=True)
            with contextlib.suppress(OSError):
                work.parent.rmdir()  # the index's work folder, when nothing else is in it
    distributed.barrier()
