"""Preprocessing: orthologs, data preparation and the data-level homology neighbour search."""

from typing import TYPE_CHECKING

from xspecies._lazy import attach

if TYPE_CHECKING:
    from ._homology import homology_neighbors, shared_genes
    from ._latent_neighbors import latent_neighbors
    from ._orthologs import ortholog_table, translate_genes
    from ._prepare import prepare

# names load on first use: prepare imports scanpy only when it is first reached
__getattr__, __dir__ = attach(__name__, __file__)

__all__ = [
    "homology_neighbors",
    "latent_neighbors",
    "ortholog_table",
    "prepare",
    "shared_genes",
    "translate_genes",
]
