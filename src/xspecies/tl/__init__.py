"""Tools: label transfer, cross-species analyses and scICE clustering consistency."""

from ._celltype_similarity import celltype_similarity, histogram_mode
from ._evaluate import TransferReport, evaluate_transfer
from ._lfc import data_lfc, filter_outliers, homologous_lfc
from ._pathway import pathway_lfc
from ._scice import scice, scice_labels
from ._similar_cells import similar_cells
from ._transfer import transfer_labels

__all__ = [
    "TransferReport",
    "celltype_similarity",
    "data_lfc",
    "evaluate_transfer",
    "filter_outliers",
    "histogram_mode",
    "homologous_lfc",
    "pathway_lfc",
    "scice",
    "scice_labels",
    "similar_cells",
    "transfer_labels",
]
