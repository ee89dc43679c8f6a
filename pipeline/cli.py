"""``vit-atlas``: argument parsing only; every subcommand calls a stage."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipeline.config import PRESETS, AtlasConfig, demo_config
from pipeline.errors import AtlasError
from pipeline.stages import ALIASES
from pipeline.store import AtlasStore, read_json

S = argparse.SUPPRESS  # options the user did not give stay out of the namespace
SITE_URL_HELP = ("the absolute URL the site will be served at, e.g. https://org.github.io/atlas/ "
                 "(canonical links, absolute permalinks and BibTeX URLs, sitemaps); without "
                 "it the pages say that the atlas has no canonical address")

# One example per family and size, with the counts `vit-atlas models` prints.
EXAMPLE_MODELS = [
    "vit_base_patch16_224", "vit_base_patch32_224", "vit_large_patch16_224",
    "deit_base_patch16_224", "deit_base_distilled_patch16_224",
    "coat_lite_tiny", "coat_tiny", "convit_tiny", "convit_base", "pit_ti_224", "pit_b_224",
    "swin_tiny_patch4_window7_224", "twins_svt_small", "twins_pcpvt_small",
    "vit_base_patch16_clip_quickgelu_224.openai", "vit_base_patch32_clip_quickgelu_224.openai",
]


def _add_atlas_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("atlas")
    g.add_argument("--preset", choices=sorted(PRESETS), default=S,
                   help="start from a preset (default when --model is not given: demo)")
    g.add_argument("--model", default=S, help="timm model name, e.g. vit_base_patch16_224")
    g.add_argument("--weights", default=S,
                   help="hub (timm pretrained), random (seeded init) or PATH to a checkpoint")
    g.add_argument("--model-kwargs", nargs="*", default=S, metavar="KEY=VALUE",
                   help="passed to timm.create_model, e.g. img_size=64 patch_size=8")
    g.add_argument("--dataset", default=S, help="hf:<id>[:<config>] | imagefolder:<dir> | "
                   "webdataset:<dir> | synthetic:<n> (default hf:timm/imagenet-1k-wds)")
    g.add_argument("--split", default=S, help="dataset split (default validation)")
    g.add_argument("--out", default=S, help="atlas directory (default atlas-demo for the demo)")
    g.add_argument("--layers", default=S, help="FFN layers, e.g. '2,5' or '0:6' (default all)")
    g.add_argument("--channels", default=S, help="units per layer, e.g. '0:16' (default all)")
    g.add_argument("--kinds", default=S,
                   help="kinds of unit, comma-separated: ffn | query | key | value (default "
                   "ffn); a key/query/value channel is one output channel of the block's "
                   "attention projection, selected with --layers by its block's FFN layer")
    g.add_argument("--recipe", "--recipes", dest="recipe", default=S,
                   help="visualization recipe(s), comma-separated: default | paper | fast | "
                   "FILE.json (recipe fields); several show as tabs on each page")
    g.add_argument("--steps", type=int, default=S, help="optimization steps (overrides recipe)")
    g.add_argument("--judge", default=S,
                   help="model that measures each image's recognisability (2-AFC, "
                   "transferability): a labeler SPEC or cnn:demo | cnn:PATH, or grey:SPEC (that "
                   "judge shown every image in grey; default: the atlas's labeler; none: not "
                   "measured)")
    g.add_argument("--judge-trials", type=int, default=S,
                   help="2-AFC trials per unit (default 20)")
    g.add_argument("--diversity", type=int, default=S, metavar="N",
                   help="images per unit, optimized together with a diversity term (Olah et "
                   "al. 2017: the recipe's diversity_weight); default 1")
    g.add_argument("--topk", type=int, default=S, help="dataset examples kept per unit")
    g.add_argument("--masks", default=S, metavar="DIR|CSV",
                   help="object masks: a PNG per image at the image's relative path under DIR "
                   "(nonzero = object), or an ImageNet LOC box file (.csv: boxes per image "
                   "id), for each unit's foreground share and the masking experiment; "
                   "WebDataset tars may carry {key}.mask.png instead")
    g.add_argument("--seed", type=int, default=S, help="base seed (default 0)")
    g.add_argument("--batch-size", type=int, default=S,
                   help="features per visualization batch (default: sized to the device)")
    g.add_argument("--index-batch-size", type=int, default=S, help="images per index batch")
    g.add_argument("--workers", type=int, default=S, help="DataLoader decoding workers")
    g.add_argument("--max-images", type=int, default=S, help="stop indexing after N images")
    g.add_argument("--stats-images", type=int, default=S,
                   help="dataset images measured for the mean spectrum and colour statistics "
                   "the visualization recipes use (default 1024)")
    g.add_argument("--probe-images", type=int, default=S,
                   help="first N dataset images whose scores every unit keeps: the probe set "
                   "labels are computed over (default 10000)")
    g.add_argument("--labeler", default=S,
                   help="words for every unit (CLIP-Dissect): demo | self | DIR | "
                   "open_clip:<model>/<pretrained or checkpoint>, e.g. open_clip:ViT-B-16/openai "
                   "(default: none; the demo preset uses demo)")
    g.add_argument("--concepts", default=S, metavar="FILE",
                   help="concepts to label with, one per line (default: the 20,000 most common "
                   "English words of wordfreq plus the dataset's class names)")
    g.add_argument("--label-scale", type=float, default=S,
                   help="SoftWPMI softmax scale of image-concept cosines (default 10)")
    g.add_argument("--label-topk", type=int, default=S,
                   help="SoftWPMI: top probe images per unit (default 100)")
    g.add_argument("--label-lambda", type=float, default=S,
                   help="SoftWPMI: weight λ of the concept prior (default: the paper's 1; 0.25 "
                   "for the demo labeler, see the Method page)")
    g.add_argument("--quantiles", type=int, default=S,
                   help="intervals between each unit's mean and max score whose examples the "
                   "index keeps besides the top-k (default 8; 0: none)")
    g.add_argument("--quantile-k", type=int, default=S,
                   help="examples kept per quantile interval (default 4)")
    g.add_argument("--similar-k", type=int, default=S,
                   help="most correlated units kept per unit and layer (default 8)")
    g.add_argument("--layer-map", choices=["umap", "pca"], default=S,
                   help="how each layer's units are laid out in 2-D (default umap)")
    g.add_argument("--device", default=S, help="auto | cpu | cuda | cuda:N")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=S,
                   help="torch.compile each FFN block for visualization (default off: "
                   "measure with scripts/bench_fast_paths.py first)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=S,
                   help="channels-last convolutions (default off; helps conv-heavy families "
                   "on some GPUs: measure with scripts/bench_fast_paths.py)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vit-atlas",
        description="Visualize every FFN unit of a vision transformer, index its top dataset "
                    "examples and publish a static atlas.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in [
        ("build", "every stage: index, label (with --labeler), relations, visualize, site (no "
                  "options: the offline demo)"),
        ("visualize", "optimize an image for every selected FFN unit"),
        ("index", "stream a dataset and keep each unit's top-k examples and patch maps"),
        ("label", "words for every unit: CLIP-Dissect's SoftWPMI against a labeler's "
                  "image-concept similarities over the probe images"),
        ("relations", "similar units (correlation over the probe images) within and across "
                   "layers, a 2-D map and the typical units of every layer"),
    ]:
        aliases = [a for a, stage in ALIASES.items() if stage == name]
        p = sub.add_parser(name, aliases=aliases, help=text, description=text)
        _add_atlas_options(p)
        if name == "build":
            p.add_argument("--site-url", default=S, help=SITE_URL_HELP)
    p = sub.add_parser("site", help="rebuild DIR/site from what DIR holds",
                       description="Rebuild DIR/site from what DIR holds.")
    p.add_argument("--out", default="atlas-demo", help="atlas directory")
    p.add_argument("--site-url", default=None, help=SITE_URL_HELP + "; default: the one the "
                   "atlas was built with, '' for none")
    p = sub.add_parser("evaluate", help="how far to trust an atlas's visualizations",
                       description="Per recipe: objective against the paper recipe, units "
                       "beating their best dataset example, z-selectivity, TV/px and spectral "
                       "distance against the dataset, and recognisability (2-AFC, "
                       "transferability) by a judge beside the best examples' and noise's; "
                       "writes DIR/evaluate/report.json and contact_sheet.png (the Method page "
                       "defines each figure).")
    p.add_argument("--out", default="atlas-demo", help="atlas directory")
    p.add_argument("--reference", default="paper",
                   help="recipe the objective is relative to (default paper)")
    p.add_argument("--judge", default=None,
                   help="judge SPEC (a labeler SPEC or cnn:demo | cnn:PATH, or grey:SPEC: that "
                   "judge shown every image in grey; default: the "
                   "atlas's judge, else its labeler; none: no recognisability)")
    p.add_argument("--judge-trials", type=int, default=None, help="2-AFC trials per unit")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p = sub.add_parser("serve", help="serve a built atlas on localhost",
                       description="Serve DIR/site on localhost and print the URL.")
    p.add_argument("--out", default="atlas-demo", help="atlas directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p = sub.add_parser(
        "publish", help="publish atlases as one version of a versioned site",
        description="Build one site of every ATLAS_DIR as version V of SITE (mike's layout: "
                    "SITE/versions.json, SITE/<V>/, aliases such as SITE/latest). Earlier "
                    "versions' files are left byte-identical; republishing V needs --force.")
    p.add_argument("atlas_dirs", nargs="+", metavar="ATLAS_DIR", help="atlas directories")
    p.add_argument("--site", required=True, help="the publishing root (holds versions.json)")
    p.add_argument("--version", required=True, dest="site_version", metavar="V",
                   help="the version to publish, e.g. 1.0")
    p.add_argument("--alias", action="append", default=[], metavar="NAME",
                   help="an alias that moves to this version, e.g. latest (repeatable)")
    p.add_argument("--alias-type", default="symlink", metavar="TYPE",
                   help="how aliases are written (mike's choices): symlink (default; a "
                   "relative symlink to V), copy (a full copy of V, for hosts without "
                   "symlinks), redirect (a redirect page per HTML page of V; no data files)")
    p.add_argument("--title", help="the version's title in the selector (default: V)")
    p.add_argument("--site-url", help="the publishing root's absolute URL, e.g. "
                   "https://org.github.io/atlas/ (absolute permalinks, sitemaps)")
    p.add_argument("--force", action="store_true", help="replace an already published V")
    p.add_argument("--no-relate", action="store_true",
                   help="do not link similar units across atlases sharing a probe set")
    p = sub.add_parser("models", help="list supported models with layer and unit counts",
                       description="List supported families and models.")
    p.add_argument("name", nargs="?", help="describe this model's FFN layers in detail")
    p.add_argument("--model-kwargs", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--all", action="store_true", help="every timm name in a supported family")
    return parser


def resolve_config(args: dict[str, Any]) -> AtlasConfig:
    """Preset or saved config (``--out`` holding an atlas) first, then the options given."""
    from pipeline.models import parse_model_kwargs

    given = {k: v for k, v in args.items() if k != "command"}
    preset = given.pop("preset", None)
    if "model_kwargs" in given:
        given["model_kwargs"] = parse_model_kwargs(given["model_kwargs"])
    if preset is not None:
        config = PRESETS[preset]()
    elif "model" in given:
        config = AtlasConfig().replace(model=given["model"],
                                       out=f"atlas-{given['model'].replace('/', '_')}")
    else:
        out = Path(given.get("out", "atlas-demo"))
        saved = AtlasStore(out)
        if saved.exists():  # continue the atlas that --out holds with its own settings
            config = AtlasConfig.from_dict(read_json(saved.manifest_path)["config"])
        else:
            config = demo_config()
    return config.replace(**given)


def _models(name: str | None, kwargs: list[str], show_all: bool) -> None:
    import timm

    from pipeline.models import parse_model_kwargs, supported_families
    from pipeline.models.registry import family_of

    families = supported_families()
    if show_all:
        for family in families.values():
            names = sorted({n for p in family.patterns for n in timm.list_models(p)})
            names = [n for n in names if family_of(n) is family]
            print(f"{family.name} ({len(names)}): {' '.join(names)}")
        return
    from pipeline.models.load import meta_spec as spec  # shapes only: no weights, no download

    if name:
        s = spec(name, parse_model_kwargs(kwargs))
        print(f"{s.name}  family={s.family}  input={s.input_size}  "
              f"layers={len(s.layers)}  units={s.total_units}")
        print(f"{'layer':>5}  {'stage':>5}  {'prefix':>6}  {'grid':>7}  {'units':>5}  module")
        for layer in s.layers:
            call = f"  (call {layer.call})" if layer.call else ""
            print(f"{layer.index:>5}  {layer.stage:>5}  {layer.prefix_tokens:>6}  "
                  f"{layer.grid[0]:>3}x{layer.grid[1]:<3}  {layer.units:>5}  {layer.module}{call}")
        return
    print(f"{'model':<46} {'family':<9} {'layers':>6} {'units':>7}  notes")
    for n in EXAMPLE_MODELS:
        s = spec(n, {})
        print(f"{n:<46} {s.family:<9} {len(s.layers):>6} {s.total_units:>7}  "
              f"{families[s.family].notes}")
    print("\nAny timm name of these families works (`vit-atlas models --all`); "
          "`vit-atlas models NAME` shows a model's layers.")


def _evaluate(out: str, reference: str, device: str, judge: str | None = None,
              trials: int | None = None) -> None:
    from pipeline.runtime import prepare
    from pipeline.visualize.evaluate import evaluate_atlas, write_report

    store = AtlasStore(out)
    if not store.exists():
        raise AtlasError(f"no atlas in {out}: build one first (`vit-atlas build --out {out}`)")
    config = AtlasConfig.from_dict(store.manifest()["config"]).replace(device=device)
    run = prepare(config)
    if not store.vis_recipes():
        raise AtlasError(f"{out} has no visualizations: run `vit-atlas visualize --out {out}`")
    vis = config.visualize
    spec = judge if judge is not None else vis.judge_spec(config.label.labeler)
    from pipeline.judge import load_judge

    judged = None if spec in (None, "none") else load_judge(spec, config.model.name, run.device)
    evaluation = evaluate_atlas(store, run.model, run.spec, run.device, reference=reference,
                                judge=judged, trials=trials or vis.judge_trials)
    print(evaluation.table())
    print(f"\nreport and contact sheet in {write_report(store, evaluation)}")


def run_command(args: argparse.Namespace) -> None:
    command = args.command
    if command == "models":
        _models(args.name, args.model_kwargs, args.all)
        return
    if command in ("site", "serve"):
        from pipeline import site as site_stage

        store = AtlasStore(args.out)
        if command == "site":
            site = site_stage.build_site(store, site_url=args.site_url)
            print(f"site built in {site}")
        else:
            site = store.root / "site"
            if not (site / "index.html").is_file():
                raise AtlasError(f"no built site in {site}: run `vit-atlas build` or "
                                 f"`vit-atlas site --out {args.out}` first")
            site_stage.serve(site, args.host, args.port)
        return

    if command == "evaluate":
        _evaluate(args.out, args.reference, args.device, args.judge, args.judge_trials)
        return
    if command == "publish":
        from pipeline.publish import publish

        out = publish(args.atlas_dirs, args.site, args.site_version, aliases=args.alias,
                      title=args.title, force=args.force, site_url=args.site_url,
                      relate=not args.no_relate, alias_type=args.alias_type)
        print(f"published version {args.site_version} in {out}")
        return

    from pipeline.stages import run_stages, stages_for

    config = resolve_config(vars(args))
    site = run_stages(config, stages_for(command, config))
    if site is not None:
        out = config.runtime.out
        print(f"\nAtlas built in {out}. Browse it with:\n"
              f"  vit-atlas serve --out {out}\n"
              f"or open {site / 'index.html'} in a browser.")


def flag_for(option: str | None) -> str | None:
    """The command-line flag of a configuration option (library errors name options).

    >>> flag_for("index_batch_size"), flag_for("checkpoint_every")
    ('--index-batch-size', None)
    """
    if option is None:
        return None
    flag = "--" + option.replace("_", "-")
    probe = argparse.ArgumentParser(add_help=False)
    _add_atlas_options(probe)
    return flag if flag in probe._option_string_actions else None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_command(args)
    except AtlasError as exc:
        flag = flag_for(exc.option)
        hint = f" [{flag}]" if flag else ""
        print(f"vit-atlas: error: {exc}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nvit-atlas: interrupted; rerun the same command to resume where it stopped",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
