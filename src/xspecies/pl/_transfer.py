"""Label-transfer accuracy per target cell type (compared between methods) and the calibration of its confidence."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from xspecies._docs import doc_ax, doc_params, doc_show_save
from xspecies._validation import check_positive_int

from ._palette import palette as make_palette
from ._utils import finalize, new_axes, panel_grid


def _confusion(report, name: str) -> pd.DataFrame:
    """Confusion table (true x predicted) of a report: a DataFrame, or a dict/object with ``confusion``."""
    if isinstance(report, pd.DataFrame):
        table = report
    elif isinstance(report, Mapping) and "confusion" in report:
        table = report["confusion"]
    elif hasattr(report, "confusion"):
        table = report.confusion
    else:
        raise TypeError(
            f"report {name!r} must be a confusion DataFrame (true x predicted) or hold one under 'confusion'"
        )
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise ValueError(f"report {name!r} holds no confusion table")
    return table.astype(float)


def transfer_scores(confusion: pd.DataFrame, labels: Sequence[str] | None = None) -> tuple[pd.Series, float]:
    """Per-type accuracy and balanced accuracy of a confusion table (true labels x predicted labels).

    Only true labels that can be predicted (that are in ``labels``) are scored.

    Parameters
    ----------
    confusion
        Counts or row percentages, true labels as index, predicted labels as columns.
    labels
        Labels that can be predicted (the context labels); default the columns of ``confusion``.

    Returns
    -------
    tuple of Series and float
        Accuracy in percent per scorable true label, and their mean (balanced accuracy, percent).
    """
    shares = confusion.div(confusion.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0) * 100
    labels = set(shares.columns if labels is None else labels)
    scored = [label for label in shares.index if label in labels]
    acc = pd.Series(
        [shares.at[label, label] if label in shares.columns else 0.0 for label in scored],
        index=scored,
        dtype=float,
    )
    return acc, float(acc.mean()) if len(acc) else float("nan")


@doc_params(show_save=doc_show_save)
def transfer_accuracy(
    reports: Mapping[str, object],
    *,
    context_labels: Sequence[str] | None = None,
    palette: Mapping[str, str] | None = None,
    min_share: float = 0.0,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
):
    """Compare label-transfer methods: per target cell type, the shares of predicted labels.

    One panel per method (e.g. ``{"data-level NNS": ..., "scSpecies": ...}``) with one horizontal
    stacked bar per true target cell type, coloured by predicted label (one colour per label in all
    panels), the accuracy of each type at the bar's end and the balanced accuracy (mean accuracy over
    the true types that can be predicted) in the panel title.

    Parameters
    ----------
    reports
        Method name -> confusion table (true target labels as index, predicted context labels as
        columns; counts or percentages), or a report holding one under ``"confusion"``: the
        :class:`~xspecies.tl.TransferReport` of :func:`xspecies.tl.evaluate_transfer` or the result it
        stored (``adata.uns[key_added]``).
    context_labels
        Labels that can be predicted: true types outside them are not scored (``n/a``). Default:
        all labels predicted by any method.
    palette
        Fixed colours for some predicted labels.
    min_share
        Predicted labels whose share stays below this percentage in every row are merged into
        ``"other"``.
    {show_save}

    Returns
    -------
    list of Axes, Figure or None
        One axes per method (the figure with ``return_fig``; ``None`` when shown).

    Examples
    --------
    The vote of the data-level neighbour search on the demo data (with a trained target model, add
    ``"model": human.uns["xspecies_cell_ontology_class_evaluation"]`` after
    :func:`xspecies.tl.evaluate_transfer` of its transfer):

    >>> import xspecies as xs
    >>> mouse, human = xs.datasets.pancreas("mouse"), xs.datasets.pancreas("human")
    >>> xs.pp.translate_genes(human, "human", "mouse")
    >>> xs.pp.homology_neighbors(human, mouse, labels_key="cell_ontology_class")
    >>> report = xs.tl.evaluate_transfer(
    ...     human, labels_key="cell_ontology_class", key="homology_cell_ontology_class", context=mouse
    ... )
    >>> axes = xs.pl.transfer_accuracy({"data-level NNS": report}, show=False)
    >>> axes[0].get_title().startswith("data-level NNS")
    True
    """
    if not reports:
        raise ValueError("no reports given")
    tables = {name: _confusion(report, name) for name, report in reports.items()}
    shares = {
        name: t.div(t.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0) * 100 for name, t in tables.items()
    }
    if min_share > 0:
        for name, s in shares.items():
            small = [c for c in s.columns if s[c].max() < min_share and c not in s.index]
            if small:
                shares[name] = s.drop(columns=small).assign(other=s[small].sum(axis=1))
    rows = list(pd.unique(pd.concat([s.index.to_series() for s in shares.values()]).astype(str)))
    rows.sort()
    predicted = pd.concat([t.columns.to_series() for t in tables.values()]).astype(str)
    scorable = list(pd.unique(predicted)) if context_labels is None else [str(c) for c in context_labels]
    colors = make_palette(sorted(pd.unique(predicted)), {"other": "#bdbdbd", **(palette or {})})

    positions = np.arange(len(rows))
    fig, axes = panel_grid(len(shares), len(shares), (5.2, 0.38 * len(rows) + 1.6), sharey=True)
    for ax, (name, s) in zip(axes, shares.items(), strict=True):
        s = s.rename(index=str, columns=str).reindex(index=rows, fill_value=0.0)
        acc, balanced = transfer_scores(tables[name].rename(index=str, columns=str), scorable)
        left = np.zeros(len(rows))
        for column in s.columns:
            ax.barh(positions, s[column], left=left, color=colors[column], height=0.8, linewidth=0)
            left += s[column].to_numpy()
        for y, row in enumerate(rows):
            text = f"{acc[row]:.0f}%" if row in acc.index else "n/a"
            ax.text(101, y, text, va="center", fontsize=8)
        ax.set_xlim(0, 112)
        ax.set_xlabel("% of cells")
        ax.set_title(f"{name}\nbalanced accuracy {balanced:.1f}%", fontsize=10)
    axes[0].set_yticks(positions, rows)
    axes[0].set_ylim(len(rows) - 0.5, -0.5)  # first type on top (shared by all panels)
    axes[0].set_ylabel("true cell type")
    used = [c for c in colors if any(c in s.columns.astype(str) for s in shares.values())]
    axes[-1].legend(
        handles=[Patch(color=colors[c], label=c) for c in used],
        title="predicted",
        loc="center left",
        bbox_to_anchor=(1.08, 0.5),
        frameon=False,
        fontsize=8,
    )
    return finalize(fig, axes, show, save, return_fig)


@doc_params(ax=doc_ax, show_save=doc_show_save)
def reliability(
    data,
    *,
    key: str | None = None,
    min_cells: int = 1,
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    return_fig: bool = False,
):
    """Reliability diagram of a label transfer's confidence: accuracy against mean confidence per bin.

    A calibrated confidence lies on the diagonal: of the cells given confidence 0.9, 90 % carry the
    right label. Each bin is a dot at (mean confidence, accuracy), its area growing with the number of
    cells; the expected calibration error is in the title.

    Parameters
    ----------
    data
        The :class:`~xspecies.tl.TransferReport` of :func:`xspecies.tl.evaluate_transfer`, the result
        it stored (``adata.uns[key_added]``), the AnnData holding it (with ``key``), or a reliability
        table (columns ``"n_cells"``, ``"confidence"``, ``"accuracy"``).
    key
        With an AnnData: the ``key_added`` of :func:`xspecies.tl.evaluate_transfer` (e.g.
        ``"xspecies_cell_ontology_class_evaluation"``).
    min_cells
        Bins with fewer cells are not drawn (they still count in the error of the title).
    title
        Title of the axes (default: the expected calibration error and the number of cells).
    {ax}
    {show_save}

    Returns
    -------
    Axes, Figure or None
        The axes (the figure with ``return_fig``; ``None`` when shown).

    Raises
    ------
    ValueError
        When the report holds no reliability table (the transfer wrote no confidence).

    Examples
    --------
    >>> import pandas as pd
    >>> import xspecies as xs
    >>> from anndata import AnnData
    >>> obs = pd.DataFrame(
    ...     {
    ...         "truth": ["a", "a", "b", "b"],
    ...         "xspecies_truth": ["a", "a", "b", "a"],
    ...         "xspecies_truth_confidence": [0.95, 0.95, 0.6, 0.6],
    ...     },
    ...     index=list("wxyz"),
    ... )
    >>> adata = AnnData(obs=obs)
    >>> report = xs.tl.evaluate_transfer(adata, labels_key="truth")
    >>> ax = xs.pl.reliability(adata, key="xspecies_truth_evaluation", show=False)
    >>> ax.get_title()
    'ECE 0.075 (4 cells)'
    """
    from xspecies._results import read_result
    from xspecies.tl._evaluate import expected_calibration_error

    if isinstance(data, AnnData):
        if key is None:
            raise ValueError("pass key: the key_added of xspecies.tl.evaluate_transfer (uns key)")
        data = read_result(data, key, "reliability", "tl.evaluate_transfer")
    if isinstance(data, Mapping):
        data = data.get("reliability")
    table = getattr(data, "reliability", data)
    if not isinstance(table, pd.DataFrame):
        raise TypeError(
            f"expected a reliability table, a TransferReport or an AnnData, got {type(table).__name__}"
        )
    if table.empty:
        raise ValueError(
            "no reliability table: the evaluated transfer wrote no confidence (obs[key + '_confidence'])"
        )
    check_positive_int("min_cells", min_cells)
    fig, ax_ = new_axes(ax, (4.2, 4.0))
    ax_.plot([0, 1], [0, 1], color="#888888", linestyle="--", linewidth=1, label="calibrated")
    shown = table[table["n_cells"] >= min_cells]
    sizes = 20 + 280 * shown["n_cells"] / table["n_cells"].max()
    ax_.plot(shown["confidence"], shown["accuracy"], color="#1f77b4", linewidth=1)
    ax_.scatter(shown["confidence"], shown["accuracy"], s=sizes, color="#1f77b4", zorder=3, label="bins")
    ax_.set_xlim(-0.02, 1.02)
    ax_.set_ylim(-0.02, 1.02)
    ax_.set_aspect("equal")
    ax_.set_xlabel("confidence (mean of the bin)")
    ax_.set_ylabel("share of right labels")
    n_cells = int(table["n_cells"].sum())
    ax_.set_title(
        title if title is not None else f"ECE {expected_calibration_error(table):.3f} ({n_cells} cells)"
    )
    ax_.legend(loc="upper left", frameon=False, fontsize=8)
    return finalize(fig, ax_, show, save, return_fig, ax_given=ax is not None)
