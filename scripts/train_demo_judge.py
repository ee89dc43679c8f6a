"""Train the demo's second judge: a small CNN on the procedural images, on the CPU.

    python scripts/train_demo_judge.py --out data/demo/judge               # the bundled one
    python scripts/train_demo_judge.py --out /tmp/judge --minutes 8        # steps fit a budget
    python scripts/train_demo_judge.py --out /tmp/judge --steps 5 --train-images 240  # a quick try

The network is ``pipeline.judge.cnn.SmallCNN`` (conv/BN/ReLU stages, global average pool, linear
head; nothing shared with the ViT). Training images are ``pipeline.data.synthetic.make_example``
with generator seed ``--data-seed`` (2; the demo model trained on seed 0 and was validated on
seed 1), reused across epochs with mild augmentation: flips (``train_demo_model.augment``),
random channel order, per-channel gain and offset, contrast, inversion, greyscale and pixel
noise, so that the judge reads shape and pattern rather than colour. Held-out accuracy is
measured on seed ``--heldout-seed`` (3) and on the demo's validation split (seed 1), neither
trained on, through ``load_cnn_judge`` on the saved files.

Writes ``judge.safetensors`` (float16 state dict), ``judge.json`` (architecture, class names,
input size, normalization, training, accuracy) and ``MODEL_CARD.md`` into ``--out``, atomically.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import train_demo_model as _demo  # reused, not copied: augment (flips), _flag
from safetensors.torch import save
from tqdm import tqdm
from trainlib import budget_steps, fit, train_step

from pipeline.data.synthetic import CLASS_NAMES, SPLIT_SEEDS, make_example
from pipeline.judge.cnn import CONFIG_NAME, WEIGHTS_NAME, SmallCNN, build_cnn, load_cnn_judge
from pipeline.store import atomic_write_bytes, atomic_write_json, atomic_write_text

IMAGE_SIZE = 64
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
ARCHITECTURE: dict[str, Any] = {"type": "SmallCNN", "num_classes": len(CLASS_NAMES), "stem": 16,
                                "stages": [[], [32], [64, 64], [128]]}
DATA_SEED = 2
STEPS = 1500
HELDOUT_SEED = 3




# -- data ----------------------------------------------------------------------------------
def _images(job: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Examples ``[start, start + n)`` of generator ``seed``: uint8 (n, H, W, 3), labels."""
    seed, start, n = job
    pairs = [make_example(i, seed, IMAGE_SIZE) for i in range(start, start + n)]
    return (np.stack([np.asarray(p[0]) for p in pairs]),
            np.asarray([p[1] for p in pairs], dtype=np.int64))


def generate(sets: dict[str, tuple[int, int]], workers: int) -> dict[str, tuple[np.ndarray, ...]]:
    """``{name: (seed, n)}`` → ``{name: (uint8 images, labels)}``, made in parallel."""
    chunk = 1000
    jobs = [(name, (seed, s, min(chunk, n - s))) for name, (seed, n) in sets.items()
            for s in range(0, n, chunk)]
    with mp.get_context("spawn").Pool(workers) as pool:
        parts = list(tqdm(pool.imap(_images, [j for _, j in jobs]), total=len(jobs),
                          desc="generate images", unit="chunk"))
    out = {}
    for name in sets:
        mine = [p for (k, _), p in zip(jobs, parts, strict=True) if k == name]
        out[name] = (np.concatenate([p[0] for p in mine]), np.concatenate([p[1] for p in mine]))
    return out


