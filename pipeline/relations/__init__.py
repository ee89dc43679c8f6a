"""Relations between units: similar units (Pearson correlation of probe profiles, exact FAISS
search) within a layer, across layers and across atlases, and a 2-D map of each layer."""

from pipeline.relations.similar import LayerProfiles, search, similar_groups, standardize
from pipeline.relations.stage import relate, relate_atlases, run_relations, similar_across

__all__ = ["LayerProfiles", "relate", "relate_atlases", "run_relations", "search",
           "similar_across", "similar_groups", "standardize"]
