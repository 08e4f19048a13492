"""Plotting functions (matplotlib) for cross-species analyses and scICE."""

from typing import TYPE_CHECKING

from xspecies._lazy import attach

if TYPE_CHECKING:
    from ._embedding import embedding_2d
    from ._heatmaps import celltype_similarity, confusion_matrix
    from ._history import history
    from ._lfc import homologous_lfc, lfc_comparison
    from ._palette import palette
    from ._pathway import pathway_lfc
    from ._scice import scice
    from ._similar_cells import similar_cells
    from ._transfer import reliability, transfer_accuracy
    from ._utils import finalize

# names load on first use: matplotlib is imported only when a plotting function is first reached
__getattr__, __dir__ = attach(__name__, __file__)

__all__ = [
    "celltype_similarity",
    "confusion_matrix",
    "embedding_2d",
    "finalize",
    "history",
    "homologous_lfc",
    "lfc_comparison",
    "palette",
    "pathway_lfc",
    "reliability",
    "scice",
    "similar_cells",
    "transfer_accuracy",
]
