"""Evaluation of a label transfer against known target labels."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from anndata import AnnData

from xspecies._results import store_result
from xspecies._validation import check_positive_int

#: columns of :attr:`TransferReport.reliability`
RELIABILITY_COLUMNS = ["lower", "upper", "n_cells", "confidence", "accuracy"]


def reliability_table(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Mean confidence and accuracy per equal-width confidence bin (non-empty bins only).

    Parameters
    ----------
    confidence
        Probability that each label is right, in [0, 1].
    correct
        Whether each label is right.
    n_bins
        Number of bins of [0, 1] (the last one includes 1).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`RELIABILITY_COLUMNS`.

    Examples
    --------
    >>> import numpy as np
    >>> table = reliability_table(np.array([0.05, 0.95, 0.95]), np.array([False, True, False]), n_bins=2)
    >>> table[["n_cells", "confidence", "accuracy"]].to_numpy().tolist()
    [[1.0, 0.05, 0.0], [2.0, 0.95, 0.5]]
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    rows = [
        [
            edges[b],
            edges[b + 1],
            float(np.sum(which == b)),
            confidence[which == b].mean(),
            correct[which == b].mean(),
        ]
        for b in np.unique(which)
    ]
    return pd.DataFrame(rows, columns=RELIABILITY_COLUMNS).astype(float)


def expected_calibration_error(table: pd.DataFrame) -> float:
    """Cell-weighted mean of ``|confidence - accuracy|`` over the bins of a :func:`reliability_table`.

    Parameters
    ----------
    table
        A reliability table.

    Returns
    -------
    float
        The expected calibration error.

    Examples
    --------
    >>> import numpy as np
    >>> table = reliability_table(np.array([0.05, 0.95, 0.95]), np.array([False, True, False]), n_bins=2)
    >>> round(expected_calibration_error(table), 4)
    0.3167
    """
    gap = (table["confidence"] - table["accuracy"]).abs()
    return float((gap * table["n_cells"]).sum() / table["n_cells"].sum())


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
    novel_types
        True target types absent from the context (no transferred label can be right).
    flag_rate
        Share of the cells of every true type flagged as novel (``obs[key + "_novel"]``); empty when
        the transfer wrote no flag.
    false_flag_rate
        Share of the cells of shared types flagged as novel (``None`` without a flag).
    novel_flag_rate
        Share of the cells of novel types flagged as novel (``None`` without a flag or novel types).
    ece
        Expected calibration error of the confidence (``obs[key + "_confidence"]``, the probability that
        the transferred label is right) on the cells of shared types: the mean over equal-width
        confidence bins, weighted by their cell counts, of ``|mean confidence - accuracy|`` (``None``
        without a confidence).
    reliability
        One row per non-empty confidence bin (``"lower"``, ``"upper"``, ``"n_cells"``,
        ``"confidence"``: mean confidence, ``"accuracy"``: share of right labels), the table behind
        ``ece`` and :func:`xspecies.pl.reliability`; empty without a confidence.

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
    novel_types: list[str] = field(default_factory=list)
    flag_rate: pd.Series = field(default_factory=lambda: pd.Series(dtype=float, name="flag_rate"))
    false_flag_rate: float | None = None
    novel_flag_rate: float | None = None
    ece: float | None = None
    reliability: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=RELIABILITY_COLUMNS))

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
            "novel_types": list(self.novel_types),
            "flag_rate": {str(k): float(v) for k, v in self.flag_rate.items()},
            "false_flag_rate": self.false_flag_rate,
            "novel_flag_rate": self.novel_flag_rate,
            "ece": self.ece,
        }


def evaluate_transfer(
    adata: AnnData,
    *,
    labels_key: str,
    key: str | None = None,
    context=None,
    context_labels_key: str | None = None,
    n_bins: int = 10,
    key_added: str | None = None,
) -> TransferReport:
    """Confusion matrix, balanced accuracy, per-type recall, calibration and novel flags of a transfer.

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
    n_bins
        Equal-width confidence bins of the reliability table and the expected calibration error.
    key_added
        ``adata.uns`` key of the stored report (default ``key + "_evaluation"``).

    Returns
    -------
    TransferReport
        Confusion matrix (%), balanced accuracy and accuracy over the cells whose true type also
        exists in the context, and per-type recall; where the transfer wrote them, the calibration of
        ``obs[key + "_confidence"]`` on those cells (expected calibration error and reliability table)
        and the share of the cells of each true type flagged by ``obs[key + "_novel"]``. Cells whose true or predicted label is missing
        (NaN) are left out of every figure, never counted as a type of their own; their number is
        ``n_missing`` (and a UserWarning says so). Also stored in ``adata.uns[key_added]``:
        ``"params"`` and the fields of :meth:`TransferReport.to_dict` with ``"confusion"`` as a
        DataFrame (read by :func:`xspecies.pl.confusion_matrix` and :func:`xspecies.pl.transfer_accuracy`)
        and ``"reliability"`` as a DataFrame (read by :func:`xspecies.pl.reliability`).

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
    check_positive_int("n_bins", n_bins)
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
    calibration = {}
    if f"{pred_key}_confidence" in adata.obs:
        confidence = adata.obs[f"{pred_key}_confidence"].to_numpy(dtype=float)[~missing][mask]
        table = reliability_table(confidence, correct, n_bins)
        calibration.update(reliability=table, ece=expected_calibration_error(table))
    if f"{pred_key}_novel" in adata.obs:
        flagged = adata.obs[f"{pred_key}_novel"].to_numpy(dtype=bool)[~missing]
        calibration["flag_rate"] = pd.Series(
            {t: float(flagged[true == t].mean()) for t in sorted(set(true))}, name="flag_rate"
        )
        calibration["false_flag_rate"] = float(flagged[mask].mean())
        if not mask.all():
            calibration["novel_flag_rate"] = float(flagged[~mask].mean())
    report = TransferReport(
        confusion=confusion,
        balanced_accuracy=float(recall.mean()),
        accuracy=float(correct.mean()),
        recall=recall,
        shared_types=shared,
        n_cells=int(mask.sum()),
        n_missing=int(missing.sum()),
        novel_types=sorted(set(true) - set(shared)),
        **calibration,
    )
    params = {"key": pred_key, "labels_key": true_key, "context_labels_key": ckey or "", "n_bins": n_bins}
    stored = {k: v for k, v in report.to_dict().items() if v is not None}  # h5ad cannot write None
    store_result(
        adata,
        key_added or f"{pred_key}_evaluation",
        params,
        confusion=confusion,
        reliability=report.reliability,
        **stored,
    )
    return report
