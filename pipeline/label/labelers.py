"""Labelers: a CLIP model's image and text towers, through ``open_clip``.

A labeler SPEC is one of:

- ``open_clip:<model>/<pretrained>``: any ``open_clip`` model with a pretrained tag (hub
  weights, through open_clip's cache; ``HF_TOKEN`` and ``HF_HUB_OFFLINE`` are honoured) or
  a local checkpoint file, e.g. ``open_clip:ViT-B-16/openai`` or
  ``open_clip:ViT-B-16//data/clip.pt``;
- a directory in open_clip's ``local-dir:`` layout (``open_clip_config.json`` and weights);
- ``demo``: the small CLIP bundled in ``data/demo/labeler`` (trained here on captioned
  procedural images, offline);
- ``self``: for an atlas of a timm CLIP ViT, the open_clip model with the same towers.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.errors import AtlasError
from pipeline.resources import bundled_model_dir

DEMO_LABELER = "demo"
# λ of SoftWPMI unless one is given: the paper's 1 for CLIP models; 0.25 for the demo labeler,
# whose 12 concepts are each shared by ~30 units of a layer, which λ = 1 penalizes away
# (measured on the demo, checked on the second model: the Method page's "Labels").
PAPER_LAMBDA = 1.0
DEMO_LAMBDA = 0.25
LOCAL_DIR = "local-dir:"

# timm CLIP image towers -> the open_clip model holding both of their towers.
SELF_TOWERS = {
    "vit_base_patch32_clip_224.openai": "ViT-B-32/openai",
    "vit_base_patch16_clip_224.openai": "ViT-B-16/openai",
    "vit_large_patch14_clip_224.openai": "ViT-L-14/openai",
    "vit_base_patch32_clip_quickgelu_224.openai": "ViT-B-32-quickgelu/openai",
    "vit_base_patch16_clip_quickgelu_224.openai": "ViT-B-16-quickgelu/openai",
    "vit_large_patch14_clip_quickgelu_224.openai": "ViT-L-14-quickgelu/openai",
    "vit_base_patch16_clip_224.laion2b": "ViT-B-16/laion2b_s34b_b88k",
    "vit_base_patch32_clip_224.laion2b": "ViT-B-32/laion2b_s34b_b79k",
    "vit_large_patch14_clip_224.laion2b": "ViT-L-14/laion2b_s32b_b82k",
}


def demo_labeler_dir() -> Path:
    return bundled_model_dir("demo") / "labeler"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class LabelerSpec:
    """A parsed SPEC: what ``open_clip`` is asked for, and a citable identity."""

    spec: str
    model_name: str  # an open_clip name, or "local-dir:PATH"
    pretrained: str | None

    @property
    def id(self) -> str:
        """The spec plus a digest of local weights (hub tags name their weights)."""
        if self.model_name.startswith(LOCAL_DIR):
            folder = Path(self.model_name[len(LOCAL_DIR):])
            files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin",
                                                                      ".pt", ".json"))
            digest = hashlib.sha256("".join(_file_digest(p) for p in files).encode())
            return f"{self.spec}@sha256:{digest.hexdigest()[:16]}"
        if self.pretrained and Path(self.pretrained).is_file():
            return f"{self.spec}@sha256:{_file_digest(Path(self.pretrained))}"
        return self.spec


def parse_labeler(spec: str, model: str | None = None) -> LabelerSpec:
    """Check a SPEC without loading anything (``model``: the atlas's timm name, for ``self``).

    >>> parse_labeler("open_clip:ViT-B-16/openai").model_name
    'ViT-B-16'
    >>> parse_labeler("demo").model_name.startswith("local-dir:")
    True
    """
    import open_clip

    spec = spec.strip()
    if spec == DEMO_LABELER:
        folder = demo_labeler_dir()
        if not (folder / "open_clip_config.json").is_file():
            raise AtlasError(f"the bundled demo labeler is missing ({folder}); reinstall from a "
                             "full checkout or train it: python scripts/train_demo_labeler.py")
        return LabelerSpec(spec, LOCAL_DIR + str(folder), None)
    if spec == "self":
        if model not in SELF_TOWERS:
            raise AtlasError(f"labeler self needs a CLIP ViT whose towers open_clip holds "
                             f"({', '.join(sorted(SELF_TOWERS))}); {model!r} is not one: use "
                             "labeler open_clip:<model>/<pretrained>", option="labeler")
        return parse_labeler("open_clip:" + SELF_TOWERS[model])
    if spec.startswith("open_clip:"):
        body = spec[len("open_clip:"):]
        name, sep, pretrained = body.partition("/")
        if not sep or not name or not pretrained:
            raise AtlasError(f"bad labeler {spec!r}: expected open_clip:<model>/<pretrained>, "
                             "e.g. open_clip:ViT-B-16/openai", option="labeler")
        known = open_clip.list_models()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise AtlasError(f"unknown open_clip model {name!r}.{hint} "
                             "(open_clip.list_models() lists them)", option="labeler")
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags and not Path(pretrained).is_file():
            raise AtlasError(f"{pretrained!r} is neither a pretrained tag of open_clip's {name} "
                             f"({', '.join(tags) or 'none'}) nor a checkpoint file",
                             option="labeler")
        return LabelerSpec(spec, name, pretrained)
    path = Path(spec)
    if path.is_dir():
        if not (path / "open_clip_config.json").is_file():
            raise AtlasError(f"labeler directory {path} has no open_clip_config.json (open_clip's "
                             "local-dir layout); for a bare checkpoint file use "
                             "open_clip:<model>/<file>", option="labeler")
        return LabelerSpec(spec, LOCAL_DIR + str(path.resolve()), None)
    if path.is_file():
        raise AtlasError(f"{path} is a checkpoint file: name its architecture, e.g. "
                         f"labeler open_clip:ViT-B-16/{path}", option="labeler")
    raise AtlasError(f"unknown labeler {spec!r}: expected demo, self, a directory, or "
                     "open_clip:<model>/<pretrained>", option="labeler")


class Labeler:
    """A loaded CLIP: ``preprocess`` (PIL image → tensor), ``encode_images``,
    ``encode_texts``; both return L2-normalized float32 embeddings."""

    def __init__(self, spec: LabelerSpec, model: nn.Module, preprocess: Callable,
                 tokenizer: Callable, device: torch.device):
        self.spec, self.model, self.preprocess = spec, model, preprocess
        self.tokenizer, self.device = tokenizer, device
        self.id = spec.id
        self.default_lambda = DEMO_LAMBDA if spec.spec == DEMO_LABELER else PAPER_LAMBDA

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        """``(N, 3, H, W)`` preprocessed images → ``(N, D)`` unit-norm float32."""
        x = pixels.to(self.device, non_blocking=True)
        return self.model.encode_image(x, normalize=True).float().cpu().numpy()

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Concepts → ``(N, D)`` unit-norm float32, each text on its own (CLIP-Dissect feeds
        the bare word, no prompt template)."""
        out = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[i:i + batch_size])).to(self.device)
            out.append(self.model.encode_text(tokens, normalize=True).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def load_labeler(spec: str | LabelerSpec, device: torch.device | str = "cpu",
                 model: str | None = None) -> Labeler:
    """Load a labeler (see the module docstring for SPEC).

    >>> labeler = load_labeler("demo")
    >>> labeler.encode_texts(["circle", "stripes"]).shape[0]
    2
    """
    import open_clip

    parsed = spec if isinstance(spec, LabelerSpec) else parse_labeler(spec, model)
    device = torch.device(device)
    try:
        hub = open_clip.get_pretrained_cfg(parsed.model_name, parsed.pretrained or "")
        if hub:  # fetch (or find cached) weights before building the model: fail in seconds
            open_clip.download_pretrained(hub)
        clip, _, preprocess = open_clip.create_model_and_transforms(
            parsed.model_name, pretrained=parsed.pretrained, device=device)
        tokenizer = open_clip.get_tokenizer(parsed.model_name)
    except (RuntimeError, OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        why = ("HF_HUB_OFFLINE is set and they are not in the cache"
               if offline else "check the network and HF_TOKEN")
        raise AtlasError(f"could not load the labeler {parsed.spec!r} ({type(exc).__name__}: "
                         f"{str(exc)[:300]}): {why}, or pass local weights as "
                         f"open_clip:<model>/<checkpoint file> or a local-dir folder") from None
    clip.eval().requires_grad_(False)
    return Labeler(parsed, clip, preprocess, tokenizer, device)
