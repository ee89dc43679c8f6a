"""Train the bundled demo model: a small timm ViT on the procedural dataset, on the CPU.

    python scripts/train_demo_model.py --out data/demo --seed 0 --steps 1200
    python scripts/train_demo_model.py --out data/demo --minutes 9.5    # steps fitted to a budget
    python scripts/train_demo_model.py --out data/second --seed 1 --model vit_small_patch16_224 \
        --model-kwargs embed_dim=128 depth=6 num_heads=4 --weights-name vit-second.safetensors

``--model`` and ``--model-kwargs key=value ...`` (values parsed as ``vit-atlas`` parses them,
overriding the defaults in ``MODEL_KWARGS`` key by key) choose another architecture; the
defaults reproduce ``data/demo``. The input size follows ``img_size``.

Writes ``vit-demo.safetensors`` (state dict; ``--weights-name``), ``model.json`` (what the
pipeline needs to rebuild the model) and ``MODEL_CARD.md`` into ``--out``, each atomically. Inputs
are preprocessed with the model's own eval transform (timm's data config, ``input_size`` = 64,
or ``img_size``), exactly as the atlas does at index time; training adds only random flips on
top. The held-out accuracy is measured on the ``validation`` split (a different generator seed)
with that same transform.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import save
from timm.data import create_transform, resolve_model_data_config
from tqdm import tqdm
from trainlib import budget_steps, fit, train_step

from pipeline.data.synthetic import CLASS_NAMES, SPLIT_SEEDS, iter_examples
from pipeline.models.load import parse_model_kwargs
from pipeline.store import atomic_write_bytes, atomic_write_json, atomic_write_text

MODEL_NAME = "vit_tiny_patch16_224"
IMAGE_SIZE = 64
MODEL_KWARGS = {
    "num_classes": len(CLASS_NAMES),
    "img_size": IMAGE_SIZE,
    "patch_size": 8,
    "embed_dim": 96,
    "depth": 4,
    "num_heads": 3,
}
WEIGHTS_NAME = "vit-demo.safetensors"


def build_model(name: str = MODEL_NAME, kwargs: dict | None = None) -> torch.nn.Module:
    return timm.create_model(name, pretrained=False, **(MODEL_KWARGS if kwargs is None else kwargs))


def eval_transform(model: torch.nn.Module, image_size: int = IMAGE_SIZE):
    """The model's own eval transform at the model's input size (what the pipeline uses)."""
    cfg = resolve_model_data_config(model)
    cfg["input_size"] = (3, image_size, image_size)
    return create_transform(**cfg)


# -- data ----------------------------------------------------------------------------------
_TF = None
_SIZE = IMAGE_SIZE


def _worker_init(name: str, kwargs: dict, image_size: int) -> None:
    global _TF, _SIZE
    torch.set_num_threads(1)
    _TF, _SIZE = eval_transform(build_model(name, kwargs), image_size), image_size


def _encode_chunk(job: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Examples ``[start, start + n)`` of a split, eval-transformed: float16 (n, 3, H, W)."""
    split, start, n = job
    xs, ys = [], []
    for _, image, label in iter_examples(n, split, _SIZE, start):
        xs.append(_TF(image).numpy().astype(np.float16))
        ys.append(label)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def encode_splits(sizes: dict[str, int], workers: int, name: str = MODEL_NAME,
                  kwargs: dict | None = None,
                  image_size: int = IMAGE_SIZE) -> dict[str, tuple[torch.Tensor, ...]]:
    """The first ``n`` examples of each split as eval-transformed tensors (made in parallel)."""
    chunk = 500
    jobs = [(split, s, min(chunk, n - s)) for split, n in sizes.items() for s in range(0, n, chunk)]
    ctx = mp.get_context("spawn")  # no fork after torch has started its thread pool
    init = (name, MODEL_KWARGS if kwargs is None else kwargs, image_size)
    with ctx.Pool(workers, initializer=_worker_init, initargs=init) as pool:
        parts = list(tqdm(pool.imap(_encode_chunk, jobs), total=len(jobs), desc="generate images",
                          unit="chunk"))
    out = {}
    for split in sizes:
        mine = [p for job, p in zip(jobs, parts, strict=True) if job[0] == split]
        out[split] = (torch.from_numpy(np.concatenate([p[0] for p in mine])),
                      torch.from_numpy(np.concatenate([p[1] for p in mine])))
    return out


