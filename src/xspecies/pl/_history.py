"""Training history of a model: one panel per metric, training and validation curves together."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from xspecies._docs import doc_params, doc_show_save

from ._utils import finalize, panel_grid

_SPLITS = ("train", "validation")


def _metric_and_split(key: str) -> tuple[str, str]:
    """``"elbo_train"`` -> ``("elbo", "train")``, ``"train_loss_epoch"`` -> ``("loss", "train")``."""
    tokens = key.split("_")
    split = next((t for t in tokens if t in _SPLITS), "")
    metric = "_".join(t for t in tokens if t not in _SPLITS and t != "epoch")
    return metric or key, split


def _history_dict(model) -> Mapping[str, object]:
    history = model if isinstance(model, Mapping) else getattr(model, "history", None)
    if not history:
        raise ValueError("no training history: train the model first (model.history is empty)")
    return history


@doc_params(show_save=doc_show_save)
def history(
    model,
    *,
    keys: Sequence[str] | None = None,
    skip_first: int = 0,
    log_scale: bool = False,
    ncols: int = 3,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
):
    """Plot the training history of a model, one panel per metric (training and validation together).

    Parameters
    ----------
    model
        A trained scvi-tools model (its ``history``: metric name -> DataFrame indexed by epoch) or
        such a dict.
    keys
        History keys to plot; default all per-epoch keys (keys with ``step`` are skipped).
    skip_first
        Number of first epochs left out (the first epochs often dwarf the rest).
    log_scale
        Logarithmic y axis (only for metrics that stay positive).
    ncols
        Panels per row.
    {show_save}

    Returns
    -------
    list of Axes, Figure or None
        One axes per metric, titled by the metric (the figure with ``return_fig``; ``None`` when shown).

    Examples
    --------
    A history of the layout of a trained scvi-tools model (``xs.pl.history(context)`` with a trained
    model):

    >>> import pandas as pd
    >>> import xspecies as xs
    >>> history = {
    ...     "elbo_train": pd.DataFrame({"elbo_train": [900.0, 700.0, 650.0]}),
    ...     "elbo_validation": pd.DataFrame({"elbo_validation": [950.0, 760.0, 700.0]}),
    ... }
    >>> axes = xs.pl.history(history, show=False)
    >>> [ax.get_title() for ax in axes]
    ['elbo']
    """
    hist = _history_dict(model)
    if keys is None:
        keys = [k for k in hist if "step" not in k]
    else:
        keys = [keys] if isinstance(keys, str) else list(keys)
        unknown = [k for k in keys if k not in hist]
        if unknown:
            raise KeyError(f"history keys {unknown} not found (available: {sorted(hist)})")
    groups: dict[str, list[tuple[str, pd.Series]]] = {}
    for key in keys:
        frame = pd.DataFrame(hist[key])
        series = pd.to_numeric(frame.iloc[:, 0], errors="coerce").iloc[skip_first:].dropna()
        if series.empty:
            continue
        metric, split = _metric_and_split(key)
        groups.setdefault(metric, []).append((split or key, series))
    if not groups:
        raise ValueError(f"no numeric history to plot for keys {keys}")
    fig, axes = panel_grid(len(groups), ncols, (4.2, 3.2))
    for ax, (metric, curves) in zip(axes, groups.items(), strict=True):
        for label, series in curves:
            ax.plot(np.asarray(series.index, dtype=float), series.to_numpy(), marker=".", ms=3, label=label)
        if log_scale and all((s > 0).all() for _, s in curves):
            ax.set_yscale("log")
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        if len(curves) > 1 or curves[0][0] in _SPLITS:
            ax.legend(fontsize=8, frameon=False)
    return finalize(fig, axes, show, save, return_fig)
