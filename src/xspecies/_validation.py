"""Shared input checks: each raises early with a message that names the offending key or value.

Sections: matrices (:func:`check_counts`), ``obs``/``var`` columns, parameters (:func:`check_int`,
:func:`check_number`, ...), gene mapping rates, the context fingerprint and views. Later additions go at
the end, one section each.
"""

from __future__ import annotations

import hashlib
import numbers
import re
import warnings
from collections.abc import Callable, Collection

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ._docs import doc_adata, doc_error_name, doc_layer, doc_params

__all__ = [
    "CONTEXT_FINGERPRINT_KEY",
    "check_context_fingerprint",
    "check_counts",
    "check_fraction",
    "check_int",
    "check_mapping_rate",
    "check_n_jobs",
    "check_neighbor_indices",
    "check_not_view",
    "check_number",
    "check_obs_key",
    "check_positive_int",
    "check_unique_var_names",
    "context_fingerprint",
    "gene_mapping_hints",
    "get_matrix",
]

#: values checked at a time by :func:`check_counts` (bounds its temporary memory)
_CHUNK = 2**22


# --- matrices -----------------------------------------------------------------------------------------


@doc_params(adata=doc_adata)
def layer_names(adata: AnnData) -> list[str]:
    """Names of the layers of ``adata`` (anndata 0.13 also lists ``X`` as the layer ``None``: left out).

    Parameters
    ----------
    {adata}

    Returns
    -------
    list of str
        The layer names, in order.

    Examples
    --------
    >>> layer_names(AnnData(np.ones((2, 3)), layers={"counts": np.ones((2, 3))}))
    ['counts']
    """
    return [name for name in adata.layers if name is not None]


@doc_params(adata=doc_adata, layer=doc_layer)
def get_matrix(adata: AnnData, layer: str | None = None):
    """Return ``adata.X`` or ``adata.layers[layer]``.

    Parameters
    ----------
    {adata}
    {layer}

    Returns
    -------
    The matrix (dense or sparse), not copied.

    Examples
    --------
    >>> adata = AnnData(np.ones((2, 3)), layers={"counts": sparse.csr_matrix(np.ones((2, 3)))})
    >>> get_matrix(adata, layer="counts").shape
    (2, 3)
    >>> get_matrix(adata, layer="raw")
    Traceback (most recent call last):
    ...
    KeyError: "layer 'raw' not found in adata.layers (available: ['counts'])."
    """
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is empty: pass the layer that holds the counts with `layer=`.")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"layer {layer!r} not found in adata.layers (available: {layer_names(adata)}).")
    return adata.layers[layer]


