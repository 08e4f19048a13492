"""Context cells ranked by their likelihood similarity to one target cell."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from xspecies._docs import doc_key_added_table, doc_model_pair, doc_params
from xspecies._results import store_result
from xspecies._validation import check_positive_int

from ._pair import check_pair, context_labels

#: Decoded context cells x genes evaluated per call of the model's similarity (bounds the memory used).
_CELLS_X_GENES = 20_000_000


def target_position(adata, index: int | str) -> int:
    """Row position of a target cell given as a position (negative counts from the end) or obs name."""
    if isinstance(index, str):
        if index not in adata.obs_names:
            raise KeyError(f"target cell {index!r} not found in the target obs_names")
        return int(adata.obs_names.get_loc(index))
    if not isinstance(index, int | np.integer):
        raise TypeError(f"index must be an int position or an obs name, got {type(index).__name__}")
    if not -adata.n_obs <= int(index) < adata.n_obs:
        raise IndexError(f"target index {index} out of range for {adata.n_obs} target cells")
    return int(index) % adata.n_obs


@doc_params(model_pair=doc_model_pair, key_added=doc_key_added_table)
def similar_cells(
    target,
    context,
    *,
    index: int | str,
    labels_key: str | Sequence[str] | None = None,
    n_top: int | None = None,
    key_added: str = "similar_cells",
    batch_size: int | None = None,
) -> pd.DataFrame:
    """Rank all context cells by their likelihood similarity to one target cell.

    Every context cell's latent mean is decoded by the target decoder (with the target cell's batch and
    inferred library size) and scored by
    :meth:`~xspecies.model.TargetModel.similarity_to_table`: ``NLL(x | own z) - NLL(x | context z)``
    (higher = more similar, ``~0`` = explains the cell's counts as well as its own latent). The
    context is processed in chunks, so the memory stays bounded for large references.

    Parameters
    ----------
    {model_pair}
    index
        The target cell: row position in ``target.adata`` or obs name.
    labels_key
        Context ``obs`` column(s) to report for every context cell (e.g. ``"cell_type"``).
    n_top
        Keep only the ``n_top`` most similar context cells (default all).
    {key_added}
    batch_size
        Minibatch size of the model's data loader.

    Returns
    -------
    pandas.DataFrame
        One row per context cell, most similar first: ``context_index`` (row position in
        ``context.adata``), ``obs_name``, ``similarity`` and one column per ``labels_key``. Also stored
        in ``target.adata.uns[key_added]`` as ``{"params": {...}, "table": df}`` (``params["index"]``:
        the target cell's obs name; read by :func:`xspecies.pl.similar_cells`).

    Examples
    --------
    Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch;
    train as in :doc:`/getting_started` for meaningful results):

    >>> import xspecies as xs
    >>> context, target = xs.datasets.pancreas_models()

    >>> df = xs.tl.similar_cells(
    ...     target, context, index=0, labels_key="cell_ontology_class", n_top=25
    ... )
    >>> len(df), bool(df["cell_ontology_class"].isin(context.adata.obs["cell_ontology_class"]).all())
    (25, True)
    """
    check_pair(target, context)
    position = target_position(target.adata, index)
    keys = [] if labels_key is None else [labels_key] if isinstance(labels_key, str) else list(labels_key)
    labels = {key: context_labels(context.adata, key) for key in keys}
    for name, value in (("n_top", n_top), ("batch_size", batch_size)):
        if value is not None:
            check_positive_int(name, value)

    z_context = context.get_latent_representation(batch_size=batch_size)
    chunk = max(1, _CELLS_X_GENES // max(1, target.module.n_input))
    similarity = np.concatenate(
        [
            target.similarity_to_table(
                z_context[start : start + chunk],
                np.arange(min(chunk, len(z_context) - start))[None, :],
                indices=[position],
                batch_size=batch_size,
            )[0]
            for start in range(0, len(z_context), chunk)
        ]
    )
    order = np.argsort(-similarity, kind="stable")[:n_top]
    df = pd.DataFrame(
        {
            "context_index": order.astype(np.int64),
            "obs_name": context.adata.obs_names[order].astype(str),
            "similarity": similarity[order].astype(np.float32),
        }
    )
    for key, values in labels.items():
        df[key] = values[order]
    obs_name = str(target.adata.obs_names[position])
    df.attrs["target_obs_name"] = obs_name
    params = {"index": obs_name, "labels_key": keys, "n_top": -1 if n_top is None else int(n_top)}
    store_result(target.adata, key_added, params, table=df)
    return df
