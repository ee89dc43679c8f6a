"""Train the demo labeler: a tiny open_clip CLIP on captioned procedural images, on the CPU.

    python scripts/train_demo_labeler.py --out data/demo/labeler          # the bundled one
    python scripts/train_demo_labeler.py --out /tmp/labeler --steps 20    # a quick try

The model is ``open_clip.model.CLIP(**MODEL_CFG)`` (a 64-pixel ViT image tower, a small text
tower with open_clip's default BPE tokenizer), trained from scratch with ``open_clip.loss.ClipLoss``
(learned logit scale), AdamW and a cosine schedule on images that are never reused: step ``s``
draws examples ``s·B … (s+1)·B - 1`` of :mod:`pipeline.data.captions` (seed 0). Evaluation uses
images never trained on: ``pipeline.data.synthetic``'s validation split (the demo's own images)
and seed 1 of the captioned generator.

Writes open_clip's ``local-dir:`` layout into ``--out``, each file atomically:
``open_clip_config.json`` (``model_cfg``, ``preprocess_cfg``), ``open_clip_model.safetensors``
(float16), ``MODEL_CARD.md`` and ``metrics.json``. Load it with
``open_clip.create_model_and_transforms("local-dir:DIR")`` and
``open_clip.get_tokenizer("local-dir:DIR")``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
from safetensors.torch import save
from tqdm import tqdm
from trainlib import lr_at

from pipeline.data import captions, synthetic
from pipeline.store import atomic_write_bytes, atomic_write_json, atomic_write_text

IMAGE_SIZE = 64
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
MODEL_CFG: dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": IMAGE_SIZE, "patch_size": 8, "layers": 4, "width": 128,
                   "head_width": 32, "mlp_ratio": 4.0},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 56, "heads": 4,
                 "layers": 3, "mlp_ratio": 4.0},
}
PREPROCESS_CFG: dict[str, Any] = {"size": IMAGE_SIZE, "mean": list(MEAN), "std": list(STD),
                                  "interpolation": "bicubic", "resize_mode": "shortest"}
WEIGHTS_NAME = "open_clip_model.safetensors"
CONFIG_NAME = "open_clip_config.json"
TRAIN_SEED = captions.SPLIT_SEEDS["train"]
HELDOUT_SEED = captions.SPLIT_SEEDS["validation"]

# Zero-shot prompts: "{}" is a class name with its article ("a circle", "vertical stripes").
CLASS_TEMPLATES = ("{}", "a photo of {}", "an image of {}")
# One word per demo class, as a CLIP-Dissect concept list of English words would hold them.
SINGLE_WORDS = ("circle", "square", "triangle", "ring", "cross", "horizontal", "vertical",
                "diagonal", "checkerboard", "dots", "noise", "gradient")
WORD_TEMPLATES = ("{}", "a {}", "a photo of {}")


def caption_token_ids(tokenizer: open_clip.SimpleTokenizer) -> list[int]:
    """Every token id a caption can hold: the BPE pieces of ``CONCEPT_WORDS``, start, end."""
    ids = {tokenizer.sot_token_id, tokenizer.eot_token_id}
    for word in captions.CONCEPT_WORDS:
        ids.update(tokenizer.encode(word))
    return sorted(ids)


def build_model(model_cfg: dict[str, Any] | None = None, seed: int = 0) -> open_clip.CLIP:
    """A freshly initialised ``open_clip.model.CLIP`` (seeded). The token embeddings the
    captions never use start at zero, and stay there (they get no gradient): any word outside
    the caption vocabulary then encodes as one "null" word instead of a random direction."""
    cfg = MODEL_CFG if model_cfg is None else model_cfg
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**cfg)
    keep = torch.zeros(model.token_embedding.num_embeddings, dtype=torch.bool)
    keep[caption_token_ids(tokenizer_for(cfg))] = True
    with torch.no_grad():
        model.token_embedding.weight[~keep] = 0.0
    return model


def tokenizer_for(model_cfg: dict[str, Any] | None = None) -> open_clip.SimpleTokenizer:
    """The tokenizer ``open_clip.get_tokenizer("local-dir:...")`` gives for this config."""
    cfg = MODEL_CFG if model_cfg is None else model_cfg
    return open_clip.SimpleTokenizer(context_length=cfg["text_cfg"]["context_length"])


def to_tensor(images: Sequence[Any]) -> torch.Tensor:
    """64×64 PIL images to a normalized float batch: what the saved preprocess does to them
    (its resize and centre crop are the identity at 64 pixels)."""
    x = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2)
    x = x.float() / 255.0
    return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


# -- data ----------------------------------------------------------------------------------
class CaptionBatches(torch.utils.data.Dataset):
    """Batch ``s`` = examples ``s·B … (s+1)·B - 1`` of the captioned generator, as
    ``(images, tokens)``; a pure function of ``s`` (so workers keep the run deterministic)."""

    def __init__(self, steps: int, batch_size: int, seed: int, context_length: int) -> None:
        self.steps, self.batch_size, self.seed = steps, batch_size, seed
        self.context_length = context_length
        self._tok: open_clip.SimpleTokenizer | None = None

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._tok is None:
            self._tok = open_clip.SimpleTokenizer(context_length=self.context_length)
        start = step * self.batch_size
        pairs = [captions.make_captioned(i, self.seed, IMAGE_SIZE)
                 for i in range(start, start + self.batch_size)]
        return to_tensor([p[0] for p in pairs]), self._tok([p[1] for p in pairs])


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


# -- training ------------------------------------------------------------------------------
def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """open_clip's rule: no weight decay on gains, biases and the logit scale."""
    def exclude(n: str, p: torch.nn.Parameter) -> bool:
        return p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n
    named = list(model.named_parameters())
    return [{"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
            {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": weight_decay}]


def train(out_dir: str | Path, steps: int = 1200, batch_size: int = 128, lr: float = 1e-3,
          weight_decay: float = 0.1, warmup: int | None = None, seed: int = 0,
          threads: int = 2, workers: int = 0, eval_images: int = 1200, distractors: int = 1000,
          progress: bool = True, model_cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train a labeler, save it into ``out_dir`` (``local-dir:`` layout plus MODEL_CARD.md and
    metrics.json), reload it from there and evaluate it; returns the metrics."""
    t0 = time.perf_counter()
    torch.set_num_threads(threads)
    cfg = json.loads(json.dumps(MODEL_CFG if model_cfg is None else model_cfg))
    model = build_model(cfg, seed)
    model.train()
    loss_fn = open_clip.loss.ClipLoss()
    opt = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98),
                            eps=1e-6)
    warmup = max(1, steps // 20) if warmup is None else warmup
    data = CaptionBatches(steps, batch_size, TRAIN_SEED, cfg["text_cfg"]["context_length"])
    loader = torch.utils.data.DataLoader(
        data, batch_size=None, shuffle=False, num_workers=workers,
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=4 if workers else None, persistent_workers=False)
    bar = tqdm(loader, desc="train", unit="step", disable=not progress)
    ema = None
    t_train = time.perf_counter()
    for step, (images, tokens) in enumerate(bar):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        image_features, text_features, logit_scale = model(images, tokens)
        loss = loss_fn(image_features, text_features, logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100))
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{ema:.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
    bar.close()
    train_seconds = time.perf_counter() - t_train

    out_dir = Path(out_dir)
    save_labeler(model, out_dir, cfg)
    model, preprocess, tokenizer = load_labeler(out_dir)
    metrics = evaluate(model, preprocess, tokenizer, eval_images, distractors)
    metrics["training"] = {
        "steps": steps, "batch_size": batch_size, "samples": steps * batch_size, "lr": lr,
        "weight_decay": weight_decay, "warmup": warmup, "seed": seed, "threads": threads,
        "workers": workers, "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - t0, 1), "final_loss": round(ema or 0.0, 4),
        "logit_scale": round(float(model.logit_scale.detach().exp()), 2),
        "load_average": round(os.getloadavg()[0], 2),
    }
    metrics["weights_bytes"] = (out_dir / WEIGHTS_NAME).stat().st_size
    metrics["parameters"] = sum(p.numel() for p in model.parameters())
    atomic_write_json(out_dir / "metrics.json", metrics, indent=2)
    atomic_write_text(out_dir / "MODEL_CARD.md", model_card(cfg, metrics))
    return metrics


def save_labeler(model: open_clip.CLIP, out_dir: str | Path,
                 model_cfg: dict[str, Any] | None = None) -> None:
    """``open_clip_config.json`` and float16 ``open_clip_model.safetensors`` into ``out_dir``."""
    out_dir = Path(out_dir)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(out_dir / WEIGHTS_NAME, save(state, metadata={"format": "pt"}))
    atomic_write_json(out_dir / CONFIG_NAME, {
        "model_cfg": MODEL_CFG if model_cfg is None else model_cfg,
        "preprocess_cfg": PREPROCESS_CFG}, indent=2)


def load_labeler(path: str | Path) -> tuple[open_clip.CLIP, Callable, Callable]:
    """``(model, preprocess, tokenizer)`` through open_clip's ``local-dir:`` loader, eval mode."""
    name = f"local-dir:{path}"
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    return model.eval(), preprocess, open_clip.get_tokenizer(name)


# -- zero-shot evaluation ------------------------------------------------------------------
@torch.no_grad()
def image_features(model: open_clip.CLIP, preprocess: Callable, images: Sequence[Any],
                   batch_size: int = 400) -> torch.Tensor:
    """L2-normalized image embeddings, ``(n, embed_dim)``."""
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.stack([preprocess(im) for im in images[i : i + batch_size]])
        out.append(model.encode_image(x, normalize=True))
    return torch.cat(out)


@torch.no_grad()
def text_features(model: open_clip.CLIP, tokenizer: Callable,
                  prompts: Sequence[Sequence[str]]) -> torch.Tensor:
    """One embedding per candidate: the normalized mean of its prompts' embeddings."""
    flat = [p for group in prompts for p in group]
    f = torch.cat([model.encode_text(tokenizer(flat[i : i + 1000]), normalize=True)
                   for i in range(0, len(flat), 1000)])
    f = f.view(len(prompts), -1, f.shape[-1]).mean(1)
    return torch.nn.functional.normalize(f, dim=-1)


def _article(name: str) -> str:
    return captions._a(name)


def _mean(ok: Sequence[Any]) -> float | None:
    return float(np.mean(ok)) if len(ok) else None


def zero_shot(img: torch.Tensor, txt: torch.Tensor, truth: Sequence[Any]) -> float | None:
    """Top-1 accuracy; ``truth[i]`` is a candidate index or a set of acceptable ones."""
    pred = (img @ txt.T).argmax(1).tolist()
    return _mean([p in t if isinstance(t, (set, frozenset)) else p == t
                  for p, t in zip(pred, truth, strict=True)])


def evaluate(model: open_clip.CLIP, preprocess: Callable, tokenizer: Callable,
             n: int = 1200, distractors: int = 1000) -> dict[str, Any]:
    """Zero-shot accuracies on images never trained on (see the model card for each)."""
    names = synthetic.CLASS_NAMES
    res: dict[str, Any] = {"n": n}

    # (a) the demo's own images: synthetic.make_example, validation seed.
    demo = [synthetic.make_example(i, synthetic.SPLIT_SEEDS["validation"], IMAGE_SIZE)
            for i in range(n)]
    img = image_features(model, preprocess, [d[0] for d in demo])
    labels = [d[1] for d in demo]
    prompts = [[t.format(_article(c)) for t in CLASS_TEMPLATES] for c in names]
    txt = text_features(model, tokenizer, prompts)
    pred = (img @ txt.T).argmax(1)
    res["demo_classes"] = zero_shot(img, txt, labels)
    res["demo_classes_per_template"] = {
        t: zero_shot(img, text_features(model, tokenizer, [[t.format(_article(c))] for c in names]),
                     labels) for t in CLASS_TEMPLATES}
    res["demo_classes_per_class"] = {
        c: _mean([int(pred[i]) == k for i in range(n) if labels[i] == k])
        for k, c in enumerate(names)}
    res["demo_confusion"] = [[int(((pred == j) & (torch.tensor(labels) == i)).sum())
                              for j in range(len(names))] for i in range(len(names))]
    res["single_words"] = {t: zero_shot(img, text_features(
        model, tokenizer, [[t.format(w)] for w in SINGLE_WORDS]), labels)
        for t in WORD_TEMPLATES}

    # The same single words among many common English words (a CLIP-Dissect concept list).
    if distractors:
        import wordfreq
        extra = [w for w in wordfreq.top_n_list("en", distractors + 200)
                 if w.isalpha() and w not in SINGLE_WORDS][:distractors]
        vocab = list(SINGLE_WORDS) + extra
        txt_v = text_features(model, tokenizer, [[w] for w in vocab])
        pred_v = (img @ txt_v.T).argmax(1).tolist()
        res["single_words_with_distractors"] = {
            "distractors": len(extra), "source": "wordfreq.top_n_list('en'), alphabetic",
            "accuracy": _mean([p == t for p, t in zip(pred_v, labels, strict=True)]),
            "top_wrong": Counter(vocab[p] for p, t in zip(pred_v, labels, strict=True)
                                 if p != t).most_common(8)}

    # (b, c) the captioned generator's held-out seed, compositional scenes only.
    scenes, ims = [], []
    i = 0
    while len(scenes) < n:
        im, sc = captions.make_scene(i, HELDOUT_SEED, IMAGE_SIZE)
        i += 1
        if sc.kind != "demo":
            scenes.append(sc)
            ims.append(im)
    img = image_features(model, preprocess, ims)
    truth = [{s.label, names.index(s.second[0])} if s.kind == "pair" else s.label
             for s in scenes]
    # Several shapes of one kind are captioned with the plural: "circles", not "a circle".
    plural = text_features(model, tokenizer, [
        [t.format(captions.PLURALS[c]) for t in CLASS_TEMPLATES] if c in captions.PLURALS
        else p for c, p in zip(names, prompts, strict=True)])
    sims = torch.where(torch.tensor([s.kind == "objects" for s in scenes])[:, None],
                       img @ plural.T, img @ txt.T)
    pred = sims.argmax(1).tolist()
    ok = [p in t if isinstance(t, set) else p == t for p, t in zip(pred, truth, strict=True)]
    res["compositional_classes"] = _mean(ok)
    res["compositional_by_kind"] = {
        k: _mean([ok[j] for j, s in enumerate(scenes) if s.kind == k])
        for k in ("object", "objects", "pair", "texture") if any(s.kind == k for s in scenes)}

    colours = captions.COLOUR_NAMES
    objs = [j for j, s in enumerate(scenes) if s.kind == "object"]
    res["object_images"] = len(objs)

    def attr(candidates: Sequence[str], prompt: Callable[[Any, str], str], value) -> float:
        ok, cache = [], {}
        for j in objs:  # the prompts name the true shape, so only the attribute varies
            s = scenes[j]
            if s.label not in cache:
                cache[s.label] = text_features(model, tokenizer,
                                               [[prompt(s, c)] for c in candidates])
            ok.append(int((img[j] @ cache[s.label].T).argmax()) == candidates.index(value(s)))
        return _mean(ok)

    res["colour"] = attr(colours, lambda s, c: f"{_article(c)} {s.name}", lambda s: s.colour)
    res["background_colour"] = attr(
        colours, lambda s, c: f"{_article(s.name)} on {_article(c)} background",
        lambda s: s.background)
    res["position"] = attr(captions.POSITIONS,
                           lambda s, p: f"{_article(s.name)} {captions._POS_PHRASE[p]}",
                           lambda s: s.position)
    res["size"] = attr(captions.SIZES, lambda s, z: f"{_article(z)} {s.name}", lambda s: s.size)
    tex = [j for j, s in enumerate(scenes) if s.kind == "texture"]
    txt_c = text_features(model, tokenizer, [[c] for c in colours])
    sims = img[tex] @ txt_c.T  # either of a texture's two colours counts
    res["texture_colour_any"] = _mean([
        colours[int(sims[k].argmax())] in (scenes[j].colour, scenes[j].background)
        for k, j in enumerate(tex)])
    cnt = [j for j, s in enumerate(scenes) if s.kind in ("object", "objects")]
    ok = []
    counts = {k: text_features(model, tokenizer, [["one " + c], ["two " + captions.PLURALS[c]],
                                                  ["three " + captions.PLURALS[c]]])
              for k, c in enumerate(captions.SHAPES)}
    for j in cnt:
        ok.append(int((img[j] @ counts[scenes[j].label].T).argmax()) == scenes[j].count - 1)
    res["count"] = _mean(ok)
    return res


# -- model card ----------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def model_card(cfg: dict[str, Any], m: dict[str, Any]) -> str:
    """MODEL_CARD.md from the config and the metrics of a run."""
    tr = m["training"]
    names = synthetic.CLASS_NAMES
    per_class = "\n".join(f"| {c} | {_pct(m['demo_classes_per_class'][c])} |" for c in names)
    per_tmpl = ", ".join(f'"{t}" {_pct(a)}' for t, a in m["demo_classes_per_template"].items())
    words = ", ".join(f'"{t}" {_pct(a)}' for t, a in m["single_words"].items())
    kinds = ", ".join(f"{k} {_pct(a)}" for k, a in m["compositional_by_kind"].items())
    dis = m.get("single_words_with_distractors")
    dis_line = (f"- Single words among {dis['distractors'] + len(SINGLE_WORDS):,} candidates (the "
                f"12 words plus the {dis['distractors']:,} most frequent English words, "
                f"{dis['source']}): **{_pct(dis['accuracy'])}**; the most frequent wrong "
                f"winners: {', '.join(f'{w} ({k})' for w, k in dis['top_wrong']) or 'none'}.\n"
                if dis else "")
    command = (f"python scripts/train_demo_labeler.py --out data/demo/labeler --steps {tr['steps']}"
               f" --batch-size {tr['batch_size']} --lr {tr['lr']:g} --seed {tr['seed']}"
               f" --threads {tr['threads']}")
    return f"""# Demo labeler (a tiny CLIP for the offline demo atlas)

A small CLIP, trained from scratch on the CPU on captioned procedural images
(`pipeline.data.captions`), so the demo atlas can label its units with words (CLIP-Dissect,
SoftWPMI) without a hub. It knows only the {len(captions.CONCEPT_WORDS)} words its captions use
(`captions.CONCEPT_WORDS`): shapes, textures, colours, sizes, positions and counts; every other
word encodes as one shared "null" word (see Training data). It exists to demonstrate and test
the pipeline, not for any other use.

## Loading
```python
import open_clip
model, _, preprocess = open_clip.create_model_and_transforms("local-dir:data/demo/labeler")
tokenizer = open_clip.get_tokenizer("local-dir:data/demo/labeler")
```
No network needed (`HF_HUB_OFFLINE=1` works): the config, the weights and open_clip's bundled
BPE vocabulary are all local.

## Architecture
`open_clip.model.CLIP(**model_cfg)` with
```json
{json.dumps(cfg, indent=2)}
```
- {m["parameters"]:,} parameters ({cfg["text_cfg"]["vocab_size"]:,} × {cfg["text_cfg"]["width"]}
  of them are the token embedding of open_clip's default `SimpleTokenizer`).
- Weights: `{WEIGHTS_NAME}`, float16 safetensors ({m["weights_bytes"] / 1e6:.2f} MB);
  `open_clip_config.json` holds `model_cfg` and `preprocess_cfg`
  (`{json.dumps(PREPROCESS_CFG)}`). At 64×64 the resize and crop are the identity.

## Training data
`pipeline.data.captions.make_captioned(index, seed={TRAIN_SEED})`, every image fresh (none reused):
{tr["samples"]:,} image–caption pairs. Classes cycle through the demo's 12, each shape twice
for every texture once (`captions.class_of`); about 40% of the images are drawn exactly as
`pipeline.data.synthetic` draws them (random colours, captioned with the class words only), the
rest are compositional: one shape with a named colour, background, size and position; two or
three small shapes of one kind (a count, plural nouns); two different shapes; full-frame textures
in two named colours. Captions come from several templates (`captions.variants`).
Token embeddings of words the captions never use are set to zero at initialisation and get no
gradient, so they stay zero: an unknown word encodes as one shared "null" word, not as a random
direction that could match some images by chance.

## Training
- Command: `{command}`
- Seed {tr["seed"]}; {tr["steps"]} steps of batch {tr["batch_size"]}; `open_clip.loss.ClipLoss`
  with the learned logit scale (clamped at 100; final {tr["logit_scale"]}); AdamW (β = 0.9,
  0.98), peak lr {tr["lr"]:g}, {tr["warmup"]} warm-up steps then cosine to 0, weight decay
  {tr["weight_decay"]:g} (none on gains, biases, the logit scale), gradient norm clipped at 1.
  Final loss (running mean) {tr["final_loss"]:.3f}.
- CPU, {tr["threads"]} threads, {tr["workers"]} data workers; torch {torch.__version__},
  open_clip {open_clip.__version__}, Python {platform.python_version()}.
- Time: training {tr["train_seconds"] / 60:.1f} min; the whole script (training, saving,
  reloading, evaluation) {tr["total_seconds"] / 60:.1f} min. 1-minute load average at the end:
  {tr["load_average"]:.1f} on {os.cpu_count()} CPUs.

## Zero-shot accuracy on held-out images
Prompts for a class name: {", ".join(f'"{t}"' for t in CLASS_TEMPLATES)} (with "a"/"an" where
English wants one: "a circle", "vertical stripes"), their embeddings averaged. Chance is 8.3%
for 12 candidates.

**(a) The demo's images** (`synthetic.make_example`, validation seed
{synthetic.SPLIT_SEEDS["validation"]}, {m["n"]:,} images) among the 12 class names:
**{_pct(m["demo_classes"])}**. One prompt at a time: {per_tmpl}.

| class | accuracy |
|---|---:|
{per_class}

- Single words, one per class ({", ".join(SINGLE_WORDS)}), as a CLIP-Dissect concept list holds
  them, on the same images: {words}.
{dis_line}
**(b) Compositional held-out scenes** (`captions.make_scene`, seed {HELDOUT_SEED}, the
{m["n"]:,} first non-demo scenes) among the 12 class names: **{_pct(m["compositional_classes"])}**
(either shape of a pair counts; for two or three shapes of one kind the shape candidates are
plurals, "circles", as in their captions); by kind: {kinds}.

**(c) Attributes** of the {m["object_images"]} single-object scenes of (b), the prompt naming
the true shape so only the attribute varies:
- colour of the shape, "a {{colour}} {{shape}}" among 12 colours: **{_pct(m["colour"])}**
- background colour, "a {{shape}} on a {{colour}} background": {_pct(m["background_colour"])}
- position, "a {{shape}} on the left" … "in the centre" (5): {_pct(m["position"])}
- size, "a small/large {{shape}}" (2): {_pct(m["size"])}
- count ("one circle" / "two circles" / "three circles", single and multi-object scenes):
  {_pct(m["count"])}
- textures: the bare colour word that wins is one of the texture's two colours:
  {_pct(m["texture_colour_any"])}

None of these images was trained on: training draws seed {TRAIN_SEED} of the captioned generator,
whose demo-like scenes come from its own random stream (not `synthetic`'s), so (a) holds
`synthetic` images the model never saw, and (b), (c) a seed it never saw.

## Limitations
Shapes are harder than textures (square is the weakest class); like CLIP at large, the model
reads captions much as bags of words: colour and size words are reliable, but which colour is the
background and where a shape sits are weak (the background and position figures above).
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("data/demo/labeler"))
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=0, help="data-generating processes")
    p.add_argument("--eval-images", type=int, default=1200)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    m = train(args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
              weight_decay=args.weight_decay, seed=args.seed, threads=args.threads,
              workers=args.workers, eval_images=args.eval_images)
    tr = m["training"]
    print(f"trained {tr['steps']} steps × {tr['batch_size']} in {tr['train_seconds']:.0f} s "
          f"(whole run {tr['total_seconds']:.0f} s); weights {m['weights_bytes'] / 1e6:.2f} MB")
    print(f"(a) demo images, 12 class names: {_pct(m['demo_classes'])}  "
          f"per template {m['demo_classes_per_template']}")
    print(f"    single words: {m['single_words']}")
    if "single_words_with_distractors" in m:
        d = m["single_words_with_distractors"]
        print(f"    single words + {d['distractors']} English words: {_pct(d['accuracy'])}  "
              f"wrong winners {d['top_wrong']}")
    print(f"(b) compositional, 12 class names: {_pct(m['compositional_classes'])}  "
          f"{m['compositional_by_kind']}")
    print(f"(c) colour {_pct(m['colour'])}, background {_pct(m['background_colour'])}, "
          f"position {_pct(m['position'])}, size {_pct(m['size'])}, count {_pct(m['count'])}, "
          f"texture colour {_pct(m['texture_colour_any'])}")
    print(f"wrote {args.out}/{{{CONFIG_NAME}, {WEIGHTS_NAME}, MODEL_CARD.md, metrics.json}}")


if __name__ == "__main__":
    main()
