"""Checks and look-ups shared by the cross-species analyses of a (target, context) model pair."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from xspecies._validation import CONTEXT_FINGERPRINT_KEY, check_context_fingerprint


def check_pair(target, context) -> None:
    """Raise unless ``target`` is a trained TargetModel built from the trained ContextModel ``context``.

    Checks the types, training, attached data, the context's cell count and gene names against those the
    target was built with, and the fingerprint of the context recorded by
    :func:`xspecies.pp.homology_neighbors` in ``target.adata.uns[<homology key>]`` (same cells and genes
    in the same order).

    Parameters
    ----------
    target
        Expected :class:`~xspecies.model.TargetModel`.
    context
        Expected :class:`~xspecies.model.ContextModel`.
    """
    from xspecies.model import ContextModel, TargetModel
    from xspecies.model._base import require_trained
    from xspecies.model._target import check_built_from

    if not isinstance(target, TargetModel) or not isinstance(context, ContextModel):
        raise TypeError(
            "expected (target, context) = (TargetModel, ContextModel), got "
            f"({type(target).__name__}, {type(context).__name__})"
        )
    for name, model in (("target", target), ("context", context)):
        require_trained(model, name)
        if model.adata is None:
            raise ValueError(f"the {name} model has no AnnData attached")
    if context.adata.n_obs != target.module.context_qz_mean.shape[0]:
        raise ValueError(
            f"the target model was built from a context with {target.module.context_qz_mean.shape[0]} "
            f"cells, but this context model has {context.adata.n_obs}"
        )
    check_built_from(target, context)
    saved = getattr(target, "context_var_names_", None)
    if saved is not None and not np.array_equal(saved, context.adata.var_names.astype(str).to_numpy()):
        raise ValueError("the target model was built from a context with other genes (or another gene order)")
    key = target.adata_manager.registry["setup_args"].get("homology_key")
    if key:
        recorded = dict(target.adata.uns.get(key, {})).get(CONTEXT_FINGERPRINT_KEY)
        check_context_fingerprint(recorded, context.adata, f"target.adata.uns[{key!r}]")


def _as_labels(values: pd.Series) -> np.ndarray:
    return values.astype("string").to_numpy(dtype=object, na_value=None)


def context_labels(context_adata: AnnData, key: str) -> np.ndarray:
    """Labels of the context cells as strings (``None`` where missing); KeyError naming ``key``."""
    if key not in context_adata.obs:
        raise KeyError(f"obs[{key!r}] not found in the context data (columns: {list(context_adata.obs)})")
    return _as_labels(context_adata.obs[key])


def target_labels(target_adata: AnnData, key: str) -> tuple[np.ndarray, str]:
    """Labels of the target cells as strings (``None`` where missing) and the column used.

    ``key`` itself when present, else the transferred labels ``xspecies_<key>`` written by
    :func:`xspecies.tl.transfer_labels` (for targets without annotation).
    """
    for column in (key, f"xspecies_{key}"):
        if column in target_adata.obs:
            return _as_labels(target_adata.obs[column]), column
    raise KeyError(
        f"obs[{key!r}] not found in the target data, nor transferred labels obs['xspecies_{key}']: "
        "pass the target's annotation or run xspecies.tl.transfer_labels first"
    )


def batch_codes(model) -> np.ndarray:
    """Integer batch code of every cell of the model's AnnData (as registered with scvi-tools)."""
    from scvi import REGISTRY_KEYS

    return np.asarray(model.get_from_registry(model.adata, REGISTRY_KEYS.BATCH_KEY)).ravel().astype(np.int64)


def count_matrix(model):
    """The registered count matrix (``X`` or the registered layer) of the model's AnnData."""
    from scvi import REGISTRY_KEYS

    layer = model.adata_manager.data_registry[REGISTRY_KEYS.X_KEY].attr_key
    return model.adata.X if layer is None else model.adata.layers[layer]


def homologous_genes(target, context) -> tuple[np.ndarray, np.ndarray]:
    """``(target_var_indices, context_var_indices)`` of the orthologous genes of a target model.

    Taken from ``target.homologous_genes_``, or, when it is unset (e.g. a model loaded from disk), from
    the gene lists of the neighbour search in ``target.adata.uns[<homology_key>]``.
    """
    genes = getattr(target, "homologous_genes_", None)
    if genes is None:
        key = target.adata_manager.registry["setup_args"].get("homology_key") or "homology"
        info = target.adata.uns.get(key, {})
        t_idx = target.adata.var_names.get_indexer(list(info.get("target_genes", [])))
        c_idx = context.adata.var_names.get_indexer(list(info.get("context_genes", [])))
        keep = (t_idx >= 0) & (c_idx >= 0) if len(t_idx) == len(c_idx) else np.zeros(0, dtype=bool)
        genes = (t_idx[keep], c_idx[keep])
    if len(genes[0]) == 0:
        raise ValueError(
            "no homologous genes between the target and context decoders (homologous_genes_ and "
            "uns['homology'] gene lists are empty): build the target with TargetModel.from_context "
            "after xspecies.pp.homology_neighbors"
        )
    return np.asarray(genes[0], dtype=np.int64), np.asarray(genes[1], dtype=np.int64)


def label_set(labels: np.ndarray) -> list[str]:
    """Sorted distinct labels, missing values left out."""
    return sorted({v for v in labels if v is not None})


def shared_types(
    target: np.ndarray, context: np.ndarray, cell_types=None, target_key: str = "", context_key: str = ""
) -> list[str]:
    """Cell types present in both species (sorted), or ``cell_types`` checked to be present in both."""
    in_target, in_context = set(label_set(target)), set(label_set(context))
    if cell_types is None:
        types = sorted(in_target & in_context)
        if not types:
            raise ValueError(
                f"no cell type is shared between target obs[{target_key!r}] and context obs[{context_key!r}]"
            )
        return types
    types = [cell_types] if isinstance(cell_types, str) else [str(c) for c in cell_types]
    for name, present, key in (("target", in_target, target_key), ("context", in_context, context_key)):
        absent = [t for t in types if t not in present]
        if absent:
            raise ValueError(f"cell types {absent} are absent from the {name} obs[{key!r}]")
    return types
