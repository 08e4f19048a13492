"""Data-level neighbour search from target to context cells on shared homologous genes."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse
from tqdm.auto import tqdm

from xspecies._docs import doc_params, doc_progress_bar
from xspecies._results import store_result
from xspecies._validation import (
    CONTEXT_FINGERPRINT_KEY,
    check_counts,
    check_int,
    check_mapping_rate,
    check_not_view,
    check_obs_key,
    check_positive_int,
    check_unique_var_names,
    context_fingerprint,
    gene_mapping_hints,
    get_matrix,
)
from xspecies._vote import check_weighting, weighted_vote

__all__ = ["homology_neighbors", "shared_genes"]

METRICS = ("cosine", "euclidean")
METHODS = ("auto", "exact", "pynndescent")
#: ``method="auto"`` uses the exact search while n_target * n_context * n_genes stays below this
EXACT_MAX_WORK = 5e11
#: the exact search keeps the dense context between target blocks up to this size
DENSE_CONTEXT_BYTES = 2**29
#: cells used to fit the truncated SVD of the approximate search
SVD_FIT_CELLS = 20_000
#: cells log1p-transformed and projected at once by the approximate search (bounds its working memory)
BLOCK_CELLS = 50_000


def shared_genes(
    target: AnnData, context: AnnData, *, ortholog_key: str = "ortholog"
) -> tuple[np.ndarray, np.ndarray]:
    """Column indices of the homologous genes shared by ``target`` and ``context``.

    Parameters
    ----------
    target
        Data with ``var[ortholog_key]`` (see :func:`xspecies.pp.translate_genes`).
    context
        Data whose ``var_names`` are symbols of the other species.
    ortholog_key
        Column of ``target.var`` with the context-species symbol of each gene.

    Returns
    -------
    ``(target_idx, context_idx)``: matching column indices, in target order. A context gene claimed by
    several target genes is used once (first target gene); entries holding several symbols
    (``policy="all"``) are skipped.

    Raises
    ------
    ValueError
        When no gene, or fewer than 5 % of the possible ones (``min(mapped target genes, context genes)``),
        is shared, naming the likely cause (Ensembl IDs, case, both datasets of one species); below 25 %
        a UserWarning says the same.

    Examples
    --------
    >>> import xspecies as xs
    >>> mouse, human = xs.datasets.pancreas("mouse"), xs.datasets.pancreas("human")
    >>> xs.pp.translate_genes(human, "human", "mouse")
    >>> t_idx, c_idx = xs.pp.shared_genes(human, mouse)
    >>> bool((human.var["ortholog"].iloc[t_idx].to_numpy() == mouse.var_names[c_idx]).all())
    True
    """
    if ortholog_key not in target.var.columns:
        raise KeyError(
            f"{ortholog_key!r} not found in target.var: run xspecies.pp.translate_genes(target, ...) first."
        )
    check_unique_var_names(context, "context")
    symbols = target.var[ortholog_key]
    valid = symbols.notna().to_numpy() & ~symbols.astype(str).str.contains("|", regex=False).to_numpy()
    c_idx = np.full(target.n_vars, -1)
    c_idx[valid] = context.var_names.get_indexer(symbols[valid].astype(str))
    keep = c_idx >= 0
    keep &= ~pd.Series(np.where(keep, c_idx, -1 - np.arange(target.n_vars))).duplicated().to_numpy()

    def hints() -> list[str]:
        causes = gene_mapping_hints(symbols[valid].astype(str), context.var_names)
        n_same = int(target.var_names.isin(context.var_names).sum())
        if n_same > keep.sum():
            causes.insert(
                0,
                f"{n_same} of {target.n_vars} target gene names are context gene names already "
                "(both datasets of one species?)",
            )
        return causes

    n_possible = min(int(valid.sum()), context.n_vars)
    if not keep.any():
        raise ValueError(
            f"target and context share no homologous genes: none of the {int(valid.sum())} symbols in "
            f"target.var[{ortholog_key!r}] is in context.var_names. Likely cause: "
            + ("; ".join(hints()) or "wrong species order in translate_genes, or different gene identifiers")
            + "."
        )
    check_mapping_rate(int(keep.sum()), n_possible, "homologous genes shared by target and context", hints)
    t_idx = np.flatnonzero(keep)
    return t_idx, c_idx[t_idx]


def _row_squares(X: sparse.csr_matrix) -> np.ndarray:
    """Squared euclidean norm of every row."""
    squares = sparse.csr_matrix((X.data.astype(np.float64) ** 2, X.indices, X.indptr), shape=X.shape)
    return np.asarray(squares.sum(axis=1)).ravel()


def _log1p_rows(X, cols: np.ndarray, metric: str) -> sparse.csr_matrix:
    """log1p of the selected columns as float32 CSR; rows scaled to unit length for cosine."""
    X = sparse.csr_matrix(X)[:, cols].astype(np.float32)  # one new matrix, modified in place below
    np.log1p(X.data, out=X.data)
    if metric == "cosine":
        norms = np.sqrt(_row_squares(X))
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        X.data *= np.repeat(scale, np.diff(X.indptr)).astype(np.float32)
    return X


def _exact(T, C, k: int, metric: str, batch_size: int, progress_bar: bool):
    """Brute-force k nearest context rows for every target row, chunked dense products.

    Blocks of ``batch_size`` target rows and ``4 * batch_size`` context rows are densified at a time;
    the dense context blocks are kept between target blocks while they fit in ``DENSE_CONTEXT_BYTES``.
    """
    n_t, n_c = T.shape[0], C.shape[0]
    # genes with no count on one side add nothing to the inner products
    used = np.flatnonzero((T.getnnz(axis=0) > 0) & (C.getnnz(axis=0) > 0))
    T, C = T[:, used], C[:, used]
    if metric == "euclidean":
        t_sq, c_sq = _row_squares(T), _row_squares(C)
    step = 4 * batch_size
    starts = range(0, n_c, step)
    keep_dense = n_c * len(used) * 4 <= DENSE_CONTEXT_BYTES
    dense = [C[s : s + step].toarray().T for s in starts] if keep_dense else None
    idx = np.empty((n_t, k), dtype=np.int64)
    dist = np.empty((n_t, k), dtype=np.float32)
    for start in tqdm(range(0, n_t, batch_size), disable=not progress_bar, desc="homology neighbours"):
        stop = min(start + batch_size, n_t)
        block = T[start:stop].toarray()
        d = np.empty((stop - start, n_c), dtype=np.float32)
        for i, c0 in enumerate(starts):
            ctx = dense[i] if keep_dense else C[c0 : c0 + step].toarray().T
            np.matmul(block, ctx, out=d[:, c0 : c0 + ctx.shape[1]])
        if metric == "cosine":
            np.subtract(1.0, d, out=d)
        else:
            d = np.sqrt(np.maximum(t_sq[start:stop, None] + c_sq[None, :] - 2.0 * d, 0.0))
        top = np.argpartition(d, k - 1, axis=1)[:, :k] if k < n_c else np.tile(np.arange(n_c), (len(d), 1))
        d_top = np.take_along_axis(d, top, axis=1)
        order = np.argsort(d_top, axis=1, kind="stable")
        idx[start:stop] = np.take_along_axis(top, order, axis=1)
        dist[start:stop] = np.take_along_axis(d_top, order, axis=1)
    return idx, dist


def _reduced(X, cols: np.ndarray, rows: np.ndarray, metric: str, svd) -> np.ndarray:
    """``svd`` projection of the log1p rows ``rows`` of ``X`` (float32), ``BLOCK_CELLS`` rows at a time."""
    out = np.empty((len(rows), svd.n_components), dtype=np.float32)
    for start in range(0, len(rows), BLOCK_CELLS):
        block = rows[start : start + BLOCK_CELLS]
        out[start : start + len(block)] = svd.transform(_log1p_rows(X[block], cols, metric))
    return out


def _approximate(
    Xt,
    Xc,
    cols: tuple[np.ndarray, np.ndarray],
    searched: np.ndarray,
    k: int,
    metric: str,
    n_components: int,
    random_state: int,
    progress_bar: bool,
):
    """Approximate k nearest context rows: joint truncated SVD, then a pynndescent index on the context.

    The SVD is fitted on at most ``SVD_FIT_CELLS`` cells drawn from both sides (target cells and the
    ``searched`` context cells); the count matrices ``Xt`` and ``Xc`` are log1p-transformed and
    projected ``BLOCK_CELLS`` rows at a time, so no transformed copy of them is held. Distances are
    those of the reduced space (cosine or euclidean); the indices are positions in ``searched``.
    """
    import pynndescent
    from sklearn.decomposition import TruncatedSVD

    rng = np.random.default_rng(random_state)
    n_t, n_c = Xt.shape[0], len(searched)
    n_fit = min(n_t + n_c, SVD_FIT_CELLS)
    n_fit_t = round(n_fit * n_t / (n_t + n_c))
    rows = (np.arange(n_t), searched)
    sample = [
        _log1p_rows(X[r[np.sort(rng.choice(len(r), size=min(n, len(r)), replace=False))]], c, metric)
        for X, r, c, n in zip((Xt, Xc), rows, cols, (n_fit_t, n_fit - n_fit_t), strict=True)
    ]
    n_components = max(2, min(n_components, len(cols[0]) - 1))
    svd = TruncatedSVD(n_components, n_iter=3, random_state=random_state).fit(sparse.vstack(sample).tocsr())
    Zt, Zc = (_reduced(X, c, r, metric, svd) for X, c, r in zip((Xt, Xc), cols, rows, strict=True))
    index = pynndescent.NNDescent(
        Zc, metric=metric, n_neighbors=30, random_state=random_state, low_memory=True, verbose=progress_bar
    )
    idx, dist = index.query(Zt, k=k, epsilon=0.1)
    return idx, dist


def _counts_on(X, cols: np.ndarray) -> np.ndarray:
    """Total counts of every row of ``X`` on the columns ``cols`` (a sparse product: no copy of ``X``)."""
    mask = np.zeros(X.shape[1], dtype=np.float64)
    mask[cols] = 1.0
    return np.asarray(X @ mask).ravel()


def _cells_with_counts(Xt, Xc, cols, target: AnnData, context: AnnData, n_neighbors: int) -> np.ndarray:
    """Context rows with counts on the shared genes; raise on target cells without any.

    A cell without counts on the shared genes has no direction (cosine) and no place among its
    neighbours: a target cell would get arbitrary neighbours, a context cell is never a neighbour.
    """
    empty = _counts_on(Xt, cols[0]) <= 0
    if empty.any():
        raise ValueError(
            f"{int(empty.sum())} target cells have no counts on the {len(cols[0])} shared genes, e.g. "
            f"{target.obs_names[int(np.flatnonzero(empty)[0])]!r}: their neighbours would be arbitrary. "
            "Remove them first (e.g. keep the cells with counts on the genes in "
            "target.var[ortholog_key])."
        )
    searched = np.flatnonzero(_counts_on(Xc, cols[1]) > 0)
    if len(searched) < n_neighbors:
        raise ValueError(
            f"only {len(searched)} of the {context.n_obs} context cells have counts on the {len(cols[1])} "
            f"shared genes, fewer than n_neighbors={n_neighbors}"
            + (" (the context holds no counts on them at all)." if not len(searched) else ".")
        )
    return searched


def _genes_with_counts(Xt, Xc, cols: tuple[np.ndarray, np.ndarray]) -> int:
    """Shared genes with a stored entry on both sides (the others add nothing to the exact search)."""
    stored = [
        np.bincount(sparse.csr_matrix(X).indices, minlength=X.shape[1])[c] > 0
        for X, c in zip((Xt, Xc), cols, strict=True)
    ]
    return int((stored[0] & stored[1]).sum())


def _top_percent(
    agreement: np.ndarray, similarity: np.ndarray, groups: np.ndarray | None = None
) -> np.ndarray:
    """Share (%) of the cells ranked before each cell by agreement (ties: higher similarity first), in [0, 100).

    With ``groups`` (the voted labels), cells are ranked within their group, so that every voted cell type
    contributes its most trusted cells, not only the large, easy ones (and the first cell of every group
    has 0).
    """
    groups = np.zeros(len(agreement), dtype=np.int64) if groups is None else groups
    order = np.lexsort((-similarity, -agreement, groups))
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    rank = np.arange(len(order)) - np.repeat(starts, sizes)
    top = np.empty(len(agreement), dtype=np.float64)
    top[order] = 100.0 * rank / np.repeat(sizes, sizes)
    return top


@doc_params(progress_bar=doc_progress_bar)
def homology_neighbors(
    target: AnnData,
    context: AnnData,
    *,
    labels_key: str | None = None,
    n_neighbors: int = 250,
    n_vote: int = 25,
    weighting: Literal["rank", "uniform"] = "rank",
    metric: Literal["cosine", "euclidean"] = "cosine",
    method: Literal["auto", "exact", "pynndescent"] = "auto",
    ortholog_key: str = "ortholog",
    layer: str | None = None,
    key_added: str = "homology",
    batch_size: int = 1024,
    n_components: int = 50,
    random_state: int = 0,
    progress_bar: bool = False,
    copy: bool = False,
) -> AnnData | None:
    """Find each target cell's nearest context cells on the log1p counts of shared homologous genes.

    The data-level search of scSpecies: the counts of the homologous genes (``target.var[ortholog_key]``
    matched to ``context.var_names``) are log1p-transformed and compared across species; the labels of the
    closest context cells give a first label transfer and an agreement score that tells which target
    cells are trusted for alignment. Matrices stay sparse; the exact search densifies one block of cells
    at a time, and the approximate one transforms and projects 50,000 cells at a time, so its memory
    is the counts plus the reduced space and the result (measured up to 1M + 1M cells:
    :doc:`/large_datasets`).

    Parameters
    ----------
    target
        Target data (raw counts) with ``var[ortholog_key]`` from :func:`xspecies.pp.translate_genes`.
    context
        Context data (raw counts) of the other species.
    labels_key
        Column of ``context.obs`` with labels to vote on (optional).
    n_neighbors
        Number of context neighbours per target cell.
    n_vote
        The first ``n_vote`` neighbours vote on the label and define the agreement.
    weighting
        ``"rank"`` (default): the neighbour at rank ``r`` (0 = closest) votes ``1 / (r + 1)``, so a rare
        type whose few context cells are the closest still wins (the Baron mouse data has only 6
        Schwann and 7 T cells, too few to outvote 25 neighbours);
        ``"uniform"``: plain majority of the ``n_vote`` neighbours (scSpecies).
    metric
        ``"cosine"`` or ``"euclidean"``.
    method
        ``"exact"``: brute force on the genes (chunked dense products of blocks of cells, BLAS);
        ``"pynndescent"``: approximate search for large data: the unit-scaled log1p counts of both species
        are projected on a joint truncated SVD (``n_components``, fitted on up to 20,000 cells) and a
        pynndescent index of the context is queried with the target (distances are those of the reduced
        space); ``"auto"``: exact while ``n_target * n_context * n_genes <= 5e11`` (e.g. 2k x 2k cells
        on all genes, or 20k x 20k cells on 2,000 highly variable genes), else pynndescent.
    ortholog_key
        Column of ``target.var`` with the context-species symbol of each gene.
    layer
        Layer holding the counts (in both objects); ``None`` for ``X``.
    key_added
        ``uns`` key of the search and prefix of every other key written.
    batch_size
        Target cells per block of the exact search (memory ~ ``batch_size * n_context * 4`` bytes).
    n_components
        Dimensions of the reduced space of ``method="pynndescent"``.
    random_state
        Seed of the SVD and of pynndescent.
    {progress_bar}
    copy
        Return a modified copy of ``target`` instead of writing to it.

    Returns
    -------
    ``None`` (or the copy when ``copy=True``); writes to ``target``:

    - ``obsm[f"{key_added}_neighbors"]``: int64 (n_target, n_neighbors) row indices into ``context``,
      closest first; ``obsm[f"{key_added}_distances"]``: float32 distances.
    - ``obs[f"{key_added}_agreement"]``: with labels, the (weighted) share of the votes of the first
      ``n_vote`` neighbours that went to the voted label; without, their mean similarity (cosine: 1 - distance; euclidean:
      1 / (1 + distance)).
    - ``obs[f"{key_added}_top_percent"]``: percentage of target cells ranked before this cell by
      agreement, in [0, 100); small = trusted (the model aligns cells with top_percent <= 20).
      With labels, cells are ranked within their voted label, so every voted type contributes its 20 %
      most trusted cells (small types such as stellate cells get alignment anchors; measured on
      :doc:`/benchmarks`). Cells of equal agreement
      (many cells have all ``n_vote`` neighbours of one label) are ranked by the mean similarity of their
      first ``n_vote`` neighbours, so ``top_percent`` is a rank; the most trusted cell of every voted type
      has 0, so even a type with a handful of cells gets an anchor.
    - with labels, ``obs[f"{key_added}_{labels_key}"]``: voted label (ties: the closest label). Context
      cells with a missing label do not vote; a cell none of whose ``n_vote`` neighbours is labelled gets
      a missing label and agreement 0.
    - ``uns[key_added]``: ``"params"`` (the parameters; ``labels_key`` and ``layer`` are ``""`` when
      ``None``, ``method`` the one used), ``context_n_obs``, ``target_genes`` and ``context_genes`` (the
      matching var names used, same order) and ``context_fingerprint``: :func:`xspecies._validation.context_fingerprint` of ``context`` (its size
      and a hash of its cell and gene names in order), checked by
      :meth:`~xspecies.model.TargetModel.from_context` and :func:`xspecies.tl.transfer_labels` so the
      neighbours are never read against other context cells.

    Context cells without counts on the shared genes are never neighbours; target cells without counts
    on them raise a ValueError (their neighbours would be arbitrary), as do parameters out of range
    (``batch_size=-1``, ``n_neighbors=0``, ...), a context label column with only missing values, few
    shared genes (below 5 % of the possible ones; below 25 % warns) and ``copy=False`` on a view: all
    before the search starts.

    Examples
    --------
    >>> import xspecies as xs
    >>> mouse, human = xs.datasets.pancreas("mouse"), xs.datasets.pancreas("human")
    >>> xs.pp.translate_genes(human, "human", "mouse")
    >>> xs.pp.homology_neighbors(human, mouse, labels_key="cell_ontology_class")
    >>> human.obsm["homology_neighbors"].shape == (human.n_obs, 250)
    True
    >>> bool(human.obs["homology_cell_ontology_class"].isin(mouse.obs["cell_ontology_class"]).all())
    True
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: use one of {METRICS}.")
    check_weighting(weighting)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: use one of {METHODS}.")
    for name, value in (
        ("n_neighbors", n_neighbors),
        ("n_vote", n_vote),
        ("batch_size", batch_size),
        ("n_components", n_components),
    ):
        check_positive_int(name, value)
    check_int("random_state", random_state, minimum=0)
    if not copy:
        check_not_view(target, "target")
    labels = None
    if labels_key is not None:
        labels = check_obs_key(context, labels_key, "context", allow_nan=True).astype("category")
    t_idx, c_idx = shared_genes(target, context, ortholog_key=ortholog_key)
    if n_vote > n_neighbors:
        raise ValueError(f"need 1 <= n_vote <= n_neighbors, got n_vote={n_vote}, n_neighbors={n_neighbors}.")
    if n_neighbors > context.n_obs:
        raise ValueError(f"n_neighbors={n_neighbors} exceeds the {context.n_obs} context cells.")
    check_counts(target, layer, "target")
    check_counts(context, layer, "context")

    Xt, Xc = (sparse.csr_matrix(get_matrix(a, layer)) for a in (target, context))  # no copy of CSR
    cols = (t_idx, c_idx)
    searched = _cells_with_counts(Xt, Xc, cols, target, context, n_neighbors)
    if method == "auto":
        work = target.n_obs * len(searched) * _genes_with_counts(Xt, Xc, cols)
        method = "exact" if work <= EXACT_MAX_WORK else "pynndescent"
    if method == "exact":
        T, C = _log1p_rows(Xt, t_idx, metric), _log1p_rows(Xc[searched], c_idx, metric)
        idx, dist = _exact(T, C, n_neighbors, metric, batch_size, progress_bar)
    else:
        idx, dist = _approximate(
            Xt, Xc, cols, searched, n_neighbors, metric, n_components, random_state, progress_bar
        )
    idx = searched[idx]  # int64 positions in the context
    dist = dist.astype(np.float32, copy=False)

    target = target.copy() if copy else target
    target.obsm[f"{key_added}_neighbors"] = idx
    target.obsm[f"{key_added}_distances"] = dist
    near = dist[:, :n_vote]
    similarity = (1.0 - near if metric == "cosine" else 1.0 / (1.0 + near)).mean(axis=1)
    agreement = similarity
    if labels is not None:
        winner, agreement = weighted_vote(
            labels.cat.codes.to_numpy()[idx[:, :n_vote]], len(labels.cat.categories), weighting
        )
        target.obs[f"{key_added}_{labels_key}"] = pd.Categorical.from_codes(  # -1: no neighbour labelled
            winner, categories=labels.cat.categories
        )
    agreement = np.clip(agreement.astype(np.float64), 0.0, 1.0)
    target.obs[f"{key_added}_agreement"] = agreement
    target.obs[f"{key_added}_top_percent"] = _top_percent(
        agreement, similarity, None if labels is None else winner
    )
    params = {
        "n_neighbors": n_neighbors,
        "n_vote": n_vote,
        "weighting": weighting,
        "metric": metric,
        "method": method,
        "ortholog_key": ortholog_key,
        "layer": layer or "",
        "labels_key": labels_key or "",
    }
    store_result(
        target,
        key_added,
        params,
        context_n_obs=context.n_obs,
        **{CONTEXT_FINGERPRINT_KEY: context_fingerprint(context)},
        target_genes=target.var_names[t_idx].tolist(),
        context_genes=context.var_names[c_idx].tolist(),
    )
    return target if copy else None
