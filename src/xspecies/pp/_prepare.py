"""Preparation of a dataset for scSpecies: drop small batches, low-complexity cells and rare cell types."""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData

from xspecies._results import store_result
from xspecies._validation import (
    check_counts,
    check_fraction,
    check_int,
    check_not_view,
    check_obs_key,
    get_matrix,
)

__all__ = ["prepare"]

logger = logging.getLogger("xspecies")
REPORT_COLUMNS = ["step", "reason", "group", "n_cells"]
#: fewest cells per batch for the HVG step: seurat_v3's per-batch loess fit fails on fewer cells
#: (2 cells: singular fit; 1 cell: a crash of the interpreter inside skmisc)
MIN_HVG_BATCH_SIZE = 20
#: gene rankings of the HVG step (:func:`scanpy.pp.highly_variable_genes` flavors)
HVG_FLAVORS = ("seurat", "seurat_v3")


def _small_groups(values: pd.Series, keep: np.ndarray, min_size: int) -> list[tuple[str, int]]:
    """Groups of ``values`` (among kept cells) with fewer than ``min_size`` cells."""
    counts = values[keep].value_counts()
    return [(str(g), int(n)) for g, n in counts[(counts < min_size) & (counts > 0)].items()]


def _drop_groups(
    values: pd.Series, keep: np.ndarray, min_size: int, step: str, what: str, rows: list
) -> np.ndarray:
    small = _small_groups(values, keep, min_size)
    rows.extend((step, f"{what} with < {min_size} cells", group, n) for group, n in small)
    return keep & ~values.astype(str).isin([g for g, _ in small]).to_numpy()


def _check_not_empty(keep: np.ndarray, step: str) -> None:
    if not keep.any():
        raise ValueError(f"every cell was filtered away at step {step!r}: relax its threshold.")


def _check_hvg_batches(adata: AnnData, batch_key: str | None) -> None:
    """Raise, naming the batch, when a batch (or the whole data) is too small for HVG selection."""
    sizes = (
        pd.Series({"all cells": adata.n_obs})
        if batch_key is None
        else adata.obs[batch_key].astype(str).value_counts()
    )
    small = sizes[sizes < MIN_HVG_BATCH_SIZE]
    if len(small):
        group, n = small.index[0], int(small.iloc[0])
        what = "the data" if batch_key is None else f"batch {group!r} of obs[{batch_key!r}]"
        raise ValueError(
            f"n_top_genes: highly variable gene selection needs at least {MIN_HVG_BATCH_SIZE} cells per batch, "
            f"but {what} has {n} after filtering: raise min_batch_size (batches are counted before the "
            "complexity and cell-type steps), or pass n_top_genes=None."
        )


def _highly_variable(
    adata: AnnData,
    n_top_genes: int,
    *,
    flavor: Literal["seurat", "seurat_v3"] = "seurat",
    batch_key: str | None = None,
    layer: str | None = None,
) -> pd.DataFrame:
    """Rank the genes of raw counts with :func:`scanpy.pp.highly_variable_genes`; ``adata`` is not changed.

    ``"seurat"`` ranks the normalized dispersion of a log-normalized copy of the counts (each cell scaled
    to 10,000 counts, ``log1p``); ``"seurat_v3"`` the variance of the counts standardized by a loess trend
    over the genes' means.

    Parameters
    ----------
    adata
        Raw counts (``X`` or ``layer``).
    n_top_genes
        Genes flagged ``highly_variable``.
    flavor
        ``"seurat"`` or ``"seurat_v3"``.
    batch_key
        Column of ``obs`` with batches: genes are ranked per batch and combined (scanpy's ``batch_key``).
    layer
        Layer with the counts; ``None`` for ``X``.

    Returns
    -------
    pandas.DataFrame
        scanpy's table (``highly_variable`` and the statistics of the flavor, without seurat's
        ``mean_bin``), indexed by ``var_names``.
    """
    source, hvg_layer = adata, layer
    if flavor == "seurat":  # the log-normalized copy costs one copy of the counts (sparse stays sparse)
        counts = get_matrix(adata, layer)
        counts = counts.copy() if np.issubdtype(counts.dtype, np.floating) else counts.astype(np.float32)
        obs = adata.obs[[batch_key]] if batch_key is not None else pd.DataFrame(index=adata.obs_names)
        source = AnnData(X=counts, obs=obs, var=pd.DataFrame(index=adata.var_names))
        sc.pp.normalize_total(source, target_sum=1e4)
        sc.pp.log1p(source)
        hvg_layer = None
    hvg = sc.pp.highly_variable_genes(
        source, n_top_genes=n_top_genes, flavor=flavor, batch_key=batch_key, layer=hvg_layer, inplace=False
    )
    # by gene name: scanpy < 1.11 returns the batched seurat table sorted by rank, not in the order of var
    hvg = hvg.reindex(adata.var_names)
    # seurat's bins of mean expression: intervals, which h5ad cannot store (scanpy keeps them out of var too)
    return hvg.drop(columns="mean_bin", errors="ignore")


