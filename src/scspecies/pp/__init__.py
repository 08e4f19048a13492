"""Preprocessing: orthologs, data preparation and the data-level homology neighbour search."""
