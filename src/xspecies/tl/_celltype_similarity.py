"""Similarity of target cell types to context cell types from likelihood differences."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from xspecies._docs import doc_key_added_table, doc_model_pair, doc_params, doc_random_state_sampling
from xspecies._results import store_result
from xspecies._validation import check_int, check_positive_int
from xspecies.model._target import _TABLE_LIMIT

from ._pair import check_pair, context_labels, label_set, target_labels

_SCALES = ("none", "max", "min_max")
#: Context cells per type from which every sampled target cell draws its ``n_context`` (at least).
_POOL = 1000


def _draws(rng: np.random.Generator, n: int, size: int, width: int) -> np.ndarray:
    """``n`` draws of ``width`` distinct positions in ``range(size)``, one per row (``O(n * size)``)."""
    if width >= size:
        return np.tile(np.arange(size), (n, 1))
    keys = rng.random((n, size), dtype=np.float32)
    return np.argpartition(keys, width - 1, axis=1)[:, :width]


def histogram_mode(values: np.ndarray, *, bins: int = 50, clip: float = 0.01) -> float:
    """Mid-point of the most populated histogram bin of ``values`` (a robust modal value).

    Parameters
    ----------
    values
        Sample of a distribution (NaNs ignored).
    bins
        Number of histogram bins.
    clip
        Share of values left out at each tail before binning (heavy tails would otherwise make the
        bins coarse).

    Returns
    -------
    float
        The modal value (NaN for an empty sample).

    Examples
    --------
    A peak at 2 with a heavy right tail: the mode stays at the peak, the mean does not.

    >>> import numpy as np
    >>> import xspecies as xs
    >>> rng = np.random.default_rng(0)
    >>> x = np.r_[rng.normal(2.0, 0.5, 900), rng.normal(8.0, 3.0, 100)]
    >>> round(xs.tl.histogram_mode(x, bins=20), 1)
    2.0
    >>> round(float(x.mean()), 1)
    2.5
    """
    values = np.asarray(values, dtype=float).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    low, high = np.quantile(values, [clip, 1 - clip])
    if high <= low:
        return float(np.median(values))
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    best = int(np.argmax(counts))
    return float((edges[best] + edges[best + 1]) / 2)


def _scale(df: pd.DataFrame, scale: str) -> pd.DataFrame:
    if scale == "max":
        return df.div(df.abs().max(axis=1).replace(0, np.nan), axis=0)
    if scale == "min_max":
        low, high = df.min(axis=1), df.max(axis=1)
        return df.sub(low, axis=0).div((high - low).replace(0, np.nan), axis=0)
    return df


@doc_params(model_pair=doc_model_pair, key_added=doc_key_added_table, random_state=doc_random_state_sampling)
def celltype_similarity(
    target,
    context,
    *,
    target_labels_key: str,
    context_labels_key: str,
    n_target: int = 2000,
    n_context: int = 50,
    scale: Literal["none", "max", "min_max"] = "none",
    key_added: str = "celltype_similarity",
    random_state: int = 0,
    batch_size: int | None = None,
    progress_bar: bool = True,
) -> pd.DataFrame:
    """Similarity of every target cell type to every context cell type.

    Up to ``n_target`` cells are sampled per target type; each is compared with ``n_context`` cells
    drawn at random (per target cell) from every context type (from a random pool of 1,000 cells of
    the type, fewer when all pools together would exceed 6e7 decoded values (cells x genes), and never
    fewer than ``n_context``, so that the work does not grow with the context), by the likelihood similarity
    ``NLL(x | own z) - NLL(x | context z)`` of :meth:`~xspecies.model.TargetModel.similarity_to_table`.
    The score of a (target type, context type) pair is the modal value of these differences
    (:func:`histogram_mode`): ``~0`` when context cells of that type explain the target cells' counts
    as well as their own latents, more negative for worse matches.

    Target cells without annotation can use transferred labels: when ``target_labels_key`` is not a
    column of the target obs, ``obs["xspecies_<target_labels_key>"]`` (written by
    :func:`xspecies.tl.transfer_labels`) is used.

    Parameters
    ----------
    {model_pair}
    target_labels_key
        Target ``obs`` column with cell types (or transferred labels, see above).
    context_labels_key
        Context ``obs`` column with cell types.
    n_target
        Maximum number of target cells sampled per target type.
    n_context
        Context cells per context type compared with each sampled target cell (all cells of a type
        when it has fewer).
    scale
        Row-wise scaling of the table: ``"none"`` (raw modal differences), ``"max"`` (divided by the
        largest absolute value of the row: values in ``[-1, 0]`` for negative rows, best match nearest
        0) or ``"min_max"`` (``0`` = worst, ``1`` = best context type of the row).
    {key_added}
    {random_state}
    batch_size
        Minibatch size of the model's data loader.
    progress_bar
        Show progress of the likelihood computation.

    Returns
    -------
    pandas.DataFrame
        Target cell types (index) x context cell types (columns); higher = more similar. Also stored
        in ``target.adata.uns[key_added]`` as ``{"params": {...}, "table": df}`` (read by
        :func:`xspecies.pl.celltype_similarity`).

    Examples
    --------
    Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch;
    train as in :doc:`/getting_started` for meaningful results):

    >>> import xspecies as xs
    >>> context, target = xs.datasets.pancreas_models()

    >>> sim = xs.tl.celltype_similarity(
    ...     target,
    ...     context,
    ...     target_labels_key="cell_ontology_class",
    ...     context_labels_key="cell_ontology_class",
    ...     n_target=100,  # the defaults sample more cells
    ...     n_context=20,
    ...     progress_bar=False,
    ... )
    >>> best = sim.idxmax(axis=1)  # best context type of every target type
    >>> bool(best.isin(context.adata.obs["cell_ontology_class"]).all())
    True
    >>> ax = xs.pl.celltype_similarity(target.adata)
    """
    check_pair(target, context)
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {_SCALES}, got {scale!r}")
    check_positive_int("n_target", n_target)
    check_positive_int("n_context", n_context)
    check_int("random_state", random_state, minimum=0)
    if batch_size is not None:
        check_positive_int("batch_size", batch_size)
    t_labels, t_column = target_labels(target.adata, target_labels_key)
    c_labels = context_labels(context.adata, context_labels_key)
    t_types, c_types = label_set(t_labels), label_set(c_labels)
    if not t_types or not c_types:
        raise ValueError("no annotated cells: the target or context labels are all missing")
    rng = np.random.default_rng(random_state)

    cells = np.concatenate(
        [rng.permutation(np.flatnonzero(t_labels == t))[:n_target] for t in t_types]
    ).astype(np.int64)
    # a random pool of at most max(n_context, _POOL) cells per context type (fewer when the pools would
    # exceed the table the target decodes whole), decoded once per batch
    pool = max(n_context, min(_POOL, _TABLE_LIMIT // (target.module.n_input * len(c_types))))
    pools = [rng.permutation(np.flatnonzero(c_labels == c))[:pool] for c in c_types]
    widths = [min(n_context, len(p)) for p in pools]
    offsets = np.cumsum([0, *(len(p) for p in pools)])
    # per sampled target cell, its own random draw of pooled cells of every type (no repeats)
    candidates = np.concatenate(
        [
            _draws(rng, len(cells), len(p), w) + start
            for p, w, start in zip(pools, widths, offsets[:-1], strict=True)
        ],
        axis=1,
    )
    z_pool = context.get_latent_representation(indices=np.concatenate(pools), batch_size=batch_size)
    similarity = target.similarity_to_table(
        z_pool, candidates, indices=cells, batch_size=batch_size, progress_bar=progress_bar
    )
    cell_types = t_labels[cells]
    bounds = np.cumsum([0, *widths])
    table = pd.DataFrame(
        [
            [
                histogram_mode(similarity[cell_types == t, bounds[j] : bounds[j + 1]])
                for j in range(len(c_types))
            ]
            for t in t_types
        ],
        index=pd.Index(t_types, name=t_column),
        columns=pd.Index(c_types, name=context_labels_key),
    )
    table = _scale(table, scale)
    params = {
        "target_labels_key": t_column,
        "context_labels_key": context_labels_key,
        "n_target": int(n_target),
        "n_context": int(n_context),
        "scale": scale,
        "random_state": int(random_state),
    }
    store_result(target.adata, key_added, params, table=table)
    return table