def to_input(x: torch.Tensor) -> torch.Tensor:
    """Float ``[0, 1]`` (N, 3, H, W) → the judge's normalized input."""
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def colour_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mild colour changes of ``[0, 1]`` images (N, 3, H, W) that keep every class: channel
    order, per-channel gain and offset, contrast, inversion, greyscale, pixel noise."""
    n = x.shape[0]

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=gen)

    perm = torch.argsort(torch.rand(n, 3, generator=gen), dim=1)
    x = torch.gather(x, 1, perm[:, :, None, None].expand_as(x))
    x = x * u(0.7, 1.3, 3, 1, 1) + u(-0.15, 0.15, 3, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = mean + (x - mean) * u(0.4, 1.2, 1, 1, 1)
    x = torch.where(u(0, 1, 1, 1, 1) < 0.2, 1.0 - x, x)
    grey = x.mean(dim=1, keepdim=True).expand_as(x)
    x = torch.where(u(0, 1, 1, 1, 1) < 0.15, grey, x)
    x = x + u(0.0, 0.05, 1, 1, 1) * torch.randn(x.shape, generator=gen)
    return x.clamp(0.0, 1.0)


def batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, gen: torch.Generator,
            augment: bool = True):
    """Endless shuffled epochs of augmented, normalized ``(x, y)`` from uint8 (N, 3, H, W)."""
    n = len(images)
    while True:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - batch_size + 1, batch_size):
            idx = perm[i : i + batch_size]
            x = images[idx].float() / 255.0
            if augment:
                x = colour_augment(_demo.augment(x, gen), gen)
            yield to_input(x).contiguous(memory_format=torch.channels_last), labels[idx]


def _chw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


# -- saving --------------------------------------------------------------------------------
def save_judge(model: SmallCNN, out: Path, config: dict[str, Any]) -> None:
    """``judge.safetensors`` (floating tensors in float16) and ``judge.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(torch.float16) if v.is_floating_point() else v).detach().contiguous()
             for k, v in model.state_dict().items()}
    atomic_write_bytes(out / WEIGHTS_NAME, save(state, metadata={"format": "pt"}))
    atomic_write_json(out / CONFIG_NAME, config, indent=2)


def accuracy(judge, images: np.ndarray, labels: np.ndarray) -> tuple[float, dict[str, float]]:
    """Overall and per-class accuracy of a loaded judge over all of its classes."""
    pred = judge.classify(images, judge.class_names)
    ok = pred == labels
    return float(ok.mean()), {c: float(ok[labels == k].mean()) for k, c in enumerate(CLASS_NAMES)}