def prepare(
    adata: AnnData,
    *,
    batch_key: str | None = None,
    labels_key: str | None = None,
    min_batch_size: int = 20,
    min_genes_fraction: float = 0.025,
    min_celltype_size: int = 20,
    n_top_genes: int | None = None,
    flavor: Literal["seurat", "seurat_v3"] = "seurat",
    layer: str | None = None,
    key_added: str = "prepare",
    copy: bool = False,
) -> AnnData | None:
    """Prepare a dataset for scSpecies: drop small batches, low-complexity cells, rare cell types.

    Steps, in this order (each on the cells left by the previous ones):

    1. ``batch``: batches (``obs[batch_key]``) with fewer than ``min_batch_size`` cells are removed.
    2. ``complexity``: cells that detect fewer than ``min_genes_fraction * n_vars`` genes are removed.
    3. ``celltype``: cell types (``obs[labels_key]``) with fewer than ``min_celltype_size`` cells are
       removed.
    4. ``hvg`` (when ``n_top_genes``): genes are subset to the ``n_top_genes`` highly variable genes
       (``flavor``, per batch when ``batch_key`` is given), ranked from the counts of the kept cells.
       Every batch must keep at least 20 cells (the per-batch fit fails on fewer), else a
       ValueError names the batch before anything is changed.

    Nothing is removed silently: every removed batch, cell type, group of cells and the genes dropped
    are listed in a report (``uns[key_added]["removed"]``) and logged.

    Parameters
    ----------
    adata
        Raw counts (``X`` or ``layer``).
    batch_key
        Column of ``obs`` with batches (step 1 is skipped when ``None``).
    labels_key
        Column of ``obs`` with cell types (step 3 is skipped when ``None``).
    min_batch_size
        Smallest batch kept.
    min_genes_fraction
        Smallest fraction of genes a cell must detect (count > 0).
    min_celltype_size
        Smallest cell type kept.
    n_top_genes
        Number of highly variable genes kept, at least 1 (``None``, or at least ``n_vars``: all genes).
    flavor
        Gene ranking of the ``hvg`` step (:func:`scanpy.pp.highly_variable_genes`), computed from the
        counts:

        - ``"seurat"`` (default): normalized dispersion (within bins of mean expression) of a
          log-normalized copy of the counts (each cell scaled to 10,000 counts, ``log1p``; ``adata``
          keeps its counts). On the Baron pancreas pair it keeps insulin (human ``INS``, mouse
          ``Ins1``/``Ins2``) and the markers of the 7 mouse T and 10 B cells (``Cd3e``, ``Cd3d``,
          ``Cd19``).
        - ``"seurat_v3"``: variance of the counts standardized by a loess trend over the genes' means.
          On that pair it drops those genes (the trend follows the few genes of the highest means, and
          a handful of expressing cells does not lift a gene above the cut), and with its genes
          ``xspecies align`` labelled a smaller share of the human cells correctly on every seed
          measured (:doc:`/benchmarks`).
    layer
        Layer with the counts; ``None`` for ``X``.
    key_added
        Key of the report in ``uns``.
    copy
        Return a filtered copy and leave ``adata`` unchanged. With ``copy=False`` (default) ``adata`` is
        filtered **in place** (cells and genes removed).

    Returns
    -------
    The filtered copy when ``copy=True``, else ``None``. ``uns[key_added]`` holds ``"removed"``: a
    DataFrame with one row per removed group (columns ``step``, ``reason``, ``group``, ``n_cells``; for the
    ``hvg`` step ``n_cells`` is the number of genes dropped), ``"params"`` (the parameters; ``""`` for a
    key and ``-1`` for ``n_top_genes`` that are ``None``), and ``n_obs_before``, ``n_obs_after``,
    ``n_vars_before``, ``n_vars_after``. With HVG selection, ``var`` also gets the
    columns of :func:`scanpy.pp.highly_variable_genes`.

    Raises
    ------
    ValueError
        Before anything is changed, on: parameters out of range (e.g. ``n_top_genes=0``, an unknown
        ``flavor``), a matrix that
        does not hold raw counts (NaN, inf, negative or non-integer values), missing values in the batch or
        label column, a batch too small for the HVG step, a view with ``copy=False``, or a filter that
        would remove every cell.
    KeyError
        When ``batch_key``, ``labels_key`` or ``layer`` is not found.

    Examples
    --------
    >>> import xspecies as xs
    >>> mouse = xs.datasets.pancreas("mouse")
    >>> xs.pp.prepare(mouse, batch_key="donor", labels_key="cell_ontology_class")
    >>> mouse.uns["prepare"]["n_obs_after"] <= mouse.uns["prepare"]["n_obs_before"]
    True
    >>> list(mouse.uns["prepare"]["removed"].columns)
    ['step', 'reason', 'group', 'n_cells']
    """
    for name, value in (("min_batch_size", min_batch_size), ("min_celltype_size", min_celltype_size)):
        check_int(name, value, minimum=0)
    check_fraction("min_genes_fraction", min_genes_fraction, open_max=True)
    if n_top_genes is not None:
        check_int("n_top_genes", n_top_genes, minimum=1)
    if flavor not in HVG_FLAVORS:
        raise ValueError(f"flavor must be one of {HVG_FLAVORS}, got {flavor!r}")
    if not copy:
        check_not_view(adata)
    check_counts(adata, layer)
    batches = None if batch_key is None else check_obs_key(adata, batch_key)
    labels = None if labels_key is None else check_obs_key(adata, labels_key)
    rows: list[tuple[str, str, str, int]] = []
    keep = np.ones(adata.n_obs, dtype=bool)

    if batches is not None:
        keep = _drop_groups(batches, keep, min_batch_size, "batch", "batch", rows)
        _check_not_empty(keep, "batch")
    n_genes = np.asarray((get_matrix(adata, layer) > 0).sum(axis=1)).ravel()
    min_genes = int(np.ceil(min_genes_fraction * adata.n_vars))
    low = keep & (n_genes < min_genes)
    if low.any():
        rows.append(("complexity", f"fewer than {min_genes} detected genes", "", int(low.sum())))
    keep &= ~low
    _check_not_empty(keep, "complexity")
    if labels is not None:
        keep = _drop_groups(labels, keep, min_celltype_size, "celltype", "cell type", rows)
        _check_not_empty(keep, "celltype")

    n_obs_before, n_vars_before = adata.n_obs, adata.n_vars
    hvg_needed = n_top_genes is not None and n_top_genes < adata.n_vars
    if hvg_needed:
        _check_hvg_batches(adata[keep], batch_key)
    if copy:
        adata = adata[keep].copy()
    elif not keep.all():
        adata._inplace_subset_obs(keep)
    if hvg_needed:
        hvg = _highly_variable(adata, n_top_genes, flavor=flavor, batch_key=batch_key, layer=layer)
        for column in hvg.columns:
            adata.var[column] = hvg[column].to_numpy()
        rows.append(
            (
                "hvg",
                f"not among the {n_top_genes} highly variable genes",
                "",
                int((~hvg["highly_variable"]).sum()),
            )
        )
        adata._inplace_subset_var(hvg["highly_variable"].to_numpy())

    report = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    params = {
        "batch_key": batch_key or "",
        "labels_key": labels_key or "",
        "min_batch_size": min_batch_size,
        "min_genes_fraction": min_genes_fraction,
        "min_celltype_size": min_celltype_size,
        "n_top_genes": -1 if n_top_genes is None else n_top_genes,
        "flavor": flavor,
    }
    store_result(
        adata,
        key_added,
        params,
        removed=report,
        n_obs_before=n_obs_before,
        n_obs_after=adata.n_obs,
        n_vars_before=n_vars_before,
        n_vars_after=adata.n_vars,
    )
    for step, reason, group, n in rows:
        logger.info(
            "prepare: removed %d %s (%s%s)",
            n,
            "genes" if step == "hvg" else "cells",
            reason,
            f": {group}" if group else "",
        )
    return adata if copy else None
