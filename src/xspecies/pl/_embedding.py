"""Joint 2D embedding of context and target cells with one colour per label shared by both species."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from xspecies._docs import doc_params, doc_show_save

from ._palette import palette as make_palette
from ._utils import finalize, panel_grid

_MISSING_COLOR = "#d3d3d3"


def species_views(
    context: AnnData,
    target: AnnData | None = None,
    species_key: str = "species",
    names: Sequence[str] | None = None,
) -> dict[str, AnnData]:
    """Return ``{species name: AnnData}`` for context and target, given separately or concatenated.

    Parameters
    ----------
    context
        Context AnnData, or one AnnData holding both species when ``target`` is ``None``.
    target
        Target AnnData, or ``None`` when ``context`` holds both species.
    species_key
        Column of ``obs`` naming the species of each cell in a concatenated AnnData.
    names
        Names of the two species, context first. Defaults to ``("context", "target")`` for two
        AnnData, and to the order of appearance in ``obs[species_key]`` for a concatenated one
        (where ``names`` also selects and orders the species).

    Returns
    -------
    dict
        Species name -> AnnData (views for a concatenated input), context first.
    """
    if target is not None:
        names = tuple(names) if names is not None else ("context", "target")
        if len(names) != 2:
            raise ValueError(f"names must hold two species names (context, target), got {names!r}")
        return {names[0]: context, names[1]: target}
    if species_key not in context.obs:
        raise KeyError(
            f"obs[{species_key!r}] not found: pass target= or a concatenated AnnData with a species column"
        )
    column = context.obs[species_key].astype(str)
    present = list(pd.unique(column))
    names = list(names) if names is not None else present
    unknown = [n for n in names if n not in present]
    if unknown:
        raise ValueError(f"species {unknown} not found in obs[{species_key!r}] (present: {present})")
    return {n: context[(column == n).to_numpy()] for n in names}


def embedding_coords(adata: AnnData, basis: str) -> np.ndarray:
    """Return the first two columns of ``adata.obsm[basis]`` (KeyError naming the basis when absent)."""
    if basis not in adata.obsm:
        raise KeyError(
            f"obsm[{basis!r}] not found (available: {list(adata.obsm)}); compute it first, e.g. sc.tl.umap"
        )
    coords = np.asarray(adata.obsm[basis])
    if coords.ndim != 2 or coords.shape[1] < 2:
        raise ValueError(f"obsm[{basis!r}] must have at least two columns, got shape {coords.shape}")
    return coords[:, :2]


def point_size(n_points: int) -> float:
    """Marker area that keeps a scatter of ``n_points`` readable (scanpy's 120000 / n rule, capped)."""
    return float(min(60.0, max(0.5, 120000 / max(n_points, 1))))


def style_embedding_axes(ax: Axes, basis: str) -> None:
    """Remove ticks, name the axes after the basis (``X_umap`` -> ``UMAP 1``) and keep the aspect ratio."""
    name = basis.removeprefix("X_").upper()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{name} 1")
    ax.set_ylabel(f"{name} 2")
    ax.set_aspect("equal", adjustable="datalim")


def _label_columns(color: str | Sequence[str], species: Sequence[str]) -> dict[str, str]:
    keys = [color] * len(species) if isinstance(color, str) else list(color)
    if len(keys) != len(species):
        raise ValueError(f"color must be one obs key or one per species ({len(species)}), got {color!r}")
    return dict(zip(species, keys, strict=True))


@doc_params(show_save=doc_show_save)
def embedding_2d(
    context: AnnData,
    target: AnnData | None = None,
    *,
    color: str | Sequence[str] = "cell_type",
    basis: str = "X_umap",
    species_key: str = "species",
    species_names: Sequence[str] | None = None,
    layout: Literal["split", "joint"] = "split",
    palette: Mapping[str, str] | None = None,
    size: float | None = None,
    legend_loc: Literal["right margin", "none"] = "right margin",
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
):
    """Plot context and target cells on a shared 2D embedding, one colour per label in both species.

    Both species must be embedded in the same 2D space (e.g. a UMAP of the aligned latent space of
    the concatenated data). A label present in both species has the same colour in every panel.

    Parameters
    ----------
    context
        Context AnnData, or one AnnData with both species when ``target`` is ``None``
        (species in ``obs[species_key]``).
    target
        Target AnnData, or ``None`` (see ``context``).
    color
        Categorical ``obs`` column to colour by; a pair ``(context_key, target_key)`` when the
        species use different columns (e.g. ``("cell_type", "xspecies_cell_type")``).
    basis
        Key of ``obsm`` with the 2D coordinates (first two columns used).
    species_key
        Species column of a concatenated AnnData.
    species_names
        Names of the species (context first), used as panel titles.
    layout
        ``"split"``: one panel per species; ``"joint"``: one panel with both species, context drawn
        as circles and target as triangles.
    palette
        Fixed colours for some labels (label -> colour); others get colours from :func:`palette`.
    size
        Marker area; default from the number of cells.
    legend_loc
        ``"right margin"`` (legend of all labels right of the last panel) or ``"none"``.
    ax
        Axes to draw into: one for ``layout="joint"``, one per species for ``"split"``.
    {show_save}

    Returns
    -------
    list of Axes, Axes, Figure or None
        The panel axes (a list for ``"split"``), the figure with ``return_fig``, ``None`` when shown.

    Examples
    --------
    Both species on a made-up shared embedding (in practice a UMAP of the aligned latent space):

    >>> import numpy as np
    >>> import xspecies as xs
    >>> mouse, human = xs.datasets.pancreas("mouse"), xs.datasets.pancreas("human")
    >>> rng = np.random.default_rng(0)
    >>> mouse.obsm["X_umap"] = rng.normal(size=(mouse.n_obs, 2))
    >>> human.obsm["X_umap"] = rng.normal(size=(human.n_obs, 2))
    >>> axes = xs.pl.embedding_2d(
    ...     mouse, human, color="cell_ontology_class", species_names=("mouse", "human"), show=False
    ... )
    >>> axes[1].get_title()
    'human (cell_ontology_class, 2,142 cells)'
    """
    if layout not in ("split", "joint"):
        raise ValueError(f"layout must be 'split' or 'joint', got {layout!r}")
    if legend_loc not in ("right margin", "none"):
        raise ValueError(f"legend_loc must be 'right margin' or 'none', got {legend_loc!r}")
    views = species_views(context, target, species_key, species_names)
    keys = _label_columns(color, list(views))
    labels = {}
    for name, adata in views.items():
        if keys[name] not in adata.obs:
            raise KeyError(f"obs[{keys[name]!r}] not found in the {name} data")
        labels[name] = adata.obs[keys[name]]
    all_labels = pd.concat([s.astype("category").cat.categories.to_series() for s in labels.values()])
    colors = make_palette(all_labels, palette)
    coords = {name: embedding_coords(adata, basis) for name, adata in views.items()}
    size = size if size is not None else point_size(sum(len(c) for c in coords.values()))

    n_panels = 1 if layout == "joint" else len(views)
    axes_given = ax is not None
    if ax is None:
        fig, axes = panel_grid(n_panels, 3, (5, 5))
    else:
        axes = [ax] if isinstance(ax, Axes) else list(ax)
        if len(axes) != n_panels:
            raise ValueError(f"layout={layout!r} needs {n_panels} axes, got {len(axes)}")
        fig = axes[0].get_figure()

    markers = dict(zip(views, ["o", "^"], strict=False))
    for i, name in enumerate(views):
        target_ax = axes[0] if layout == "joint" else axes[i]
        point_colors = labels[name].astype(object).map(colors).fillna(_MISSING_COLOR).to_numpy()
        order = np.random.default_rng(0).permutation(len(point_colors))  # no category drawn on top
        target_ax.scatter(
            *coords[name][order].T,
            c=point_colors[order],
            s=size,
            marker=markers[name] if layout == "joint" else "o",
            linewidths=0,
            alpha=0.8 if layout == "joint" else 1.0,
            rasterized=True,
        )
        if layout == "split":
            target_ax.set_title(f"{name} ({keys[name]}, {len(point_colors):,} cells)")
    if layout == "joint":
        axes[0].set_title(" + ".join(views))
    for a in axes:
        style_embedding_axes(a, basis)
    if legend_loc == "right margin":
        present = set().union(*(set(s.dropna().astype(str)) for s in labels.values()))
        handles = [
            Line2D(
                [], [], marker="o", linestyle="", markersize=7, markerfacecolor=c, markeredgewidth=0, label=k
            )
            for k, c in colors.items()
            if str(k) in present
        ]
        if layout == "joint":
            handles += [
                Line2D([], [], marker=markers[n], linestyle="", markersize=7, color="grey", label=n)
                for n in views
            ]
        ncol = 1 if len(handles) <= 20 else 2
        axes[-1].legend(
            handles=handles,
            loc="center left",
            bbox_to_anchor=(1.02, 0.5),
            frameon=False,
            ncol=ncol,
            fontsize=8,
        )
    result = axes[0] if layout == "joint" else axes
    return finalize(fig, result, show, save, return_fig, ax_given=axes_given)
