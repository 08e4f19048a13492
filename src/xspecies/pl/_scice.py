"""Plot of the scICE inconsistency-coefficient distributions per cluster count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes

from xspecies._docs import doc_ax, doc_params, doc_show_save

from ._utils import finalize, new_axes

_CONSISTENT_COLOR = "#4c72b0"
_INCONSISTENT_COLOR = "#c0c0c0"


@doc_params(ax=doc_ax, show_save=doc_show_save)
def scice(
    adata: AnnData,
    *,
    threshold: float | None = None,
    show_gamma: bool = True,
    key: str = "scice",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
):
    """Boxplots of the bootstrap inconsistency coefficients (IC) of each scICE result.

    One box per final cluster count (``adata.uns[key]["ic_vec"]``); boxes at or below
    ``threshold`` (consistent clusterings) are coloured, a dashed line marks the threshold and,
    with ``show_gamma``, each box is annotated with its resolution.

    Parameters
    ----------
    adata
        Annotated data matrix with the results of :func:`xspecies.tl.scice`.
    threshold
        IC threshold of consistency (drawn as a horizontal line); default: the run's ``ic_threshold``.
    show_gamma
        Annotate each box with its resolution ``gamma``.
    key
        Key of the scICE results in ``adata.uns``.
    {ax}
    {show_save}

    Returns
    -------
    Axes, Figure or None
        The axes (the figure with ``return_fig``; None when shown).

    Examples
    --------
    >>> import scanpy as sc
    >>> import xspecies as xs
    >>> adata = sc.datasets.blobs(n_centers=3, n_observations=150, random_state=0)
    >>> sc.pp.neighbors(adata, n_neighbors=10, use_rep="X", random_state=0)
    >>> xs.tl.scice(adata, cluster_range=range(2, 5), n_trials=5, n_bootstrap=20, progress_bar=False)
    >>> ax = xs.pl.scice(adata, show=False)
    >>> found = [int(label.get_text()) for label in ax.get_xticklabels()]  # one box per cluster count found
    >>> found == [int(k) for k in adata.uns["scice"]["n_cluster"]]
    True
    """
    if key not in adata.uns:
        raise KeyError(f"no scICE results at adata.uns[{key!r}]; run xspecies.tl.scice first")
    results = adata.uns[key]
    threshold = results["ic_threshold"] if threshold is None else threshold
    n_cluster = np.asarray(results["n_cluster"])
    ic_vec = np.asarray(results["ic_vec"], dtype=np.float64)
    if n_cluster.size == 0:
        raise ValueError(f"adata.uns[{key!r}] holds no results to plot (every target was removed)")
    ax_given = ax is not None
    fig, ax = new_axes(ax, figsize=(max(4.0, 0.6 * n_cluster.size + 2.0), 4.0))
    boxes = ax.boxplot(
        list(ic_vec), positions=np.arange(n_cluster.size), widths=0.6, patch_artist=True, showfliers=False
    )
    medians = np.median(ic_vec, axis=1)
    for patch, median in zip(boxes["boxes"], medians, strict=True):
        patch.set_facecolor(_CONSISTENT_COLOR if median <= threshold else _INCONSISTENT_COLOR)
    ax.axhline(threshold, color="#c44e52", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_xticks(np.arange(n_cluster.size), [str(int(k)) for k in n_cluster])
    ax.set_xlabel("number of clusters")
    ax.set_ylabel("inconsistency coefficient (IC)")
    ax.set_title("scICE clustering consistency")
    if show_gamma:
        top = ic_vec.max(axis=1)
        span = max(float(ic_vec.max() - min(ic_vec.min(), threshold)), 1e-3)
        for x, (gamma, y) in enumerate(zip(np.asarray(results["gamma"]), top, strict=True)):
            ax.annotate(
                f"γ={gamma:.3g}", (x, y + 0.03 * span), ha="center", va="bottom", fontsize=7, rotation=90
            )
        ax.set_ylim(top=float(top.max()) + 0.35 * span)
    ax.legend(loc="upper left", frameon=False, fontsize=8)
    return finalize(fig, ax, show=show, save=save, return_fig=return_fig, ax_given=ax_given)
