"""Datasets: the embedded pancreas demo and real downloads (GEO, Zenodo) through pooch."""

from ._pancreas import pancreas, read_gse84133

__all__ = ["pancreas", "read_gse84133"]
