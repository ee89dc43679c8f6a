"""Time and memory of the label stage's SoftWPMI for one layer against a concept set.

Default: a ViT-B-sized layer (3,072 units) over 10,000 probe images against 20,000 concepts
with 512-d embeddings (random unit vectors and correlated activations: the cost does not
depend on the values). The baseline, measured in the same run, is CLIP-Dissect's own loop
structure (one unit at a time, the same formula) on ``--baseline-units`` units, scaled to
the layer. Also times the text side (20,000 concepts through a labeler's text tower: the
bundled demo labeler, and a random-init ViT-B-16 tower on ``--text-sample`` concepts).

    python scripts/bench_label.py                  # ViT-B layer, 20k concepts
    python scripts/bench_label.py --units 256 --images 2000 --concepts 2000  # quick
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from benchlib import add_layer_size_options, proc_status_kb  # noqa: E402

from pipeline.label.dissect import (  # noqa: E402
    SoftWPMI,
    concept_probabilities,
    soft_wpmi,
    top_images,
)


def unit_vectors(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_loop(P: torch.Tensor, top: np.ndarray, params: SoftWPMI) -> torch.Tensor:
    """CLIP-Dissect's structure: gather and reduce one unit at a time."""
    k = top.shape[1]
    w = (params.p_start - torch.arange(k) / k * (params.p_start - params.p_end)).unsqueeze(1)
    rows = []
    for u in range(top.shape[0]):
        p = P.gather(0, torch.as_tensor(top[u]).unsqueeze(1).expand(-1, P.shape[1]))
        rows.append(torch.log(1 + w * (p - 1) + params.min_prob).sum(0, keepdim=True))
    given = torch.cat(rows)
    return given - params.lam * (torch.logsumexp(given, 0, keepdim=True) - math.log(len(rows)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_layer_size_options(p)
    p.add_argument("--concepts", type=int, default=20000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--baseline-units", type=int, default=64)
    p.add_argument("--text-sample", type=int, default=512,
                   help="concepts timed through a random-init ViT-B-16 text tower (0: skip)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    params = SoftWPMI()
    base = rng.standard_normal((args.images, 16), dtype=np.float32)
    acts = base @ rng.standard_normal((16, args.units), dtype=np.float32)
    acts += 0.5 * rng.standard_normal(acts.shape, dtype=np.float32)
    img = unit_vectors(rng, args.images, args.dim)
    txt = unit_vectors(rng, args.concepts, args.dim)
    rss0 = proc_status_kb("VmRSS")

    t = time.perf_counter()
    P = concept_probabilities(img, txt, params.scale)
    t_prob = time.perf_counter() - t
    t = time.perf_counter()
    top = top_images(acts.astype(np.float16), params.top_k)
    t_top = time.perf_counter() - t
    t = time.perf_counter()
    scores = soft_wpmi(P, top, params)
    t_wpmi = time.perf_counter() - t
    peak = proc_status_kb("VmHWM")

    n = min(args.baseline_units, args.units)
    t = time.perf_counter()
    ref = reference_loop(P, top[:n], params)
    t_ref = (time.perf_counter() - t) * args.units / n
    ours_sub = soft_wpmi(P, top[:n], params)
    agree = torch.allclose(ref, ours_sub, atol=1e-3)

    print(f"SoftWPMI, one layer: {args.units} units x {args.images} probe images x "
          f"{args.concepts} concepts (top-{params.top_k}, {torch.get_num_threads()} threads)")
    print(f"  P = softmax(10 cos)     {t_prob:8.2f} s   ({P.numel() * 4 / 2**30:.2f} GiB)")
    print(f"  top-{params.top_k} images      {t_top:8.2f} s")
    print(f"  SoftWPMI (batched)      {t_wpmi:8.2f} s")
    print(f"  CLIP-Dissect loop       {t_ref:8.2f} s   (measured on {n} units, scaled)")
    print(f"  batched vs loop         {t_ref / t_wpmi:8.2f} x faster; same values: {agree}")
    print(f"  peak RSS                {peak / 2**20:8.2f} GiB (+{(peak - rss0) / 2**20:.2f} "
          "GiB over the inputs)")
    print(f"  result                  {tuple(scores.shape)}")

    from pipeline.label.concepts import common_words
    from pipeline.label.labelers import demo_labeler_dir, load_labeler

    words = common_words(args.concepts)
    if (demo_labeler_dir() / "open_clip_config.json").is_file():
        labeler = load_labeler("demo")
        t = time.perf_counter()
        labeler.encode_texts(words)
        print(f"text side, demo labeler: {len(words)} concepts in "
              f"{time.perf_counter() - t:.2f} s")
    if args.text_sample:
        import open_clip

        model = open_clip.create_model("ViT-B-16").eval()
        tok = open_clip.get_tokenizer("ViT-B-16")
        sample = words[:args.text_sample]
        t = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(sample), 256):
                model.encode_text(tok(sample[i:i + 256]), normalize=True)
        dt = time.perf_counter() - t
        print(f"text side, ViT-B-16 tower: {len(sample)} concepts in {dt:.2f} s -> "
              f"{dt * len(words) / len(sample):.1f} s for {len(words)} (once per labeler and "
              "concept set: cached)")


if __name__ == "__main__":
    main()
