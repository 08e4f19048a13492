"""The neighbour graph scICE clusters: chosen as :func:`scanpy.tl.leiden` chooses it, then checked."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from anndata import AnnData


def graph_key(adata: AnnData, *, neighbors_key: str | None = None, obsp: str | None = None) -> str:
    """Key in ``adata.obsp`` of the graph to cluster, chosen as :func:`scanpy.tl.leiden` does.

    Parameters
    ----------
    adata
        Annotated data matrix.
    neighbors_key
        Key in ``adata.uns`` of a :func:`scanpy.pp.neighbors` result whose ``"connectivities_key"``
        names the graph.
    obsp
        Key of the graph in ``adata.obsp`` (instead of ``neighbors_key``).

    Returns
    -------
    str
        ``obsp``; else ``adata.uns[neighbors_key]["connectivities_key"]``; else, without either,
        ``adata.uns["neighbors"]["connectivities_key"]`` or ``"connectivities"``.

    Raises
    ------
    ValueError
        When both ``neighbors_key`` and ``obsp`` are given.
    KeyError
        When ``neighbors_key`` is not in ``adata.uns`` or names no ``"connectivities_key"``.

    Examples
    --------
    >>> import anndata as ad
    >>> a = ad.AnnData(np.zeros((2, 1)), uns={"pca_nn": {"connectivities_key": "pca_nn_connectivities"}})
    >>> graph_key(a), graph_key(a, neighbors_key="pca_nn"), graph_key(a, obsp="distances")
    ('connectivities', 'pca_nn_connectivities', 'distances')
    """
    if obsp is not None and neighbors_key is not None:
        raise ValueError(f"give either neighbors_key ({neighbors_key!r}) or obsp ({obsp!r}), not both")
    if obsp is not None:
        return obsp
    if neighbors_key is None:
        return adata.uns.get("neighbors", {}).get("connectivities_key", "connectivities")
    if neighbors_key not in adata.uns:
        raise KeyError(
            f"neighbors_key {neighbors_key!r} not found in adata.uns; run scanpy.pp.neighbors("
            f"adata, key_added={neighbors_key!r}) first, or pass obsp="
        )
    settings = adata.uns[neighbors_key]
    if not hasattr(settings, "get") or "connectivities_key" not in settings:
        raise KeyError(
            f"adata.uns[{neighbors_key!r}] names no 'connectivities_key': it is not a scanpy.pp.neighbors "
            "result; pass the graph's key as obsp="
        )
    return str(settings["connectivities_key"])


def scice_graph(adata: AnnData, key: str) -> sp.csr_matrix:
    """Validated symmetric, non-negative weighted graph from ``adata.obsp[key]``, with edges between cells.

    Parameters
    ----------
    adata
        Annotated data matrix.
    key
        Key of the graph in ``adata.obsp`` (see :func:`graph_key`).

    Returns
    -------
    scipy.sparse.csr_matrix
        The graph as ``float64`` CSR.

    Raises
    ------
    KeyError
        When ``key`` is not in ``adata.obsp``.
    ValueError
        When the graph is not square, symmetric and non-negative, or has no edges between cells.

    Examples
    --------
    >>> import anndata as ad
    >>> a = ad.AnnData(np.zeros((2, 1)), obsp={"connectivities": sp.csr_matrix(np.ones((2, 2)))})
    >>> scice_graph(a, "connectivities").shape
    (2, 2)
    """
    if key not in adata.obsp:
        raise KeyError(
            f"graph {key!r} not found in adata.obsp (available: {list(adata.obsp.keys())}); compute one "
            "with scanpy.pp.neighbors or name it with neighbors_key= or obsp="
        )
    name = f"adata.obsp[{key!r}]"
    graph = check_graph(adata.obsp[key], name=name)
    if np.count_nonzero(graph.data) == np.count_nonzero(graph.diagonal()):
        raise ValueError(
            f"{name} has no edges between cells: scICE clusters a neighbour graph; compute one first "
            "(e.g. scanpy.pp.neighbors) or name it with neighbors_key= or obsp="
        )
    return graph


def check_graph(matrix, name: str = "graph") -> sp.csr_matrix:
    """Check that a matrix is a square, symmetric, non-negative adjacency matrix.

    Parameters
    ----------
    matrix
        Dense or sparse matrix.
    name
        How to call it in error messages.

    Returns
    -------
    scipy.sparse.csr_matrix
        The graph as ``float64`` CSR.

    Examples
    --------
    >>> check_graph(np.array([[0, 1], [1, 0]])).nnz
    2
    """
    graph = sp.csr_matrix(matrix, dtype=np.float64)
    if graph.ndim != 2 or graph.shape[0] != graph.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {graph.shape}")
    if graph.nnz and graph.data.min() < 0:
        raise ValueError(f"{name} has negative edge weights (min {graph.data.min():g})")
    if graph.nnz and not np.all(np.isfinite(graph.data)):
        raise ValueError(f"{name} has non-finite edge weights")
    asym = abs(graph - graph.T)
    if asym.nnz and asym.max() > 1e-6 * max(graph.data.max(), 1e-300):
        raise ValueError(
            f"{name} is not symmetric (max |A - A.T| = {asym.max():g}); scICE needs an undirected graph"
        )
    return graph
