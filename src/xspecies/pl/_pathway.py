"""Heatmap of the pathway summary of homologous log2 fold changes: conserved and divergent pathways."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes

from xspecies._docs import doc_ax, doc_params, doc_show_save
from xspecies._results import as_table

from ._heatmaps import _annotate, _draw_heatmap
from ._utils import finalize, new_axes

_DIVERGENT, _CONSERVED = "*", "="


def _pick(present: list[str], wanted: Sequence[str] | str | None, what: str) -> list[str] | None:
    if wanted is None:
        return None
    wanted = [wanted] if isinstance(wanted, str) else [str(w) for w in wanted]
    unknown = [w for w in wanted if w not in present]
    if unknown or not wanted:
        raise ValueError(f"{what} {unknown} not in the pathway table (present: {present[:20]})")
    return wanted


@doc_params(ax=doc_ax, show_save=doc_show_save)
def pathway_lfc(
    data: pd.DataFrame | AnnData,
    *,
    key: str = "pathway_lfc",
    pathways: Sequence[str] | str | None = None,
    cell_types: Sequence[str] | str | None = None,
    max_pathways: int | None = 40,
    alpha: float = 0.05,
    conserved_lfc: float = 0.25,
    cmap: str = "RdBu_r",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
):
    """Heatmap of the mean log2 fold change per cell type (rows) and pathway (columns).

    Colours show ``mean_lfc`` (red: higher in the target species, blue: higher in the context, on a
    scale symmetric around 0). A pathway is marked divergent (``*``) in a cell type when its adjusted
    permutation p-value is at most ``alpha``, and conserved (``=``) when it is not significant and its
    mean LFC is at most ``conserved_lfc`` in absolute value; grey cells were not tested (fewer than
    ``min_genes`` genes).

    Parameters
    ----------
    data
        Output of :func:`xspecies.tl.pathway_lfc` (columns ``cell_type``, ``pathway``, ``mean_lfc``,
        ``pval_adj``), or the AnnData holding it.
    key
        With an AnnData: the ``key_added`` of :func:`xspecies.tl.pathway_lfc`.
    pathways
        Pathways to draw, in this order; default the ``max_pathways`` pathways divergent in the most
        cell types (ties: larger mean absolute LFC first).
    cell_types
        Cell types to draw, in this order; default all, in table order.
    max_pathways
        Most pathways drawn when ``pathways`` is not given (``None``: all).
    alpha
        Adjusted p-value up to which a pathway is divergent.
    conserved_lfc
        Largest absolute mean LFC of a conserved (not significant) pathway.
    cmap
        Diverging colormap.
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
    >>> res = pd.DataFrame(
    ...     {
    ...         "cell_type": ["alpha", "alpha", "beta", "beta"],
    ...         "pathway": ["GLYCOLYSIS", "HYPOXIA", "GLYCOLYSIS", "HYPOXIA"],
    ...         "mean_lfc": [1.8, 0.1, 0.2, -0.05],
    ...         "pval_adj": [0.002, 0.6, 0.4, 0.9],
    ...     }
    ... )
    >>> ax = xs.pl.pathway_lfc(res, show=False)
    >>> [t.get_text() for t in ax.get_xticklabels()]
    ['GLYCOLYSIS', 'HYPOXIA']
    """
    result = as_table(data, key, "tl.pathway_lfc")
    missing = [c for c in ("cell_type", "pathway", "mean_lfc", "pval_adj") if c not in result]
    if missing:
        raise KeyError(f"result lacks columns {missing} (expected tl.pathway_lfc output)")
    if result.empty:
        raise ValueError("the pathway table is empty")
    if not 0 <= alpha <= 1 or conserved_lfc < 0:
        raise ValueError(f"alpha must be in [0, 1] and conserved_lfc >= 0, got {alpha} and {conserved_lfc}")
    if max_pathways is not None and max_pathways < 1:
        raise ValueError(f"max_pathways must be >= 1 or None, got {max_pathways}")
    df = result.astype({"cell_type": str, "pathway": str})
    present = list(pd.unique(df["cell_type"]))
    rows = _pick(present, cell_types, "cell types") or present
    df = df[df["cell_type"].isin(rows)]
    mean = df.pivot_table(index="cell_type", columns="pathway", values="mean_lfc", sort=False)
    padj = df.pivot_table(index="cell_type", columns="pathway", values="pval_adj", sort=False)
    columns = _pick(list(mean.columns), pathways, "pathways")
    if columns is None:
        rank = pd.DataFrame({"divergent": (padj <= alpha).sum(), "size": mean.abs().mean()})
        columns = list(rank.sort_values(["divergent", "size"], ascending=False, kind="stable").index)
        columns = columns[:max_pathways]
    mean, padj = mean.loc[rows, columns], padj.loc[rows, columns]

    fig, ax_ = new_axes(ax, (max(4.0, 0.35 * len(columns) + 3.0), max(3.0, 0.4 * len(rows) + 2.5)))
    ax_.set_facecolor("#e6e6e6")
    limit = np.nanmax(np.abs(mean.to_numpy(dtype=float)))
    limit = float(limit) if np.isfinite(limit) and limit > 0 else 1.0
    image = _draw_heatmap(ax_, mean, cmap, "mean log2 fold change", vmin=-limit, vmax=limit)
    divergent = (padj <= alpha).to_numpy()
    conserved = ((padj > alpha) & (mean.abs() <= conserved_lfc)).to_numpy()
    texts = dict.fromkeys(zip(*np.nonzero(divergent), strict=True), _DIVERGENT)
    texts |= dict.fromkeys(zip(*np.nonzero(conserved), strict=True), _CONSERVED)
    _annotate(ax_, image, texts, fontsize=9)
    ax_.set_xlabel("pathway")
    ax_.set_ylabel("cell type")
    ax_.set_title(
        f"Pathway LFC: {_DIVERGENT} divergent (adj. p <= {alpha:g}), "
        f"{_CONSERVED} conserved (|mean| <= {conserved_lfc:g}, n.s.)",
        fontsize=9,
    )
    return finalize(fig, ax_, show, save, return_fig, ax_given=ax is not None)
