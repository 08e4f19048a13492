"""scICE clustering consistency (Kim et al., Nat Commun 16, 6031, 2025).

The engine in modules by concern: :mod:`._core` (the inconsistency coefficient and its bootstrap),
:mod:`._leiden` (batched igraph Leiden runs, serial or through joblib), :mod:`._search` (resolution
intervals per cluster count and their refinement), :mod:`._graph` (the neighbour graph of an AnnData)
and :mod:`._api` (the public :func:`scice` and :func:`scice_labels`).
"""

from ._api import scice, scice_labels

__all__ = ["scice", "scice_labels"]
