"""Evaluation of a label transfer against known target labels."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData

from ._results import store_result


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
    >>> import pandas as pd
    >>> import xspecies as xs
    >>> from anndata import AnnData
    >>> obs = pd.DataFrame(
    ...     {"truth": ["a", "a", "b", "b"], "xspecies_truth": ["a", "a", "b", "a"]}, index=list("wxyz")
    ... )
    >>> report = xs.tl.evaluate_transfer(AnnData(obs=obs), labels_key="truth")
    >>> report.balanced_accuracy, report.accuracy, report.n_cells
    (0.75, 0.75, 4)
    >>> report.recall.to_dict()
    {'a': 1.0, 'b': 0.5}
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
        >>> import pandas as pd
        >>> import xspecies as xs
        >>> from anndata import AnnData
        >>> obs = pd.DataFrame({"truth": ["a", "a", "b"], "xspecies_truth": ["a", "b", "b"]}, index=list("xyz"))
        >>> report = xs.tl.evaluate_transfer(AnnData(obs=obs), labels_key="truth")
        >>> json.dumps(report.to_dict()["recall"])
        '{"a": 0.5, "b": 1.0}'
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
    *,
    labels_key: str,
    key: str | None = None,
    context=None,
    context_labels_key: str | None = None,
    key_added: str | None = None,
) -> TransferReport:
    """Confusion matrix, balanced accuracy and per-type recall of transferred labels.

    Parameters
    ----------
    adata
        Target AnnData with the transferred labels and the true labels.
    labels_key
        ``obs`` column with the true target labels.
    key
        The ``key_added`` of :func:`xspecies.tl.transfer_labels`: the ``obs`` column with the transferred
        labels (default ``"xspecies_<labels_key>"``, the transfer's default when both species use the same
        label column). Any ``obs`` column of predicted labels works, e.g. the vote of
        :func:`xspecies.pp.homology_neighbors` (``"homology_<labels_key>"``).
    context
        Context AnnData (or model) whose labels define which types are shared; default: the predicted
        categories.
    context_labels_key
        Label column of the context (default: the ``labels_key`` the transfer recorded in
        ``uns[key]["params"]``, else ``labels_key``).
    key_added
        ``adata.uns`` key of the stored report (default ``key + "_evaluation"``).

    Returns
    -------
    TransferReport
        Confusion matrix (%), balanced accuracy and accuracy over the cells whose true type also
        exists in the context, and per-type recall. Cells whose true or predicted label is missing
        (NaN) are left out of every figure, never counted as a type of their own; their number is
        ``n_missing`` (and a UserWarning says so). Also stored in ``adata.uns[key_added]``:
        ``"params"`` and the fields of :meth:`TransferReport.to_dict` with ``"confusion"`` as a
        DataFrame (read by :func:`xspecies.pl.confusion_matrix` and :func:`xspecies.pl.transfer_accuracy`).

    Raises
    ------
    KeyError
        When a label column is not found.
    ValueError
        When every cell lacks a label, or no true type is present in the context.

    Examples
    --------
    The vote of the data-level neighbour search, evaluated against the annotation:

    >>> import xspecies as xs
    >>> mouse, human = xs.datasets.pancreas("mouse"), xs.datasets.pancreas("human")
    >>> xs.pp.translate_genes(human, "human", "mouse")
    >>> xs.pp.homology_neighbors(human, mouse, labels_key="cell_ontology_class")
    >>> report = xs.tl.evaluate_transfer(
    ...     human, labels_key="cell_ontology_class", key="homology_cell_ontology_class", context=mouse
    ... )
    >>> 0.5 < report.balanced_accuracy <= 1
    True
    >>> sorted(human.uns["homology_cell_ontology_class_evaluation"])[:3]
    ['accuracy', 'balanced_accuracy', 'confusion']
    """
    pred_key = key or f"xspecies_{labels_key}"
    true_key = labels_key
    for column in (pred_key, true_key):
        if column not in adata.obs:
            raise KeyError(f"{column!r} is not a column of adata.obs.")
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
    ckey = None
    if context is not None:
        context_adata = context if isinstance(context, AnnData) else context.adata
        recorded = adata.uns.get(pred_key, {})
        recorded = recorded.get("params", {}) if isinstance(recorded, Mapping) else {}
        ckey = context_labels_key or recorded.get("labels_key") or true_key
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
    report = TransferReport(
        confusion=confusion,
        balanced_accuracy=float(recall.mean()),
        accuracy=float(correct.mean()),
        recall=recall,
        shared_types=shared,
        n_cells=int(mask.sum()),
        n_missing=int(missing.sum()),
    )
    params = {"key": pred_key, "labels_key": true_key, "context_labels_key": ckey or ""}
    store_result(
        adata, key_added or f"{pred_key}_evaluation", params, confusion=confusion, **report.to_dict()
    )
    return report
