"""Similarity of every context cell to one target cell, drawn on the shared 2D embedding."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes

from xspecies._docs import doc_ax, doc_params, doc_show_save
from xspecies._results import as_table
from xspecies.tl._similar_cells import target_position

from ._embedding import embedding_coords, point_size, species_views, style_embedding_axes
from ._utils import finalize, new_axes

_BACKGROUND = "#e0e0e0"


@doc_params(ax=doc_ax, show_save=doc_show_save)
def similar_cells(
    context: AnnData,
    target: AnnData | None = None,
    similar: pd.DataFrame | None = None,
    *,
    index: int | str | None = None,
    key: str = "similar_cells",
    basis: str = "X_umap",
    labels_key: str | None = None,
    species_key: str = "species",
    species_names: Sequence[str] | None = None,
    cmap: str = "viridis",
    clip_quantile: float = 0.02,
    size: float | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
):
    """Colour context cells by their likelihood similarity to one target cell on a shared embedding.

    Context cells are coloured by ``similar["similarity"]`` (most similar drawn on top; the lowest
    ``clip_quantile`` share is clipped so outliers do not flatten the colour scale), context cells
    missing from ``similar`` and all target cells are grey, and the target cell is a red star.

    Parameters
    ----------
    context
        Context AnnData, or one AnnData with both species when ``target`` is ``None``.
    target
        Target AnnData, or ``None`` (species in ``context.obs[species_key]``).
    similar
        Output of :func:`xspecies.tl.similar_cells` for this target cell: columns
        ``context_index`` (row positions in the context data) and ``similarity``; default: read from
        ``uns[key]`` of the target AnnData (of ``context`` when ``target`` is ``None``).
    index
        The target cell: row position or obs name in the target data; default the cell recorded with
        the result (``similar.attrs["target_obs_name"]``, or ``uns[key]["params"]["index"]`` when the
        table is read from the AnnData).
    key
        The ``key_added`` of :func:`xspecies.tl.similar_cells`, read when ``similar`` or ``index`` is
        not given.
    basis
        Key of ``obsm`` with the 2D coordinates of both species.
    labels_key
        Target ``obs`` column whose value for the cell is shown in the title.
    species_key, species_names
        See :func:`xspecies.pl.embedding_2d`.
    cmap
        Colormap of the similarity.
    clip_quantile
        Lower quantile of the similarities at which the colour scale starts.
    size
        Marker area; default from the number of cells.
    {ax}
    {show_save}

    Returns
    -------
    Axes, Figure or None
        The axes (the figure with ``return_fig``; ``None`` when shown).

    Examples
    --------
    A table of the layout of :func:`xspecies.tl.similar_cells` on a made-up embedding (with trained
    models and a shared UMAP: ``xs.pl.similar_cells(mouse, human)`` after
    ``xs.tl.similar_cells(target, context, index=0)``):

    >>> import numpy as np
    >>> import pandas as pd
    >>> import xspecies as xs
    >>> from anndata import AnnData
    >>> rng = np.random.default_rng(0)
    >>> mouse = AnnData(obs=pd.DataFrame(index=[f"m{i}" for i in range(20)]), obsm={"X_umap": rng.normal(size=(20, 2))})
    >>> human = AnnData(obs=pd.DataFrame(index=[f"h{i}" for i in range(10)]), obsm={"X_umap": rng.normal(size=(10, 2))})
    >>> df = pd.DataFrame({"context_index": np.arange(20), "similarity": -rng.exponential(size=20)})
    >>> ax = xs.pl.similar_cells(mouse, human, df, index="h3", show=False)
    >>> ax.get_title()
    'target cell h3'
    """
    holder = context if target is None else target
    if similar is None:  # the table and its cell from the result stored by tl.similar_cells
        similar = as_table(holder, key, "tl.similar_cells")
        recorded = dict(holder.uns[key].get("params", {})).get("index")
    else:
        recorded = similar.attrs.get("target_obs_name")
    if index is None:
        if recorded is None:
            raise ValueError(f"pass index: no target cell is recorded with the result (key={key!r})")
        index = recorded
    for column in ("context_index", "similarity"):
        if column not in similar:
            raise KeyError(f"column {column!r} not found in similar (expected tl.similar_cells output)")
    if not 0 <= clip_quantile < 1:
        raise ValueError(f"clip_quantile must be in [0, 1), got {clip_quantile}")
    views = species_views(context, target, species_key, species_names)
    (context_name, context_view), (target_name, target_view) = views.items()
    position = target_position(target_view, index)
    xy_context = embedding_coords(context_view, basis)
    xy_target = embedding_coords(target_view, basis)
    idx = similar["context_index"].to_numpy(dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= context_view.n_obs):
        raise IndexError("similar['context_index'] holds positions outside the context data")
    values = similar["similarity"].to_numpy(dtype=float)

    fig, ax_ = new_axes(ax, (6.5, 5.0))
    size = size if size is not None else point_size(len(xy_context) + len(xy_target))
    shown = np.zeros(context_view.n_obs, dtype=bool)
    shown[idx] = True
    ax_.scatter(*xy_target.T, c=_BACKGROUND, s=size, linewidths=0, alpha=0.5, rasterized=True)
    ax_.scatter(*xy_context[~shown].T, c=_BACKGROUND, s=size, linewidths=0, rasterized=True)
    order = np.argsort(values, kind="stable")  # most similar drawn last (on top)
    vmin = float(np.quantile(values, clip_quantile)) if values.size else None
    points = ax_.scatter(
        *xy_context[idx[order]].T,
        c=values[order],
        cmap=cmap,
        vmin=vmin,
        vmax=float(values.max()) if values.size else None,
        s=size,
        linewidths=0,
        rasterized=True,
    )
    ax_.scatter(
        *xy_target[position],
        marker="*",
        s=300,
        c="red",
        edgecolors="white",
        linewidths=1.2,
        zorder=5,
        label=f"{target_name} cell",
    )
    colorbar = fig.colorbar(points, ax=ax_, shrink=0.8, pad=0.02)
    colorbar.set_label(f"likelihood similarity ({context_name} cells)")
    title = f"{target_name} cell {target_view.obs_names[position]}"
    if labels_key is not None:
        if labels_key not in target_view.obs:
            raise KeyError(f"obs[{labels_key!r}] not found in the {target_name} data")
        title += f" ({target_view.obs[labels_key].iloc[position]})"
    ax_.set_title(title)
    ax_.legend(loc="lower right", frameon=False, fontsize=8)
    style_embedding_axes(ax_, basis)
    return finalize(fig, ax_, show, save, return_fig, ax_given=ax is not None)
