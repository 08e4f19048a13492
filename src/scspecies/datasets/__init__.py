"""Datasets: the embedded pancreas demo and real downloads (GEO, Zenodo) through pooch."""
