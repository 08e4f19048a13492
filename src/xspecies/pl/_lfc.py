"""Log2 fold changes of homologous genes between species: per cell type, and model versus data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from scipy.stats import spearmanr

from xspecies._docs import doc_params, doc_show_save
from xspecies._results import as_table

from ._utils import finalize, panel_grid

_UP, _DOWN, _OTHER = "#d62728", "#1f77b4", "#b0b0b0"
_KEYS = ["cell_type", "gene_target", "gene_context"]


def _check_columns(df: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in df]
    if missing:
        raise KeyError(f"{name} lacks columns {missing} (expected tl.homologous_lfc / tl.data_lfc output)")


def _select_types(df: pd.DataFrame, cell_types: Sequence[str] | None) -> list[str]:
    present = list(pd.unique(df["cell_type"].astype(str)))
    if cell_types is None:
        if not present:
            raise ValueError("the LFC table is empty")
        return present
    cell_types = [cell_types] if isinstance(cell_types, str) else list(cell_types)
    unknown = [c for c in cell_types if c not in present]
    if unknown:
        raise ValueError(f"cell types {unknown} not in the LFC table (present: {present})")
    return cell_types


def _callouts(ax: Axes, rows: pd.DataFrame, label: str, side: str, color: str) -> None:
    """Annotate ``rows`` (x=lfc, y=p) with labels stacked at one side of the panel, joined by lines."""
    if rows.empty:
        return
    x_text = 0.02 if side == "left" else 0.98
    ys = np.linspace(0.9, 0.9 - 0.075 * (len(rows) - 1), len(rows))
    for (_, row), y in zip(rows.sort_values("p", ascending=False).iterrows(), ys, strict=True):
        ax.annotate(
            str(row[label]),
            xy=(row["lfc"], row["p"]),
            xycoords="data",
            xytext=(x_text, y),
            textcoords="axes fraction",
            ha=side,
            va="center",
            fontsize=7,
            color=color,
            arrowprops={"arrowstyle": "-", "color": color, "lw": 0.5, "alpha": 0.7},
        )


@doc_params(show_save=doc_show_save)
def homologous_lfc(
    data: pd.DataFrame | AnnData,
    *,
    cell_types: Sequence[str] | str | None = None,
    key: str = "homologous_lfc",
    prob_delta: float = 0.9,
    n_top: int = 5,
    label: Literal["gene_target", "gene_context"] = "gene_target",
    show_random: bool = True,
    species_names: Sequence[str] = ("target", "context"),
    ncols: int = 3,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
):
    """Scatter log2 fold change against its probability per cell type and name the top genes.

    A gene is called up (red) or down (blue) in the target species when its probability
    ``p = P(|LFC| > lfc_delta)`` is at least ``prob_delta``; the ``n_top`` called genes with the
    largest and the smallest LFC are named. With ``show_random``, the permutation null
    (``lfc_rand``, ``p_rand``) is drawn in light grey behind.

    Parameters
    ----------
    data
        Output of :func:`xspecies.tl.homologous_lfc` (columns ``cell_type``, ``lfc``, ``p``, the
        gene columns, and ``lfc_rand``/``p_rand`` for ``show_random``), or the AnnData holding it
        (``target.adata``).
    cell_types
        Cell types to draw (one panel each); default all in the table.
    key
        With an AnnData: the ``key_added`` of :func:`xspecies.tl.homologous_lfc`.
    prob_delta
        Probability threshold for calling a gene up or down.
    n_top
        Number of up and of down genes named per panel.
    label
        Column naming the genes (``"gene_target"`` or ``"gene_context"``).
    show_random
        Draw the permutation null behind the genes.
    species_names
        Names of the target and context species for the axis label.
    ncols
        Panels per row.
    {show_save}

    Returns
    -------
    list of Axes, Figure or None
        One axes per cell type (the figure with ``return_fig``; ``None`` when shown).

    Examples
    --------
    A table of the layout of :func:`xspecies.tl.homologous_lfc` (with trained models:
    ``xs.pl.homologous_lfc(target.adata)``):

    >>> import numpy as np
    >>> import pandas as pd
    >>> import xspecies as xs
    >>> rng = np.random.default_rng(0)
    >>> lfc = pd.DataFrame(
    ...     {
    ...         "cell_type": "beta",
    ...         "gene_target": [f"GENE{i}" for i in range(100)],
    ...         "gene_context": [f"Gene{i}" for i in range(100)],
    ...         "lfc": rng.normal(0, 2, 100),
    ...         "p": rng.uniform(0, 1, 100),
    ...         "lfc_rand": rng.normal(0, 1, 100),
    ...         "p_rand": rng.uniform(0, 0.5, 100),
    ...     }
    ... )
    >>> axes = xs.pl.homologous_lfc(lfc, n_top=3, show=False)
    >>> axes[0].get_title()
    'beta (100 genes)'
    """
    lfc = as_table(data, key, "tl.homologous_lfc")
    _check_columns(lfc, ["cell_type", "lfc", "p", label], "lfc")
    if show_random:
        _check_columns(lfc, ["lfc_rand", "p_rand"], "lfc")
    if not 0 <= prob_delta <= 1:
        raise ValueError(f"prob_delta must be in [0, 1], got {prob_delta}")
    types = _select_types(lfc, cell_types)
    fig, axes = panel_grid(len(types), ncols, (4.6, 3.8))
    cell_type = lfc["cell_type"].astype(str)
    lim = np.nanmax(np.abs(lfc.loc[cell_type.isin(types), "lfc"].to_numpy(dtype=float)))
    lim = float(np.ceil(lim * 1.05 + 1e-9)) if np.isfinite(lim) and lim > 0 else 1.0
    for ax, name in zip(axes, types, strict=True):
        df = lfc[cell_type == name]
        if show_random:
            ax.scatter(df["lfc_rand"], df["p_rand"], s=4, c="#e6e6e6", linewidths=0, label="permuted")
        called = df["p"] >= prob_delta
        up = df[called & (df["lfc"] > 0)]
        down = df[called & (df["lfc"] < 0)]
        rest = df[~df.index.isin(up.index.union(down.index))]
        ax.scatter(rest["lfc"], rest["p"], s=5, c=_OTHER, linewidths=0)
        ax.scatter(up["lfc"], up["p"], s=8, c=_UP, linewidths=0, label=f"up ({len(up)})")
        ax.scatter(down["lfc"], down["p"], s=8, c=_DOWN, linewidths=0, label=f"down ({len(down)})")
        _callouts(ax, up.nlargest(n_top, "lfc"), label, "right", _UP)
        _callouts(ax, down.nsmallest(n_top, "lfc"), label, "left", _DOWN)
        ax.axhline(prob_delta, ls="--", lw=0.8, c="black", alpha=0.6)
        ax.axvline(0, lw=0.6, c="black", alpha=0.4)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-0.02, 1.12)
        ax.set_title(f"{name} ({len(df)} genes)")
        ax.set_xlabel(f"log2 fold change ({species_names[0]} / {species_names[1]})")
        ax.set_ylabel("P(|LFC| > delta)")
        ax.legend(loc="lower center", fontsize=7, frameon=False, ncol=3, markerscale=2)
    return finalize(fig, axes, show, save, return_fig)


@doc_params(show_save=doc_show_save)
def lfc_comparison(
    data: pd.DataFrame | AnnData,
    data_lfc: pd.DataFrame | AnnData | None = None,
    *,
    cell_types: Sequence[str] | str | None = None,
    key: str = "homologous_lfc",
    data_key: str = "data_lfc",
    specific: bool = False,
    ncols: int = 4,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
):
    """Scatter model log2 fold changes against data-level ones, one panel per cell type.

    Rows of both tables are matched on ``cell_type``, ``gene_target`` and ``gene_context``; each
    panel shows the Spearman correlation in its title and the diagonal.

    Much of the agreement of the total LFCs is each gene's offset between the species, shared by all
    cell types. With ``specific=True`` the panels compare the type-specific parts instead: each gene's
    LFC minus its mean over the cell types of the matched rows (model and data alike, over the types
    where the data LFC is defined), the part that a comparison with a random cell type does not share.

    Parameters
    ----------
    data
        Output of :func:`xspecies.tl.homologous_lfc`, or the AnnData holding it (``target.adata``).
    data_lfc
        Output of :func:`xspecies.tl.data_lfc` (same key columns and an ``lfc`` column), or the AnnData
        holding it; default: read from ``data`` when it is an AnnData.
    cell_types
        Cell types to draw; default all types present in both tables.
    key
        With an AnnData: the ``key_added`` of :func:`xspecies.tl.homologous_lfc`.
    data_key
        With an AnnData: the ``key_added`` of :func:`xspecies.tl.data_lfc`.
    specific
        Compare the type-specific parts (LFC minus the gene's mean over the cell types) rather than
        the total LFCs; needs at least two cell types in the matched rows.
    ncols
        Panels per row.
    {show_save}

    Returns
    -------
    list of Axes, Figure or None
        One axes per cell type (the figure with ``return_fig``; ``None`` when shown). Each axes'
        title holds the Spearman correlation.

    Examples
    --------
    Tables of the layout of :func:`xspecies.tl.homologous_lfc` and :func:`xspecies.tl.data_lfc` (with
    trained models, both stored in ``target.adata``: ``xs.pl.lfc_comparison(target.adata)``):

    >>> import numpy as np
    >>> import pandas as pd
    >>> import xspecies as xs
    >>> genes = {"cell_type": "beta", "gene_target": ["INS", "GCG", "SST"], "gene_context": ["Ins1", "Gcg", "Sst"]}
    >>> model = pd.DataFrame({**genes, "lfc": [1.0, 2.0, 3.0]})
    >>> observed = pd.DataFrame({**genes, "lfc": [1.5, 2.5, 3.5]})
    >>> axes = xs.pl.lfc_comparison(model, observed, show=False)
    >>> axes[0].get_title().splitlines()[1]
    'Spearman r = 1.00 (3 genes)'
    """
    lfc = as_table(data, key, "tl.homologous_lfc")
    if data_lfc is None:
        if not isinstance(data, AnnData):
            raise TypeError("data_lfc is required when data is a table (or pass the AnnData holding both)")
        data_lfc = data
    data_lfc = as_table(data_lfc, data_key, "tl.data_lfc")
    _check_columns(lfc, [*_KEYS, "lfc"], "lfc")
    _check_columns(data_lfc, [*_KEYS, "lfc"], "data_lfc")
    merged = lfc[[*_KEYS, "lfc"]].merge(data_lfc[[*_KEYS, "lfc"]], on=_KEYS, suffixes=("_model", "_data"))
    if merged.empty:
        raise ValueError("lfc and data_lfc share no (cell_type, gene_target, gene_context) rows")
    types = _select_types(merged, cell_types)
    kind = "LFC"
    if specific:
        merged = merged.dropna(subset=["lfc_data", "lfc_model"])
        if merged["cell_type"].nunique() < 2:
            raise ValueError(
                "specific=True needs at least two cell types in the matched rows of lfc and data_lfc"
            )
        means = merged.groupby(["gene_target", "gene_context"])[["lfc_model", "lfc_data"]].transform("mean")
        merged[["lfc_model", "lfc_data"]] -= means.to_numpy()
        kind = "type-specific LFC"
    fig, axes = panel_grid(len(types), ncols, (3.6, 3.4))
    for ax, name in zip(axes, types, strict=True):
        df = merged[merged["cell_type"].astype(str) == name].dropna(subset=["lfc_data", "lfc_model"])
        x, y = df["lfc_data"].to_numpy(float), df["lfc_model"].to_numpy(float)
        rho = spearmanr(x, y).statistic if len(df) > 2 else np.nan
        ax.scatter(x, y, s=4, c="#4c72b0", alpha=0.5, linewidths=0, rasterized=True)
        low, high = np.nanmin([x.min(), y.min()]), np.nanmax([x.max(), y.max()])
        ax.plot([low, high], [low, high], ls="--", lw=0.8, c="black", alpha=0.6)
        ax.set_title(f"{name}\nSpearman r = {rho:.2f} ({len(df)} genes)", fontsize=9)
        ax.set_xlabel(f"data {kind}")
        ax.set_ylabel(f"model {kind}")
    return finalize(fig, axes, show, save, return_fig)
