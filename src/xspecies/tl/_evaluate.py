"""Evaluation of a label transfer against known target labels."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData


@dataclass
class TransferReport:
    """Result of :func:`evaluate_transfer`.

    The parameters are also the attributes of the report.

    Parameters
    ----------
    confusion
        Percentage of the cells of each true type (rows, sorted) given each predicted label (columns,
        sorted); rows sum to 100.
    balanced_accuracy
        Mean recall over the types present in both species.
    accuracy
        Share of correctly labelled cells among the cells of shared types.
    recall
        Recall of every shared type.
    shared_types
        Types present in both species (the evaluation set).
    n_cells
        Number of evaluated cells (cells of shared types).
    n_missing
        Cells left out because their true or predicted label is missing.

    Examples
    --------
    >>> import xspecies as xs
    >>> report = xs.tl.evaluate_transfer(
    ...     human, "xspecies_cell_ontology_class", "cell_ontology_class", context=mouse
    ... )
    >>> report.balanced_accuracy, report.accuracy, report.n_cells
    >>> report.recall.sort_values().head()
    >>> xs.pl.confusion_matrix(report.confusion)
    """

    confusion: pd.DataFrame
    balanced_accuracy: float
    accuracy: float
    recall: pd.Series
    shared_types: list[str]
    n_cells: int
    n_missing: int = 0

    def to_dict(self) -> dict:
        """Plain-Python version (JSON-serialisable).

        Returns
        -------
        dict
            The figures with the recall as a ``{type: recall}`` mapping.

        Examples
        --------
        >>> import json
        >>> report = xs.tl.evaluate_transfer(human, "xspecies_cell_ontology_class", "cell_ontology_class")
        >>> json.dumps(report.to_dict(), indent=2)
        """
        return {
            "balanced_accuracy": self.balanced_accuracy,
            "accuracy": self.accuracy,
            "recall": {str(k): float(v) for k, v in self.recall.items()},
            "shared_types": list(self.shared_types),
            "n_cells": self.n_cells,
            "n_missing": self.n_missing,
        }


def evaluate_transfer(
    adata: AnnData,
    pred_key: str,
    true_key: str,
    context=None,
    context_labels_key: str | None = None,
) -> TransferReport:
    """Confusion matrix, balanced accuracy and per-type recall of transferred labels.

    Parameters
    ----------
    adata
        Target AnnData with predicted and true labels.
    pred_key
        ``obs`` column with the transferred labels (e.g. ``"xspecies_cell_ontology_class"``).
    true_key
        ``obs`` column with the true target labels.
    context
        Context AnnData (or model) whose labels define which types are shared; default: the predicted
        categories.
    context_labels_key
        Label column of the context (default ``true_key``).

    Returns
    -------
    TransferReport
        Confusion matrix (%), balanced accuracy and accuracy over the cells whose true type also
        exists in the context, and per-type recall. Cells whose true or predicted label is missing
        (NaN) are left out of every figure, never counted as a type of their own; their number is
        ``n_missing`` (and a UserWarning says so).

    Examples
    --------
    >>> report = xs.tl.evaluate_transfer(human, "xspecies_cell_ontology_class", "cell_ontology_class", context=mouse)
    >>> report.balanced_accuracy
    """
    for key in (pred_key, true_key):
        if key not in adata.obs:
            raise KeyError(f"{key!r} is not a column of adata.obs.")
    missing = (adata.obs[pred_key].isna() | adata.obs[true_key].isna()).to_numpy()
    if missing.all():
        raise ValueError(
            f"every cell lacks a true (obs[{true_key!r}]) or predicted (obs[{pred_key!r}]) label."
        )
    if missing.any():
        warnings.warn(
            f"evaluate_transfer: {int(missing.sum())} cells without a true or predicted label are left out.",
            UserWarning,
            stacklevel=2,
        )
    pred = adata.obs[pred_key].astype(str).to_numpy()[~missing]
    true = adata.obs[true_key].astype(str).to_numpy()[~missing]
    if context is not None:
        context_adata = context if isinstance(context, AnnData) else context.adata
        ckey = context_labels_key or true_key
        if ckey not in context_adata.obs:
            raise KeyError(f"{ckey!r} is not a column of the context's obs.")
        context_types = set(context_adata.obs[ckey].dropna().astype(str))
    else:
        context_types = set(pred)
    confusion = (
        pd.crosstab(pd.Series(true, name=true_key), pd.Series(pred, name=pred_key), normalize="index") * 100
    )
    confusion = confusion.sort_index().reindex(sorted(confusion.columns), axis=1)
    shared = sorted(set(true) & context_types)
    if not shared:
        raise ValueError("No true target type is present in the context: nothing to evaluate.")
    mask = np.isin(true, shared)
    correct = pred[mask] == true[mask]
    recall = pd.Series({t: float(np.mean(pred[true == t] == t)) for t in shared}, name="recall")
    return TransferReport(
        confusion=confusion,
        balanced_accuracy=float(recall.mean()),
        accuracy=float(correct.mean()),
        recall=recall,
        shared_types=shared,
        n_cells=int(mask.sum()),
        n_missing=int(missing.sum()),
    )
