"""Categorical colour palettes that stay distinct for many categories and are shared across species."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.colors import to_hex

#: matplotlib's tab10 then the light tab20 shades: familiar, distinct colours for the first categories.
_TAB_BASE = [to_hex(c) for c in mpl.colormaps["tab10"].colors] + [
    to_hex(c) for c in mpl.colormaps["tab20"].colors[1::2]
]


def _base_colors() -> list[str]:
    # tab colours first, then scanpy's Glasbey-like ``godsnot_102``, without near-duplicates and near-white
    from scanpy.plotting.palettes import godsnot_102

    colors: list[str] = []
    for c in [*_TAB_BASE, *godsnot_102]:
        rgb = np.array(mpl.colors.to_rgb(c))
        if rgb.min() > 0.9:  # near white: invisible on a white background
            continue
        if any(np.abs(rgb - np.array(mpl.colors.to_rgb(o))).sum() < 0.12 for o in colors):
            continue
        colors.append(to_hex(c))
    return colors


def _unique(names: Iterable) -> list:
    series = (
        names
        if isinstance(names, pd.Series)
        else pd.Series(list(names) if not isinstance(names, pd.Categorical) else names)
    )
    if isinstance(series.dtype, pd.CategoricalDtype):
        return list(series.cat.categories)
    return list(pd.unique(series.dropna()))


def palette(names: Iterable, colors: Mapping[str, str] | None = None) -> dict[str, str]:
    """Map categories to distinct colours, keeping user-given colours.

    Categories are coloured in order of first appearance (or category order for a categorical), so
    passing the union of the labels of both species gives both species one shared colour per label.
    The palette holds more than 100 distinct colours (tab10 and tab20 first, then scanpy's
    ``godsnot_102``); beyond that, colours of a continuous colormap are used.

    Parameters
    ----------
    names
        Category labels (list, array, Series or Categorical; duplicates and missing values ignored).
    colors
        Fixed colours for some labels (label -> any matplotlib colour); they are kept and not reused.

    Returns
    -------
    dict
        Label -> hex colour for every unique label of ``names`` (and of ``colors``).

    Examples
    --------
    >>> import xspecies as xs
    >>> pal = xs.pl.palette(["alpha", "beta", "alpha", "delta"], colors={"beta": "black"})
    >>> pal["beta"]
    '#000000'
    >>> len(pal)
    3
    """
    fixed = {k: to_hex(v) for k, v in (colors or {}).items()}
    labels = _unique(names)
    out: dict = {}
    base = [c for c in _base_colors() if c not in set(fixed.values())]
    free = iter(base)
    missing = [label for label in labels if label not in fixed]
    extra = len(missing) - len(base)
    if extra > 0:
        cmap = mpl.colormaps["nipy_spectral"]
        base_extra = [to_hex(cmap(x)) for x in np.linspace(0.03, 0.97, extra)]
        free = iter([*base, *base_extra])
    for label in labels:
        out[label] = fixed[label] if label in fixed else next(free)
    for label, c in fixed.items():
        out.setdefault(label, c)
    return out


def text_color(color: str) -> str:
    """Return ``"black"`` or ``"white"``, whichever reads better on a background of ``color``.

    Parameters
    ----------
    color
        Any matplotlib colour.

    Returns
    -------
    str
        ``"black"`` for bright backgrounds (relative luminance > 0.179), else ``"white"``.
    """
    r, g, b = (
        ((c / 12.92) if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4) for c in mpl.colors.to_rgb(color)
    )
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.179 else "white"
