"""Shared figure handling of the plotting functions: axes creation, showing, saving, returning."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from xspecies._docs import doc_params, doc_show_save


def new_axes(ax: Axes | None = None, figsize: tuple[float, float] = (5.0, 4.0)) -> tuple[Figure, Axes]:
    """Return ``(figure, axes)``: the given axes and its figure, or a new single-panel figure.

    Parameters
    ----------
    ax
        Existing axes to draw into, or ``None`` for a new figure of size ``figsize``.
    figsize
        Size in inches of a new figure.

    Returns
    -------
    tuple of Figure and Axes
        The figure holding the axes and the axes to draw into.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.get_figure(), ax


def panel_grid(
    n_panels: int, ncols: int = 3, panel_size: tuple[float, float] = (4.0, 3.5), **subplots_kw
) -> tuple[Figure, list[Axes]]:
    """Create a figure with ``n_panels`` axes on a grid; unused grid cells are hidden.

    Parameters
    ----------
    n_panels
        Number of panels needed (>= 1).
    ncols
        Maximum number of columns.
    panel_size
        Width and height of one panel in inches.
    **subplots_kw
        Passed to :func:`matplotlib.pyplot.subplots` (e.g. ``sharex``); the layout is
        ``"constrained"`` unless given.

    Returns
    -------
    tuple of Figure and list of Axes
        The figure and its first ``n_panels`` axes, row by row.
    """
    if n_panels < 1:
        raise ValueError("nothing to plot: no panels requested")
    ncols = max(1, min(ncols, n_panels))
    nrows = -(-n_panels // ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
        squeeze=False,
        **{"layout": "constrained", **subplots_kw},
    )
    flat = list(axes.ravel())
    for extra in flat[n_panels:]:
        extra.set_visible(False)
    return fig, flat[:n_panels]


@doc_params(show_save=doc_show_save)
def finalize(
    fig: Figure,
    ax: Axes | list[Axes],
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
    *,
    ax_given: bool = False,
):
    """Save and/or show a finished figure and return what a plotting function returns.

    Parameters
    ----------
    fig
        The figure drawn.
    ax
        The axes (or list of axes) drawn.
    {show_save}
    ax_given
        Whether the caller passed its own axes (then the figure is never shown by default).

    Returns
    -------
    Figure, Axes, list of Axes or None
        The figure when ``return_fig``; otherwise the axes when the figure is not shown,
        ``None`` when it is shown.

    Examples
    --------
    A custom plot that follows the xspecies plotting conventions:

    >>> import matplotlib.pyplot as plt
    >>> import xspecies as xs
    >>> def curve(values, ax=None, show=None, save=None, return_fig=False):
    ...     fig, drawn = (ax.figure, ax) if ax is not None else plt.subplots()
    ...     drawn.plot(values)
    ...     return xs.pl.finalize(fig, drawn, show, save, return_fig, ax_given=ax is not None)
    >>> ax = curve([3, 1, 2], show=False)
    >>> fig = curve([3, 1, 2], save="figures/curve.png", return_fig=True)
    """
    if save is not None:
        path = Path(save)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight", dpi=150)
    if return_fig:
        return fig
    if show is None:
        show = not ax_given and plt.get_backend().lower() != "agg"
    if show:
        plt.show()
        return None
    return ax
