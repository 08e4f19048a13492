"""Datasets: the embedded pancreas demo (and tiny models trained on it), real downloads (GEO, Zenodo) through pooch."""

from ._fetch import cache_dir
from ._liver import liver, liver_url
from ._models import pancreas_models
from ._pancreas import pancreas, read_gse84133

__all__ = ["cache_dir", "liver", "liver_url", "pancreas", "pancreas_models", "read_gse84133"]