# -- main ----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("data/demo/judge"))
    p.add_argument("--seed", type=int, default=0, help="init, shuffling and augmentation seed")
    p.add_argument("--data-seed", type=int, default=DATA_SEED,
                   help="the training images' generator seed")
    p.add_argument("--heldout-seed", type=int, default=HELDOUT_SEED)
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=None,
                        help=f"optimizer steps (reproducible; default {STEPS}, the bundled judge)")
    budget.add_argument("--minutes", type=float, default=None,
                        help="wall-clock budget; steps are fitted to it after timing a few "
                             "(unreliable on a shared, loaded CPU)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--label-smoothing", type=float, default=0.05)
    p.add_argument("--train-images", type=int, default=20000)
    p.add_argument("--heldout-images", type=int, default=1200)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build_cnn(ARCHITECTURE).to(memory_format=torch.channels_last)  # ~2x faster on CPU
    data = generate({"train": (args.data_seed, args.train_images),
                     "heldout": (args.heldout_seed, args.heldout_images),
                     "validation": (SPLIT_SEEDS["validation"], args.heldout_images)},
                    max(1, args.threads))
    xtr, ytr = _chw(data["train"][0]), torch.from_numpy(data["train"][1])
    gen = torch.Generator().manual_seed(args.seed)
    stream = batches(xtr, ytr, args.batch_size, gen)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    steps = STEPS if args.steps is None and args.minutes is None else args.steps
    if steps is None:  # time a throw-away copy, so the run is the same as `--steps N`
        probe = build_cnn(ARCHITECTURE).train()
        probe = probe.to(memory_format=torch.channels_last)
        probe_opt = torch.optim.AdamW(probe.parameters(), lr=0.0)
        probe_gen = torch.Generator().manual_seed(1)
        probe_stream = batches(xtr, ytr, args.batch_size, probe_gen)
        steps = budget_steps(lambda: train_step(probe, probe_opt, *next(probe_stream), 0.0, 0.0),
                             args.minutes, time.perf_counter() - t0, 20.0, timed=8)
        del probe, probe_opt, probe_stream

    warmup = max(1, steps // 20)
    train_seconds, final_loss = fit(model, opt, stream, steps, warmup, args.lr,
                                    args.label_smoothing)
    model.eval()

    command = (f"python scripts/train_demo_judge.py --out {shlex.quote(str(args.out))} "
               f"--seed {args.seed} --steps {steps}")
    defaults = parse_args([])
    extra = [_demo._flag(k, v) for k, v in vars(args).items()
             if k not in ("out", "seed", "steps", "minutes") and v != getattr(defaults, k)]
    command = " ".join([command, *extra])
    config: dict[str, Any] = {
        "id": "demo-cnn",
        "architecture": ARCHITECTURE,
        "weights": WEIGHTS_NAME,
        "dtype": "float16",
        "class_names": list(CLASS_NAMES),
        "input_size": IMAGE_SIZE,
        "resize": "bilinear, antialiased, to input_size x input_size",
        "normalization": {"scale": "pixels / 255", "mean": list(MEAN), "std": list(STD)},
        "embedding": {"layer": "global average pool of the last stage (before the head)",
                      "dim": model.embed_dim, "normalized": "L2"},
        "training": {"seed": args.seed, "data": "pipeline.data.synthetic.make_example",
                     "data_seed": args.data_seed, "images": args.train_images, "steps": steps,
                     "batch_size": args.batch_size, "optimizer": "AdamW",
                     "lr": args.lr, "warmup": warmup, "schedule": "linear warm-up, cosine to 0",
                     "weight_decay": args.weight_decay,
                     "label_smoothing": args.label_smoothing, "threads": args.threads,
                     "augmentation": "flips; channel order, gain, offset, contrast, inversion, "
                                     "greyscale, noise",
                     "command": command},
    }
    save_judge(model, args.out, config)
    judge = load_cnn_judge(args.out)  # measure what was saved (float16)
    acc_h, per_class = accuracy(judge, *data["heldout"])
    acc_v, _ = accuracy(judge, *data["validation"])
    xa, ya = data["heldout"]
    aug = colour_augment(_chw(xa).float() / 255.0, torch.Generator().manual_seed(123))
    aug_u8 = (aug * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    acc_aug = float((judge.classify(aug_u8, judge.class_names) == ya).mean())
    total_seconds = time.perf_counter() - t0
    config["accuracy"] = {
        "heldout": round(acc_h, 4), "heldout_seed": args.heldout_seed,
        "n": int(len(data["heldout"][1])),
        "demo_validation": round(acc_v, 4), "demo_validation_seed": SPLIT_SEEDS["validation"],
        "heldout_colour_augmented": round(acc_aug, 4),
        "per_class": {k: round(v, 4) for k, v in per_class.items()}}
    config["training"].update(train_seconds=round(train_seconds, 1),
                              total_seconds=round(total_seconds, 1),
                              final_loss=round(final_loss, 4))
    atomic_write_json(args.out / CONFIG_NAME, config, indent=2)
    atomic_write_text(args.out / "MODEL_CARD.md",
                      model_card(config, (args.out / WEIGHTS_NAME).stat().st_size,
                                 sum(p.numel() for p in model.parameters())))
    print(f"held-out accuracy: {acc_h:.4f} (seed {args.heldout_seed}), demo validation "
          f"{acc_v:.4f}, colour-augmented {acc_aug:.4f}; training {train_seconds:.0f} s, "
          f"whole run {total_seconds:.0f} s")
    return config


def model_card(config: dict[str, Any], weights_bytes: int, n_params: int) -> str:
    """MODEL_CARD.md from a finished run's config."""
    tr, acc = config["training"], config["accuracy"]
    rows = "\n".join(f"| {i} | {c} | {acc['per_class'][c]:.3f} |"
                     for i, c in enumerate(config["class_names"]))
    arch = config["architecture"]
    return f"""# Demo CNN judge (a second observer for recognisability)

A small convolutional network, trained from scratch on the CPU on the demo's procedural images
(`pipeline.data.synthetic`), that judges how recognisable a unit's visualization is (issue 21):
its pooled features give the 2-AFC embedding and its head the transferability class. It is the
second judge beside the demo labeler (a CLIP ViT) and shares nothing with the atlas's ViT: plain
torch convolutions, batch norm, ReLU, a global average pool and a linear head. The judge measures;
no recipe may use it in an objective, regularizer or selection. It exists to check the demo's
conclusions, not for any other use.

## Loading
```python
from pipeline.judge.cnn import load_cnn_judge
judge = load_cnn_judge()                 # data/demo/judge
judge.embed(images)     # uint8 (N, H, W, 3) -> (N, {config["embedding"]["dim"]}) unit-norm float32
judge.classify(images, ["circle", "ring"])  # (N,) index into the given names
```

## Architecture
`SmallCNN(num_classes={arch["num_classes"]}, stem={arch["stem"]}, stages={arch["stages"]})`
(`pipeline.judge.cnn`): a 3×3 stride-2 conv/BN/ReLU stem, then stages of 3×3 conv/BN/ReLU
with a 2×2 max pool before every stage but the first (an empty first stage pools the stem), global
average pool ({config["embedding"]["dim"]} features, the embedding), linear head over the 12
classes. {n_params:,} parameters; weights `{WEIGHTS_NAME}`, float16 safetensors
({weights_bytes / 1e3:.0f} KB); `{CONFIG_NAME}` holds the architecture, class names, input size
({config["input_size"]}×{config["input_size"]}; other sizes are resized bilinearly, antialiased),
normalization ((pixels / 255 − {config["normalization"]["mean"][0]}) /
{config["normalization"]["std"][0]}), training settings and accuracy.

## Training
- Data: `make_example(i, seed={tr["data_seed"]})` for i < {tr["images"]:,} (balanced over the
  12 classes), reused across epochs. The demo model trained on seed {SPLIT_SEEDS["train"]} and
  was validated on seed {SPLIT_SEEDS["validation"]}; this judge never saw either.
- Augmentation (mild; visualizations have odd colours): random horizontal and vertical flips,
  channel order, per-channel gain (0.7–1.3) and offset (±0.15), contrast (0.4–1.2), inversion
  (20%), greyscale (15%), pixel noise (σ ≤ 0.05). No rotations by 90° (they swap horizontal and
  vertical stripes).
- {tr["steps"]} steps of batch {tr["batch_size"]} ({tr["steps"] * tr["batch_size"]:,} samples),
  AdamW, peak lr {tr["lr"]:g}, {tr["warmup"]} warm-up steps then cosine
  to 0, weight decay {tr["weight_decay"]:g} on conv and linear weights, label smoothing
  {tr["label_smoothing"]:g}, gradient norm clipped at 1 (`trainlib.train_step`).
  Seed {tr["seed"]} (initialization, shuffling, augmentation). Final running loss
  {tr["final_loss"]:.3f}.
- CPU, {tr["threads"]} threads; torch {torch.__version__}, Python {platform.python_version()}.
  Time: training {tr["train_seconds"] / 60:.1f} min, the whole script (image generation,
  training, saving, reloading, evaluation) {tr["total_seconds"] / 60:.1f} min; 1-minute load
  average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.
- Command: `{tr["command"]}`

## Held-out accuracy
Measured on the saved float16 files, through `load_cnn_judge`:
- **{acc["heldout"]:.4f}** on {acc["n"]:,} images of generator seed {acc["heldout_seed"]};
- {acc["demo_validation"]:.4f} on the demo's validation split (seed
  {acc["demo_validation_seed"]}, the first {acc["n"]:,} images);
- {acc["heldout_colour_augmented"]:.4f} on the seed-{acc["heldout_seed"]} images with the
  training colour augmentation applied (chance: {1 / len(config["class_names"]):.3f}).

| label | class | accuracy (seed {acc["heldout_seed"]}) |
|---:|---|---:|
{rows}
"""


if __name__ == "__main__":
    main()
