"""The judge room: how recognisable a unit's image is to an independent model (2-AFC,
transferability). It measures images; no recipe uses it."""

from pipeline.judge.afc import DEFAULT_TRIALS, afc_pairs, afc_right, dominant_class
from pipeline.judge.judge import Judge, check_judge, load_judge
from pipeline.judge.measure import ExampleEmbeddings, measure_layer

__all__ = ["DEFAULT_TRIALS", "ExampleEmbeddings", "Judge", "afc_pairs", "afc_right",
           "check_judge", "dominant_class", "load_judge", "measure_layer"]