def _blocks(X, n_obs: int, n_vars: int):
    """``(row offset, block, transposed)`` for blocks of about ``_CHUNK`` values of a cells x genes matrix.

    In-memory sparse matrices are scanned through their stored values (CSC through its CSR transpose,
    which shares the arrays); dense, backed and other matrices by blocks of rows. Nothing is densified
    beyond one block.
    """
    if sparse.issparse(X) and X.format in ("csr", "csc"):
        M = X if X.format == "csr" else X.T
        n_rows = M.shape[0]
        nnz_per_row = max(1, M.nnz // max(1, n_rows))
        step = max(1, _CHUNK // nnz_per_row)
        for start in range(0, n_rows, step):
            stop = min(start + step, n_rows)
            lo, hi = M.indptr[start], M.indptr[stop]
            block = sparse.csr_matrix(
                (M.data[lo:hi], M.indices[lo:hi], M.indptr[start : stop + 1] - lo),
                shape=(stop - start, M.shape[1]),
            )
            yield start, block, X.format == "csc"
        return
    step = max(1, _CHUNK // max(1, n_vars))
    for start in range(0, n_obs, step):
        block = X[start : min(start + step, n_obs)]
        if sparse.issparse(block):
            block = sparse.csr_matrix(block)
        yield start, block, False


def _first_bad(block) -> tuple[int, int, float, str] | None:
    """Row, column, value and kind of the first value of ``block`` that is not a raw count."""
    values = block.data if sparse.issparse(block) else np.asarray(block)
    if np.issubdtype(values.dtype, np.integer):
        problems = ((values < 0, "negative values"),)
    else:
        problems = (
            (~np.isfinite(values), "NaN or infinite values"),
            (values < 0, "negative values"),
            (values != np.round(values), "non-integer values (log-normalised data?)"),
        )
    for mask, what in problems:
        if mask.any():
            first = int(np.flatnonzero(mask.ravel())[0])
            if sparse.issparse(block):
                row = int(np.searchsorted(block.indptr, first, side="right") - 1)
                return row, int(block.indices[first]), float(values[first]), what
            row, col = divmod(first, values.shape[1])
            return row, col, float(values[row, col]), what
    return None


@doc_params(adata=doc_adata, layer=doc_layer, name=doc_error_name)
def check_counts(adata: AnnData, layer: str | None = None, name: str = "adata") -> None:
    """Check that a matrix holds raw counts: finite, non-negative integers, every value checked.

    The matrix is read in blocks (about four million values at a time), so the memory used stays
    bounded: sparse matrices (``csr_matrix``/``csr_array``, CSC, others), dense arrays of any float or
    integer dtype (``float16`` too) and backed matrices are never densified as a whole.

    Parameters
    ----------
    {adata}
    {layer}
    {name}

    Raises
    ------
    ValueError
        On an empty matrix, a non-numeric dtype, NaN or infinite values, negative values or non-integer
        values, naming the first offending cell and gene.

    Examples
    --------
    >>> adata = AnnData(np.array([[0.0, 3.0], [1.0, 2.5]]))
    >>> check_counts(adata)
    Traceback (most recent call last):
    ...
    ValueError: adata.X contains non-integer values (log-normalised data?), e.g. 2.5 for cell '1', gene '1' (row 1, column 1): raw integer counts are expected.
    >>> adata.X[1, 1] = 2
    >>> check_counts(adata)
    """
    X = get_matrix(adata, layer)
    where = f"{name}.X" if layer is None else f"{name}.layers[{layer!r}]"
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"{where} is empty ({adata.n_obs} cells x {adata.n_vars} genes).")
    dtype = np.dtype(X.dtype)
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise ValueError(f"{where} has dtype {dtype}: raw counts (integers or floats) are expected.")
    for offset, block, transposed in _blocks(X, adata.n_obs, adata.n_vars):
        bad = _first_bad(block)
        if bad is None:
            continue
        row, col, value, what = bad
        cell, gene = (col, offset + row) if transposed else (offset + row, col)
        raise ValueError(
            f"{where} contains {what}, e.g. {value!r} for cell {adata.obs_names[cell]!r}, "
            f"gene {adata.var_names[gene]!r} (row {cell}, column {gene}): raw integer counts are expected."
        )


# --- obs and var columns ------------------------------------------------------------------------------


@doc_params(adata=doc_adata, name=doc_error_name)
def check_obs_key(adata: AnnData, key: str, name: str = "adata", allow_nan: bool = False) -> pd.Series:
    """Check that ``adata.obs`` has column ``key`` (without missing values) and return it.

    Parameters
    ----------
    {adata}
    key
        Column of ``adata.obs``.
    {name}
    allow_nan
        Whether some missing values are accepted (a column with only missing values is always refused).

    Returns
    -------
    The column.

    Raises
    ------
    KeyError
        When ``key`` is not a column.
    ValueError
        When the column holds missing (NaN) values, naming how many and the first cell.

    Examples
    --------
    >>> adata = AnnData(obs=pd.DataFrame({"cell_type": ["alpha", None]}, index=["c0", "c1"]))
    >>> check_obs_key(adata, "cell_type", allow_nan=True).isna().tolist()
    [False, True]
    >>> check_obs_key(adata, "cell_type")
    Traceback (most recent call last):
    ...
    ValueError: adata.obs['cell_type'] has 1 missing (NaN) values, e.g. cell 'c1': fill them (e.g. 'unknown') or drop these cells first.
    """
    if key not in adata.obs.columns:
        raise KeyError(f"{key!r} not found in {name}.obs (columns: {list(adata.obs.columns)}).")
    column = adata.obs[key]
    missing = column.isna().to_numpy()
    if missing.all() and len(column):
        raise ValueError(f"{name}.obs[{key!r}] holds only missing (NaN) values.")
    if not allow_nan and missing.any():
        first = adata.obs_names[int(np.flatnonzero(missing)[0])]
        raise ValueError(
            f"{name}.obs[{key!r}] has {int(missing.sum())} missing (NaN) values, e.g. cell {first!r}: "
            "fill them (e.g. 'unknown') or drop these cells first."
        )
    return column


@doc_params(adata=doc_adata, name=doc_error_name)
def check_unique_var_names(adata: AnnData, name: str = "adata") -> None:
    """Check that ``adata.var_names`` are unique.

    Parameters
    ----------
    {adata}
    {name}

    Examples
    --------
    >>> adata = AnnData(var=pd.DataFrame(index=["GCG", "INS", "GCG"]))
    >>> check_unique_var_names(adata)
    Traceback (most recent call last):
    ...
    ValueError: adata.var_names contains duplicates, e.g. ['GCG']: make them unique first (adata.var_names_make_unique()).
    """
    index = adata.var_names
    if not index.is_unique:
        dups = index[index.duplicated()].unique()[:5].tolist()
        raise ValueError(
            f"{name}.var_names contains duplicates, e.g. {dups}: make them unique first "
            "(adata.var_names_make_unique())."
        )


@doc_params(name=doc_error_name)
def check_not_view(adata: AnnData, name: str = "adata") -> None:
    """Refuse to write into a view of an AnnData (the write would turn it into a partial copy).

    Parameters
    ----------
    adata
        Annotated data matrix about to be changed in place.
    {name}

    Raises
    ------
    ValueError
        When ``adata`` is a view (e.g. ``adata[:100]``).

    Examples
    --------
    >>> adata = AnnData(np.ones((4, 2)))
    >>> check_not_view(adata)
    >>> check_not_view(adata[:2])
    Traceback (most recent call last):
    ...
    ValueError: adata is a view of another AnnData (e.g. adata[cells]): ...
    """
    if adata.is_view:
        raise ValueError(
            f"{name} is a view of another AnnData (e.g. adata[cells]): results cannot be written into it. "
            "Pass a copy (adata[cells].copy()) or use copy=True."
        )


# --- parameters ---------------------------------------------------------------------------------------


def check_int(name: str, value, minimum: int | None = 1, maximum: int | None = None) -> int:
    """Check that parameter ``name`` is an integer in ``[minimum, maximum]`` and return it as ``int``.

    Parameters
    ----------
    name
        Parameter name, for the message.
    value
        The value given (Python or NumPy integer; ``bool`` and floats are refused).
    minimum, maximum
        Inclusive bounds (``None``: unbounded).

    Returns
    -------
    int
        The value.

    Raises
    ------
    TypeError
        When ``value`` is not an integer.
    ValueError
        When it is out of range.

    Examples
    --------
    >>> check_int("n_top_genes", 2000)
    2000
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}.")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        bounds = f"<= {maximum}" if minimum is None else bounds
        raise ValueError(f"{name} must be an integer {bounds}, got {value}.")
    return value


def check_positive_int(name: str, value) -> int:
    """:func:`check_int` with ``minimum=1``.

    Parameters
    ----------
    name
        Parameter name, for the message.
    value
        The value given.

    Returns
    -------
    int
        The value.

    Examples
    --------
    >>> check_positive_int("batch_size", 128)
    128
    """
    return check_int(name, value, minimum=1)


def check_n_jobs(name: str, value) -> int | None:
    """Check a number of parallel jobs: ``None``, a positive integer, or negative (joblib's "all but").

    Parameters
    ----------
    name
        Parameter name, for the message.
    value
        ``None``, ``-1`` (all cores), ``-2`` (all but one), ... or a positive count; ``0`` is refused.

    Returns
    -------
    int or None
        The value.

    Examples
    --------
    >>> check_n_jobs("n_jobs", -1)
    -1
    """
    if value is None:
        return None
    value = check_int(name, value, minimum=None)
    if value == 0:
        raise ValueError(f"{name} must be a positive number of jobs or -1 (all cores), got 0.")
    return value


def check_number(
    name: str,
    value,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    open_min: bool = False,
    open_max: bool = False,
) -> float:
    """Check that parameter ``name`` is a real number (not NaN) within bounds and return it as ``float``.

    Parameters
    ----------
    name
        Parameter name, for the message.
    value
        The value given.
    minimum, maximum
        Bounds (``None``: unbounded; infinite values are refused unless a bound is ``None`` on that side).
    open_min, open_max
        Whether the bound itself is excluded.

    Returns
    -------
    float
        The value.

    Raises
    ------
    TypeError
        When ``value`` is not a real number.
    ValueError
        When it is NaN or out of range.

    Examples
    --------
    >>> check_number("rank_prior", 50, minimum=0)
    50.0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}.")
    value = float(value)
    low_ok = minimum is None or (value > minimum if open_min else value >= minimum)
    high_ok = maximum is None or (value < maximum if open_max else value <= maximum)
    finite_ok = np.isfinite(value) or (minimum is None and value < 0) or (maximum is None and value > 0)
    if np.isnan(value) or not (low_ok and high_ok and finite_ok):
        low = "(-inf" if minimum is None else f"{'(' if open_min else '['}{minimum:g}"
        high = "inf)" if maximum is None else f"{maximum:g}{')' if open_max else ']'}"
        raise ValueError(f"{name} must lie in {low}, {high}, got {value}.")
    return value


def check_fraction(name: str, value, *, open_min: bool = False, open_max: bool = False) -> float:
    """:func:`check_number` on ``[0, 1]`` (either end optionally open).

    Parameters
    ----------
    name
        Parameter name, for the message.
    value
        The value given.
    open_min, open_max
        Whether 0 or 1 are excluded.

    Returns
    -------
    float
        The value.

    Examples
    --------
    >>> check_fraction("confidence_level", 0.9, open_min=True)
    0.9
    """
    return check_number(name, value, 0.0, 1.0, open_min=open_min, open_max=open_max)


def check_neighbor_indices(indices: np.ndarray, n_context: int, where: str) -> np.ndarray:
    """Check that neighbour indices are integers in ``[0, n_context)`` and return them as int64.

    Parameters
    ----------
    indices
        ``(n, k)`` row indices into the context.
    n_context
        Number of context cells.
    where
        Where the indices come from (e.g. ``"target.obsm['homology_neighbors']"``), for the message.

    Returns
    -------
    numpy.ndarray
        The indices as int64.

    Raises
    ------
    ValueError
        On non-integer values or indices out of range, naming the first offending cell (row).

    Examples
    --------
    >>> check_neighbor_indices(np.array([[0, 2]]), 3, "obsm['homology_neighbors']")
    array([[0, 2]])
    """
    indices = np.asarray(indices)
    if indices.ndim != 2:
        raise ValueError(f"{where} must be a 2D (cells x neighbours) array, got shape {indices.shape}.")
    if not np.issubdtype(indices.dtype, np.integer):
        as_float = indices.astype(np.float64)
        if not (np.isfinite(as_float).all() and (as_float == np.round(as_float)).all()):
            raise ValueError(f"{where} must hold integer row indices into the context, got {indices.dtype}.")
    indices = indices.astype(np.int64)
    bad = (indices < 0) | (indices >= n_context)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{where} holds indices out of range for a context of {n_context} cells, e.g. "
            f"{int(indices[row, col])} in row {int(row)}: was it computed against another context?"
        )
    return indices


# --- gene mapping rates -------------------------------------------------------------------------------

#: below this share of mapped genes the mapping is refused (ValueError)
MIN_MAPPED_ERROR = 0.05
#: below this share a UserWarning names the likely cause
MIN_MAPPED_WARN = 0.25
_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")


def gene_mapping_hints(
    names: Collection[str], expected: Collection[str], others: dict[str, Collection[str]] | None = None
) -> list[str]:
    """Likely causes of a poor gene mapping, most frequent first.

    Parameters
    ----------
    names
        The gene names that should have mapped.
    expected
        The names they are looked up in (e.g. the ortholog table's source-species symbols).
    others
        ``{cause: names}``: a cause is reported when many ``names`` are found among its names (e.g.
        ``{"source and target species swapped?": target_symbols}``).

    Returns
    -------
    list of str
        One line per cause, with the number of names it explains, most first.

    Examples
    --------
    >>> gene_mapping_hints(["gcg", "ins"], ["GCG", "INS"])
    ['2 of 2 names match only when case is ignored (e.g. gcg vs GCG)']
    """
    names = pd.Index([str(n) for n in names])
    expected_set = {str(e) for e in expected}
    n = len(names)
    found = []
    ensembl = names.str.match(_ENSEMBL)
    if ensembl.any():
        found.append(
            (
                int(ensembl.sum()),
                f"names look like Ensembl gene IDs (e.g. {names[ensembl][0]}), the table holds gene symbols",
            )
        )
    upper = {e.upper(): e for e in expected_set}
    unmatched = names[~names.isin(list(expected_set))]
    case = [u for u in unmatched if u.upper() in upper]
    if case:
        found.append(
            (len(case), f"names match only when case is ignored (e.g. {case[0]} vs {upper[case[0].upper()]})")
        )
    for cause, other in (others or {}).items():
        hits = int(names.isin([str(o) for o in other]).sum())
        if hits:
            found.append((hits, f"names {cause}"))
    found.sort(key=lambda item: -item[0])
    return [f"{count} of {n} {text}" for count, text in found if count > 0]


def check_mapping_rate(n_mapped: int, n_total: int, what: str, hints: Callable[[], list[str]]) -> None:
    """Raise (below 5 %) or warn (below 25 %) when few genes map, with the likely causes.

    Parameters
    ----------
    n_mapped
        Genes that mapped.
    n_total
        Genes that could have mapped.
    what
        What was mapped, for the message (e.g. ``"translate_genes (human -> mouse)"``).
    hints
        Called only when the rate is low: likely causes (see :func:`gene_mapping_hints`).

    Raises
    ------
    ValueError
        When fewer than 5 % of the genes (or none) map.

    Warns
    -----
    UserWarning
        When fewer than 25 % map.

    Examples
    --------
    >>> check_mapping_rate(900, 1000, "translate_genes", lambda: [])
    """
    rate = n_mapped / n_total if n_total else 0.0
    if n_mapped > 0 and rate >= MIN_MAPPED_WARN:
        return
    causes = hints()
    text = f"{what}: only {n_mapped} of {n_total} genes map ({rate:.1%})."
    text += (
        " Likely cause: " + "; ".join(causes) + "." if causes else " Check the gene identifiers and species."
    )
    if n_mapped == 0 or rate < MIN_MAPPED_ERROR:
        raise ValueError(text)
    warnings.warn(text, UserWarning, stacklevel=3)


# --- context fingerprint ------------------------------------------------------------------------------

#: key, in ``uns[<homology key>]`` of the target, of the fingerprint of the context searched
CONTEXT_FINGERPRINT_KEY = "context_fingerprint"


def context_fingerprint(adata: AnnData) -> str:
    """Fingerprint of a context AnnData: its size and a hash of its cell and gene names, in order.

    Results that index context cells by row (neighbours, candidates, a target model's stored context
    latents) record it, so that they are never used with other cells, or the same cells in another order.

    Parameters
    ----------
    adata
        The context data.

    Returns
    -------
    str
        ``"<n_obs>x<n_vars>:<sha256 prefix>"``.

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> context_fingerprint(ad.AnnData(np.zeros((2, 3))))[:4]
    '2x3:'
    """
    digest = hashlib.sha256()
    for index in (adata.obs_names, adata.var_names):
        digest.update("\x1f".join(index.astype(str)).encode())
        digest.update(b"\x1e")
    return f"{adata.n_obs}x{adata.n_vars}:{digest.hexdigest()[:32]}"


def check_context_fingerprint(recorded: str | None, context: AnnData, where: str) -> None:
    """Raise unless ``context`` has the fingerprint ``recorded`` (``None``: nothing recorded, nothing checked).

    Parameters
    ----------
    recorded
        The fingerprint stored with a result (see :func:`context_fingerprint`), or ``None`` for results
        written before fingerprints were recorded.
    context
        The context data now given.
    where
        Where the fingerprint was recorded (e.g. ``"target.uns['homology']"``), for the message.

    Raises
    ------
    ValueError
        When the fingerprints differ, saying whether the size or only the names or their order differ.

    Examples
    --------
    >>> context = AnnData(np.ones((3, 2)))
    >>> recorded = context_fingerprint(context)
    >>> check_context_fingerprint(recorded, context, "uns['homology']")
    >>> check_context_fingerprint(recorded, context[:2].copy(), "uns['homology']")
    Traceback (most recent call last):
    ...
    ValueError: uns['homology'] was computed against another context: it was computed for a context of 3 cells x 2 genes, this one has 2 cells x 2 genes. ...
    """
    if recorded is None:
        return
    actual = context_fingerprint(context)
    if str(recorded) == actual:
        return
    size, now = str(recorded).split(":")[0], f"{context.n_obs}x{context.n_vars}"
    detail = (
        f"it was computed for a context of {size.replace('x', ' cells x ')} genes, this one has "
        f"{context.n_obs} cells x {context.n_vars} genes"
        if size != now
        else "the context has the same size but other cell or gene names, or another order"
    )
    raise ValueError(
        f"{where} was computed against another context: {detail}. Use the context it was computed "
        "with (same cells and genes, same order), or rerun xspecies.pp.homology_neighbors."
    )


# --- key names ----------------------------------------------------------------------------------------


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
    >>> check_key_name("a/b")
    Traceback (most recent call last):
    ...
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