# -- training ------------------------------------------------------------------------------
def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal and vertical flips (both keep every class's identity)."""
    n = x.shape[0]
    hflip = torch.rand(n, generator=gen) < 0.5
    vflip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(hflip[:, None, None, None], x.flip(3), x)
    return torch.where(vflip[:, None, None, None], x.flip(2), x)


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i : i + batch_size].float()).argmax(1)
                      for i in range(0, len(x), batch_size)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("data/demo"))
    p.add_argument("--seed", type=int, default=0, help="init, shuffling and augmentation seed")
    p.add_argument("--model", default=MODEL_NAME, help="timm architecture name")
    p.add_argument("--model-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override MODEL_KWARGS key by key (values parsed as Python literals)")
    p.add_argument("--weights-name", default=WEIGHTS_NAME, help="weights file name in --out")
    p.add_argument("--note", default=None,
                   help="a paragraph for the model card saying what this model is for")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=None, help="optimizer steps (reproducible)")
    budget.add_argument("--minutes", type=float, default=9.5,
                        help="wall-clock budget; steps are fitted to it after timing a few")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--train-images", type=int, default=40000,
                   help="procedural training images (split 'train'), reused across epochs")
    p.add_argument("--val-images", type=int, default=2000,
                   help="held-out images (split 'validation')")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    kwargs = {**MODEL_KWARGS, **parse_model_kwargs(args.model_kwargs)}
    image_size = kwargs.get("img_size", IMAGE_SIZE)
    if not isinstance(image_size, int):
        raise SystemExit(f"img_size must be an int, got {image_size!r}")
    model = build_model(args.model, kwargs)
    tf = eval_transform(model, image_size)

    data = encode_splits({"train": args.train_images, "validation": args.val_images}, args.threads,
                         args.model, kwargs, image_size)
    (xtr, ytr), (xva, yva) = data["train"], data["validation"]

    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "pos_embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1 or "pos_embed" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    n_train, bs = len(xtr), args.batch_size

    def batches():
        while True:
            perm = torch.randperm(n_train, generator=gen)
            for i in range(0, n_train - bs + 1, bs):
                idx = perm[i : i + bs]
                yield augment(xtr[idx].float(), gen), ytr[idx]

    stream = batches()
    steps = args.steps
    if steps is None:
        # Fit the step count to the budget, timing a throw-away copy so the real run below is
        # the same computation as `--steps N` (and the card can say how to reproduce it).
        probe = build_model(args.model, kwargs)
        probe_opt = torch.optim.AdamW(probe.parameters(), lr=0.0)
        probe.train()
        xb, yb = xtr[:bs].float(), ytr[:bs]
        steps = budget_steps(lambda: train_step(probe, probe_opt, xb, yb, 0.0, 0.0),
                             args.minutes, time.perf_counter() - t0, 15.0, timed=10)
        del probe, probe_opt

    warmup = max(1, steps // 20)
    train_seconds, _ = fit(model, opt, stream, steps, warmup, args.lr, args.label_smoothing)

    pred = predict(model, xva)
    correct = pred == yva
    accuracy = correct.float().mean().item()
    per_class = {name: correct[yva == c].float().mean().item()
                 for c, name in enumerate(CLASS_NAMES)}
    print(f"held-out accuracy (validation, n={len(yva)}): {accuracy:.4f}")

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    weights_name = args.weights_name
    atomic_write_bytes(out / weights_name, save(state, metadata={"format": "pt"}))
    command = ("python scripts/train_demo_model.py "
               f"--out {shlex.quote(str(out))} --seed {args.seed} --steps {steps}")
    defaults = parse_args([])
    extra = [_flag(k, v) for k, v in vars(args).items()
             if k not in ("out", "seed", "steps", "minutes") and v != getattr(defaults, k)]
    command = " ".join([command, *extra])
    invoked = shlex.join(["python", "scripts/train_demo_model.py",
                          *(sys.argv[1:] if argv is None else argv)])
    card = {
        "model": args.model,
        "model_kwargs": dict(kwargs),
        "weights": weights_name,
        "classes": list(CLASS_NAMES),
        "accuracy": {"validation": round(accuracy, 4), "n": len(yva)},
        "seed": args.seed,
        "image_size": image_size,
        "command": command,
        "invoked_as": invoked,
    }
    atomic_write_json(out / "model.json", card, indent=2)
    total_seconds = time.perf_counter() - t0
    atomic_write_text(out / "MODEL_CARD.md", model_card(
        args, card, per_class, tf, steps, warmup, train_seconds, total_seconds, command,
        (out / weights_name).stat().st_size, model))
    print(f"wrote {out}/{{{weights_name}, model.json, MODEL_CARD.md}} in {total_seconds:.0f} s")


def _flag(key: str, value) -> str:
    """``--key value`` for the card's command (lists as several words), shell-quoted."""
    words = value if isinstance(value, list) else [value]
    return " ".join([f"--{key.replace('_', '-')}", *(shlex.quote(str(w)) for w in words)])


def model_card(args, card, per_class, tf, steps, warmup, train_seconds, total_seconds, command,
               weights_bytes, model) -> str:
    n_params = sum(p.numel() for p in model.parameters())
    acc = card["accuracy"]
    rows = "\n".join(f"| {i} | {name} | {per_class[name]:.3f} |"
                     for i, name in enumerate(CLASS_NAMES))
    tf_lines = "\n".join(f"    {t}" for t in tf.transforms)
    kw = card["model_kwargs"]
    depth = len(model.blocks)
    width = model.blocks[0].mlp.fc1.out_features
    gh, gw = model.patch_embed.grid_size
    note = f"\n{args.note}\n" if args.note else ""
    size = card["image_size"]
    return f"""# ViT demo model (procedural shapes and textures)

A small vision transformer trained from scratch on the CPU on `pipeline.data.synthetic`, so the
atlas has a model whose features mean something without hub weights or ImageNet. It exists to
demonstrate and test the pipeline, not for any other use.
{note}
## Architecture
```python
timm.create_model("{card["model"]}", pretrained=False,
                  {", ".join(f"{k}={v}" for k, v in kw.items())})
```
- {n_params:,} parameters, {depth} blocks: {depth} FFN layers
  (`blocks.{{i}}.mlp.act`) of {width} units each.
- Tokens: an {gh}×{gw} patch grid plus {model.num_prefix_tokens} CLS token.
- Weights: `{card["weights"]}`, a safetensors state dict in float32 ({weights_bytes / 1e6:.2f} MB).

## Classes
{", ".join(f"{i} {name}" for i, name in enumerate(CLASS_NAMES))}

## Data and preprocessing
- Training: the first {args.train_images:,} images of the `train` split (generator seed
  {SPLIT_SEEDS["train"]}), {size}×{size}, reused across epochs with random
  horizontal and vertical flips.
- Held-out: the first {acc["n"]:,} images of the `validation` split (generator seed
  {SPLIT_SEEDS["validation"]}), never seen in training.
- Both go through the model's own eval transform, the one the pipeline applies at index time:
  timm `resolve_model_data_config(model)` with `input_size=(3, {size}, {size})`,
  then `create_transform(**cfg)`:
```
{tf_lines}
```

## Training
- Command: `{command}`
- Invoked as: `{card["invoked_as"]}`
- Seed {card["seed"]} (initialization, shuffling, flips).
- {steps} steps of batch {args.batch_size} ({steps * args.batch_size:,} samples).
- AdamW, peak lr {args.lr:g}, {warmup} linear warm-up steps, then cosine annealing to 0.
- Weight decay {args.weight_decay:g} (none on norms, biases, tokens and position embedding);
  label smoothing {args.label_smoothing:g}; gradient norm clipped at 1.0.
- CPU, {args.threads} threads; torch {torch.__version__}, timm {timm.__version__},
  Python {platform.python_version()}.
- Time: training {train_seconds / 60:.1f} min; the whole script (data generation, training,
  evaluation, writing) {total_seconds / 60:.1f} min. The 1-minute load average at the end was
  {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; when it is above the thread count, other
  jobs shared the CPU and the times are longer than on an idle machine.

## Held-out accuracy
**{acc["validation"]:.4f}** on {acc["n"]:,} validation images (chance: {1 / len(CLASS_NAMES):.3f}).

| label | class | accuracy |
|---:|---|---:|
{rows}
"""


if __name__ == "__main__":
    main()
