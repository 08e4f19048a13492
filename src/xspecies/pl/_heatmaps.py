"""Heatmaps of target x context tables: cell-type similarity (with ranks) and confusion matrices."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

from xspecies._docs import doc_ax, doc_params, doc_show_save
from xspecies._results import as_table, read_result

from ._palette import text_color
from ._utils import finalize, new_axes


def _draw_heatmap(
    ax: Axes, df: pd.DataFrame, cmap: str, colorbar_label: str, vmin=None, vmax=None
) -> mpl.image.AxesImage:
    values = df.to_numpy(dtype=float)
    image = ax.imshow(values, cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks(range(df.shape[1]), [str(c) for c in df.columns], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(df.shape[0]), [str(r) for r in df.index], fontsize=8)
    ax.tick_params(length=0)
    for j, column in enumerate(df.columns):  # frame the cells whose row and column name the same label
        for i, row in enumerate(df.index):
            if str(row) == str(column):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="black", lw=1.2))
    colorbar = ax.get_figure().colorbar(image, ax=ax, shrink=0.8, pad=0.02)
    colorbar.set_label(colorbar_label)
    return image


def _annotate(ax: Axes, image, texts: dict[tuple[int, int], str], fontsize: float) -> None:
    values = image.get_array()
    for (i, j), text in texts.items():
        color = text_color(image.cmap(image.norm(values[i, j]))) if np.isfinite(values[i, j]) else "black"
        ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=color)


def _figsize(df: pd.DataFrame) -> tuple[float, float]:
    return (max(4.0, 0.45 * df.shape[1] + 3.0), max(3.0, 0.4 * df.shape[0] + 2.0))


@doc_params(ax=doc_ax, show_save=doc_show_save)
def celltype_similarity(
    data: pd.DataFrame | AnnData,
    *,
    key: str = "celltype_similarity",
    n_ranks: int = 2,
    cmap: str = "viridis",
    target_name: str = "target",
    context_name: str = "context",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
):
    """Heatmap of cell-type similarity, target types (rows) x context types (columns), with ranks.

    The ``n_ranks`` most similar context types of each target type are numbered (1 = best), and
    cells whose row and column carry the same label are framed.

    Parameters
    ----------
    data
        Output of :func:`xspecies.tl.celltype_similarity` (higher = more similar), or the AnnData holding
        it (``target.adata``).
    key
        With an AnnData: the ``key_added`` of :func:`xspecies.tl.celltype_similarity`.
    n_ranks
        Number of best context types numbered per row (0 for none).
    cmap
        Colormap.
    target_name, context_name
        Species names for the axis labels.
    {ax}
    {show_save}

    Returns
    -------
    Axes, Figure or None
        The axes (the figure with ``return_fig``; ``None`` when shown).

    Examples
    --------
    A table of the layout of :func:`xspecies.tl.celltype_similarity` (with trained models:
    ``xs.pl.celltype_similarity(target.adata)``):

    >>> import pandas as pd
    >>> import xspecies as xs
    >>> sim = pd.DataFrame(
    ...     [[-1.0, -9.0], [-8.0, -2.0]], index=["alpha", "beta"], columns=["alpha", "beta"]
    ... )
    >>> ax = xs.pl.celltype_similarity(sim, target_name="human", context_name="mouse", show=False)
    >>> ax.get_ylabel()
    'human cell type'
    """
    df = as_table(data, key, "tl.celltype_similarity")
    if df.empty:
        raise ValueError("the similarity table is empty")
    if n_ranks < 0:
        raise ValueError(f"n_ranks must be >= 0, got {n_ranks}")
    fig, ax_ = new_axes(ax, _figsize(df))
    image = _draw_heatmap(ax_, df, cmap, "similarity")
    ranks = df.rank(axis=1, ascending=False, method="first").to_numpy()
    texts = {(i, j): str(int(ranks[i, j])) for i, j in zip(*np.nonzero(ranks <= n_ranks), strict=True)}
    _annotate(ax_, image, texts, fontsize=9)
    ax_.set_xlabel(f"{context_name} cell type")
    ax_.set_ylabel(f"{target_name} cell type")
    ax_.set_title("Cell-type similarity (rank of best matches)")
    return finalize(fig, ax_, show, save, return_fig, ax_given=ax is not None)


@doc_params(ax=doc_ax, show_save=doc_show_save)
def confusion_matrix(
    data,
    *,
    key: str | None = None,
    normalize: bool = True,
    annotate: bool | None = None,
    cmap: str = "Blues",
    title: str | None = None,
    xlabel: str = "predicted label",
    ylabel: str = "true label",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
):
    """Heatmap of a confusion matrix: true labels (rows) x predicted labels (columns).

    Parameters
    ----------
    data
        Counts or percentages, true labels as index and predicted labels as columns
        (e.g. ``pd.crosstab(true, predicted)``); or the :class:`~xspecies.tl.TransferReport` of
        :func:`xspecies.tl.evaluate_transfer`, or the AnnData holding it (with ``key``).
    key
        With an AnnData: the ``key_added`` of :func:`xspecies.tl.evaluate_transfer` (e.g.
        ``"xspecies_cell_ontology_class_evaluation"``).
    normalize
        Show each row in percent of its total (rows summing to 0 stay 0).
    annotate
        Write the values in the cells; default when the matrix has at most 30 rows and columns.
    cmap
        Colormap.
    title, xlabel, ylabel
        Texts of the axes.
    {ax}
    {show_save}

    Returns
    -------
    Axes, Figure or None
        The axes (the figure with ``return_fig``; ``None`` when shown).

    Examples
    --------
    >>> import pandas as pd
    >>> import xspecies as xs
    >>> truth = pd.Series(["alpha", "alpha", "beta", "beta"], name="true")
    >>> predicted = pd.Series(["alpha", "beta", "beta", "beta"], name="predicted")
    >>> ax = xs.pl.confusion_matrix(pd.crosstab(truth, predicted), show=False)
    >>> [t.get_text() for t in ax.texts]
    ['50', '50', '100']

    After :func:`xspecies.tl.evaluate_transfer` the report, or the AnnData it was stored in, is drawn
    directly: ``xs.pl.confusion_matrix(human, key="xspecies_cell_ontology_class_evaluation")``.
    """
    if isinstance(data, AnnData):
        if key is None:
            raise ValueError("pass key: the key_added of xspecies.tl.evaluate_transfer (uns key)")
        data = read_result(data, key, "confusion", "tl.evaluate_transfer")
    df = getattr(data, "confusion", data)
    if not isinstance(df, pd.DataFrame):
        raise TypeError(
            f"expected a confusion DataFrame, a TransferReport or an AnnData, got {type(df).__name__}"
        )
    if df.empty:
        raise ValueError("the confusion matrix is empty")
    values = df.astype(float)
    if normalize:
        totals = values.sum(axis=1).replace(0, np.nan)
        values = values.div(totals, axis=0).fillna(0.0) * 100
    fig, ax_ = new_axes(ax, _figsize(values))
    image = _draw_heatmap(ax_, values, cmap, "% of row" if normalize else "cells", vmin=0)
    if annotate is None:
        annotate = max(values.shape) <= 30
    if annotate:
        arr = values.to_numpy()
        fmt = "{:.0f}" if normalize or np.allclose(arr, np.round(arr)) else "{:.3g}"
        texts = {(i, j): fmt.format(arr[i, j]) for i, j in zip(*np.nonzero(arr), strict=True)}
        _annotate(ax_, image, texts, fontsize=7)
    ax_.set_xlabel(xlabel)
    ax_.set_ylabel(ylabel)
    ax_.set_title(title if title is not None else "Confusion matrix")
    return finalize(fig, ax_, show, save, return_fig, ax_given=ax is not None)
