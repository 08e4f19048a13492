"""Preprocessing: orthologs, data preparation and the data-level homology neighbour search."""

from ._homology import homology_neighbors, shared_genes
from ._orthologs import ortholog_table, translate_genes
from ._prepare import prepare

__all__ = ["homology_neighbors", "ortholog_table", "prepare", "shared_genes", "translate_genes"]
