"""The one layout of pp and tl results in an AnnData: ``uns[key_added] = {"params": {...}, <result fields>}``."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from anndata import AnnData

#: field of ``uns[key_added]`` that holds the table a tool returns
TABLE = "table"


def store_result(adata: AnnData, key_added: str, params: Mapping, **fields) -> None:
    """Write ``{"params": params, **fields}`` to ``adata.uns[key_added]`` (replacing an earlier result)."""
    adata.uns[key_added] = {"params": dict(params), **fields}


def stored_params(stored: Mapping) -> dict:
    """The parameters of a stored result ``uns[key_added]``, in either layout.

    Results hold their parameters in ``stored["params"]``; an AnnData saved by an earlier xspecies
    (``pp.homology_neighbors``, ``pp.translate_genes``, ``pp.prepare``) holds them at the top level
    beside the results, which are then returned with them.

    Parameters
    ----------
    stored
        The ``uns[key_added]`` entry.

    Returns
    -------
    dict
        The parameters (``{}`` when none are recorded).

    Examples
    --------
    >>> stored_params({"params": {"labels_key": "cell_type"}, "context_n_obs": 3})
    {'labels_key': 'cell_type'}
    >>> stored_params({"labels_key": "cell_type", "context_n_obs": 3})["labels_key"]
    'cell_type'
    """
    params = stored.get("params")
    return dict(params) if isinstance(params, Mapping) else dict(stored)


def read_result(data, key: str, field: str, producer: str):
    """The ``field`` of a stored tool result, or ``data`` itself when it is not an AnnData.

    Parameters
    ----------
    data
        The result itself (returned as is) or an AnnData holding it in ``uns[key][field]``.
    key
        ``uns`` key the producing tool wrote (its ``key_added``).
    field
        Field of ``uns[key]`` (e.g. ``"table"``).
    producer
        Name of the producing tool, for the error message (e.g. ``"tl.homologous_lfc"``).

    Returns
    -------
    object
        The stored field, or ``data``.

    Raises
    ------
    KeyError
        Naming the key and the tool to run when the AnnData holds no such result.

    Examples
    --------
    >>> import pandas as pd
    >>> from anndata import AnnData
    >>> adata = AnnData(obs=pd.DataFrame(index=["a", "b"]))
    >>> store_result(adata, "demo", {"n": 1}, table=pd.DataFrame({"x": [1.0]}))
    >>> read_result(adata, "demo", "table", "tl.demo")["x"].tolist()
    [1.0]
    """
    if not isinstance(data, AnnData):
        return data
    stored = data.uns.get(key)
    if not isinstance(stored, Mapping) or field not in stored:
        raise KeyError(
            f"no {producer} result at adata.uns[{key!r}][{field!r}]: run xspecies.{producer} first "
            f"(with key_added={key!r}) or pass its result"
        )
    return stored[field]


def as_table(data, key: str, producer: str) -> pd.DataFrame:
    """The table of a tool result: ``data`` itself, or ``uns[key]["table"]`` of an AnnData."""
    table = read_result(data, key, TABLE, producer)
    if not isinstance(table, pd.DataFrame):
        raise TypeError(
            f"expected the DataFrame returned by xspecies.{producer} or an AnnData holding it, "
            f"got {type(table).__name__}"
        )
    return table
