"""The pipeline's stages in order, and running a selection of them on one configuration.

``index → label → relations → visualize → site``, each named after its room under
``pipeline/`` (``relate`` is an alias of ``relations``): label and relations read the index's
probe set, visualize reads its statistics, the site reads everything. ``build`` runs them all
(``label`` only when a labeler is set); the CLI's one-stage commands run one. The CLI and
``pipeline.build`` both go through ``run_stages``, which checks the whole configuration
before anything is loaded or written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.config import AtlasConfig
from pipeline.errors import AtlasError
from pipeline.store import AtlasStore

STAGES = ("index", "label", "relations", "visualize", "site")
ALIASES = {"relate": "relations"}  # former names, still accepted


def stages_for(command: str, config: AtlasConfig) -> list[str]:
    """The stages ``command`` runs on ``config``.

    >>> from pipeline.config import demo_config
    >>> stages_for("build", demo_config(labeler=None))
    ['index', 'relations', 'visualize', 'site']
    >>> stages_for("relate", demo_config())
    ['relations']
    """
    if command == "build":
        return [s for s in STAGES if s != "label" or config.label.labeler]
    command = ALIASES.get(command, command)
    if command not in STAGES:
        raise AtlasError(f"unknown stage {command!r} (stages: {', '.join(STAGES)})")
    return [command]


def run_stages(config: AtlasConfig, stages: Sequence[str]) -> Path | None:
    """Run ``stages`` (in pipeline order) on ``config``; returns the built site, if any."""
    from pipeline import distributed
    from pipeline.checks import check_config
    from pipeline.runtime import prepare

    stages = [s for s in STAGES if s in stages]
    labeler_spec = config.label.labeler
    if "label" in stages and not labeler_spec:
        raise AtlasError("labelling needs a labeler: demo | self | DIR | "
                         "open_clip:<model>/<pretrained>", option="labeler")
    indexing = "index" in stages
    # seconds, before any load; the label options once (check_config checks them)
    check_config(config, dataset=indexing or "label" in stages,
                 recipes="visualize" in stages,
                 store=None if indexing else AtlasStore(config.runtime.out))
    rides = "label" in stages or (indexing and bool(labeler_spec))
    run = prepare(config)
    labeler = None
    if rides:  # its image side rides along the index pass
        from pipeline.label.labelers import load_labeler

        labeler = load_labeler(labeler_spec, run.device, config.model.name)
    if "index" in stages:
        from pipeline.index.stage import run_index
        from pipeline.label.stage import probe_encoder

        run_index(run, probe_encoder=None if labeler is None else probe_encoder(labeler))
    if "label" in stages:
        from pipeline.label.stage import run_label

        run_label(run, labeler)
    if "relations" in stages:
        from pipeline.relations.stage import run_relations

        run_relations(run)
    if "visualize" in stages:
        from pipeline.visualize.stage import run_visualize

        run_visualize(run)
    if "site" in stages and distributed.is_main():
        from pipeline import site as site_stage

        return site_stage.build_site(run.store)
    return None
