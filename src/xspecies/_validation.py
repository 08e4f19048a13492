"""Shared input checks: each raises early with a message that names the offending key or value."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

__all__ = ["check_counts", "check_obs_key", "check_unique_var_names", "get_matrix"]

_CHUNK = 2**24


def get_matrix(adata: AnnData, layer: str | None = None):
    """Return ``adata.X`` or ``adata.layers[layer]``.

    Parameters
    ----------
    adata
        Annotated data matrix.
    layer
        Layer name; ``None`` for ``X``.

    Returns
    -------
    The matrix (dense or sparse), not copied.

    Examples
    --------
    >>> X = get_matrix(adata, layer="counts")  # doctest: +SKIP
    """
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is empty: pass the layer that holds the counts with `layer=`.")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"layer {layer!r} not found in adata.layers (available: {list(adata.layers)}).")
    return adata.layers[layer]


def _stored_values(X) -> np.ndarray:
    if sparse.issparse(X):
        return np.asarray(X.data)
    return np.asarray(X).ravel()


def check_counts(adata: AnnData, layer: str | None = None, name: str = "adata") -> None:
    """Check that a matrix holds raw counts: finite, non-negative integers.

    Parameters
    ----------
    adata
        Annotated data matrix.
    layer
        Layer that holds the counts; ``None`` for ``X``.
    name
        How the object is called in error messages.

    Raises
    ------
    ValueError
        On NaN or infinite values, negative values or non-integer values, naming the first offending cell
        and gene.

    Examples
    --------
    >>> check_counts(adata)  # doctest: +SKIP
    """
    X = get_matrix(adata, layer)
    where = f"{name}.X" if layer is None else f"{name}.layers[{layer!r}]"
    values = _stored_values(X)
    if values.size == 0:
        return
    if not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"{where} has non-numeric dtype {values.dtype}: raw counts are expected.")
    for start in range(0, values.size, _CHUNK):  # chunks keep the temporary arrays small
        chunk = values[start : start + _CHUNK]
        problems = (
            (~np.isfinite(chunk), "NaN or infinite values"),
            (chunk < 0, "negative values"),
            (chunk != np.round(chunk), "non-integer values (log-normalised data?)"),
        )
        for mask, what in problems:
            if mask.any():
                first = int(np.flatnonzero(mask)[0])
                cell, gene = _locate(X, start + first)
                raise ValueError(
                    f"{where} contains {what}, e.g. {float(chunk[first])!r} for cell {adata.obs_names[cell]!r}, "
                    f"gene {adata.var_names[gene]!r}: raw integer counts are expected."
                )


def _locate(X, flat_index: int) -> tuple[int, int]:
    """Row and column of the ``flat_index``-th stored value."""
    if sparse.issparse(X):
        X = sparse.csr_matrix(X) if not sparse.isspmatrix_csr(X) else X
        row = int(np.searchsorted(X.indptr, flat_index, side="right") - 1)
        return row, int(X.indices[flat_index])
    return divmod(flat_index, X.shape[1])


def check_obs_key(adata: AnnData, key: str, name: str = "adata", allow_nan: bool = False) -> pd.Series:
    """Check that ``adata.obs`` has column ``key`` and return it.

    Parameters
    ----------
    adata
        Annotated data matrix.
    key
        Column of ``adata.obs``.
    name
        How the object is called in error messages.
    allow_nan
        Whether missing values are accepted.

    Returns
    -------
    The column.

    Examples
    --------
    >>> labels = check_obs_key(adata, "cell_type")  # doctest: +SKIP
    """
    if key not in adata.obs.columns:
        raise KeyError(f"{key!r} not found in {name}.obs (columns: {list(adata.obs.columns)}).")
    column = adata.obs[key]
    if not allow_nan and column.isna().any():
        raise ValueError(f"{name}.obs[{key!r}] has {int(column.isna().sum())} missing values.")
    return column


def check_unique_var_names(adata: AnnData, name: str = "adata") -> None:
    """Check that ``adata.var_names`` are unique.

    Parameters
    ----------
    adata
        Annotated data matrix.
    name
        How the object is called in error messages.

    Examples
    --------
    >>> check_unique_var_names(adata)  # doctest: +SKIP
    """
    index = adata.var_names
    if not index.is_unique:
        dups = index[index.duplicated()].unique()[:5].tolist()
        raise ValueError(
            f"{name}.var_names contains duplicates, e.g. {dups}: make them unique first "
            "(adata.var_names_make_unique())."
        )


# --- model checks ---


def check_int(value, name: str, low: int = 1) -> int:
    """Check that ``value`` is an integer of at least ``low`` and return it as ``int``.

    Parameters
    ----------
    value
        The value given by the user (``bool`` and non-integral floats are refused).
    name
        Parameter name for the error message.
    low
        Smallest accepted value.

    Returns
    -------
    int
        The value.

    Raises
    ------
    ValueError
        When ``value`` is not an integer or is below ``low``.

    Examples
    --------
    >>> check_int(40, "max_epochs")
    40
    """
    integral = isinstance(value, int | np.integer) or (
        isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer()
    )
    if isinstance(value, bool | np.bool_) or not integral or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    return int(value)


def context_fingerprint(adata: AnnData) -> str:
    """Fingerprint of a context AnnData: SHA-1 of its cell count, cell names and gene names, in order.

    Two AnnData objects have the same fingerprint exactly when they hold the same cells and genes in
    the same order (the values in ``X`` are not part of it); a subset, a reordering or other cells of
    the same count give another fingerprint.

    Parameters
    ----------
    adata
        The context AnnData.

    Returns
    -------
    str
        40 hexadecimal digits.

    Examples
    --------
    >>> context_fingerprint(mouse) == context_fingerprint(mouse[::-1])  # doctest: +SKIP
    False
    """
    digest = hashlib.sha1(str(adata.n_obs).encode())
    for names in (adata.obs_names, adata.var_names):
        digest.update(b"\0")
        digest.update("\n".join(names.astype(str)).encode())
    return digest.hexdigest()


#: Names h5py or anndata give a meaning of their own inside a group ('.' is the group itself, '_index'
#: names the index of a data frame, '__categories' the categories of old files).
_RESERVED_KEYS = frozenset({".", "..", "_index", "__categories"})


def check_key_name(key, name: str = "key_added") -> str:
    """Check that ``key`` is one plain key that can name an h5ad group or column.

    h5py reads a key as a path: ``"/X"`` or ``"/obs"`` address the file's own count matrix or ``obs``
    (writing there replaces them), ``""`` the whole group and ``"a/b"`` a nested group. Such keys are
    refused before anything is computed or written.

    Parameters
    ----------
    key
        The key (e.g. a ``key_added`` argument).
    name
        How the argument is called in error messages.

    Returns
    -------
    The key.

    Raises
    ------
    ValueError
        When ``key`` is not a non-empty string, contains ``"/"``, starts or ends with white space, or is
        one of the reserved names ``"."``, ``".."``, ``"_index"``, ``"__categories"``.

    Examples
    --------
    >>> check_key_name("scice")
    'scice'
    >>> check_key_name("a/b")  # doctest: +SKIP
    ValueError: key_added='a/b' contains '/': ...
    """
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"{name} must be a non-empty string, got {key!r}.")
    if "/" in key:
        raise ValueError(
            f"{name}={key!r} contains '/': use one plain key (in an h5ad file '/' addresses other groups, "
            "e.g. '/X' is the count matrix, or nests the result)."
        )
    if key != key.strip():
        raise ValueError(f"{name}={key!r} starts or ends with white space.")
    if key in _RESERVED_KEYS:
        raise ValueError(f"{name}={key!r} is a reserved name in h5ad files: choose another key.")
    return key
