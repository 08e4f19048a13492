"""Pathway summary of homologous log2 fold changes: mean LFC per gene set with a permutation test."""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.stats import false_discovery_control

from xspecies._results import as_table, store_result

GeneSets = str | Path | Mapping[str, Iterable[str]] | pd.DataFrame
_SYMBOL_COLUMNS = {"target": "gene_target", "context": "gene_context"}
_CHUNK = 256  # permutations drawn at once (memory: _CHUNK x genes random keys)


def _read_gmt(path: str | Path) -> pd.DataFrame:
    """Long ``source``/``target`` table of a GMT file (name, description, genes; tab-separated)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gene set file {str(path)!r} not found")
    opener = gzip.open if path.suffix == ".gz" else open
    rows, names = [], set()
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = [f.strip() for f in line.rstrip("\n\r").split("\t")]
            if not any(fields):
                continue
            name, genes = fields[0], [g for g in fields[2:] if g]
            if not name:
                raise ValueError(f"{path}: line {number} has no gene set name")
            if name in names:
                raise ValueError(f"{path}: gene set {name!r} appears twice (line {number})")
            names.add(name)
            rows += [(name, g) for g in genes] or [(name, None)]
    return pd.DataFrame(rows, columns=["source", "target"])


def _long_table(gene_sets: GeneSets) -> pd.DataFrame:
    """Gene sets as a long ``source``/``target`` table (an empty set keeps one row with target None)."""
    if isinstance(gene_sets, str | Path):
        return _read_gmt(gene_sets)
    if isinstance(gene_sets, pd.DataFrame):
        missing = [c for c in ("source", "target") if c not in gene_sets]
        if missing:
            raise KeyError(
                f"the gene set table lacks columns {missing}: expected a long table with 'source' (gene set) "
                "and 'target' (gene) columns, as decoupler's read_gmt or op.hallmark return"
            )
        return gene_sets[["source", "target"]].astype({"source": str})
    if isinstance(gene_sets, Mapping):
        bad = [name for name, genes in gene_sets.items() if isinstance(genes, str)]
        if bad:
            raise TypeError(f"gene sets {bad} are given as one string: give a list of gene symbols")
        rows = [(str(name), g) for name, genes in gene_sets.items() for g in (list(genes) or [None])]
        return pd.DataFrame(rows, columns=["source", "target"])
    raise TypeError(
        "gene_sets must be a GMT file path, a dict {name: genes} or a DataFrame with 'source' and 'target' "
        f"columns, got {type(gene_sets).__name__}"
    )


def _gene_sets(gene_sets: GeneSets) -> pd.DataFrame:
    """Distinct (``pathway``, ``gene``) pairs, in the order of the sets; errors for empty input."""
    long = _long_table(gene_sets)
    if long.empty:
        raise ValueError("no gene sets given (the collection is empty)")
    genes = long["target"].astype(object)
    genes = genes.where(genes.isna(), genes.astype(str).str.strip()).replace("", None)
    long = long.assign(target=genes)
    empty = sorted(set(long["source"]) - set(long.loc[genes.notna(), "source"]))
    if empty:
        raise ValueError(f"gene sets without genes: {empty[:10]}{' ...' if len(empty) > 10 else ''}")
    long = long[genes.notna()].drop_duplicates()
    return long.rename(columns={"source": "pathway", "target": "gene"}).reset_index(drop=True)


def _symbol_column(lfc: pd.DataFrame, genes: pd.Series, symbols: str) -> str:
    """The gene column of ``lfc`` that the gene sets' symbols name."""
    wanted = set(genes)
    found = {c: len(wanted & set(lfc[c].astype(str))) for c in _SYMBOL_COLUMNS.values()}
    column = (
        max(found, key=lambda c: (found[c], c == "gene_target"))
        if symbols == "auto"
        else _SYMBOL_COLUMNS[symbols]
    )
    if not found[column]:
        where = "gene_target or gene_context" if symbols == "auto" else column
        raise ValueError(
            f"no gene of the gene sets (e.g. {sorted(wanted)[:3]}) is in the LFC table's {where} column "
            f"(target symbols e.g. {list(lfc['gene_target'][:3])}, context symbols e.g. "
            f"{list(lfc['gene_context'][:3])}): give gene sets of one of the two species (translate others "
            "with xspecies.pp.ortholog_table)"
        )
    return column


def _permutation_pvalues(
    universe: np.ndarray,
    sizes: np.ndarray,
    observed: np.ndarray,
    n_permutations: int,
    alternative: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """P-values of the mean of ``observed`` sets against the means of random sets of ``sizes`` genes.

    Each permutation orders the gene universe by uniform random keys; the random set of size ``k`` is
    its first ``k`` genes, so one prefix sum gives the null means of all sizes at once. Only the first
    ``max(sizes)`` genes are ordered (partition, then sort of those).
    """
    center = universe.mean()
    max_size = int(sizes.max())
    tolerance = 1e-12 * max(1.0, float(np.abs(universe).max()))
    exceed = np.zeros(len(sizes), dtype=np.int64)
    for start in range(0, n_permutations, _CHUNK):
        keys = rng.random((min(_CHUNK, n_permutations - start), len(universe)))
        picks = np.argpartition(keys, max_size - 1, axis=1)[:, :max_size]
        picks = np.take_along_axis(picks, np.take_along_axis(keys, picks, 1).argsort(axis=1), 1)
        null = np.cumsum(universe[picks], axis=1)[:, sizes - 1] / sizes  # (n, n_sets)
        if alternative == "greater":
            hit = null >= observed - tolerance
        elif alternative == "less":
            hit = null <= observed + tolerance
        else:
            hit = np.abs(null - center) >= np.abs(observed - center) - tolerance
        exceed += hit.sum(axis=0)
    return (exceed + 1) / (n_permutations + 1)


def pathway_lfc(
    data: pd.DataFrame | AnnData,
    gene_sets: GeneSets,
    *,
    key: str = "homologous_lfc",
    min_genes: int = 5,
    symbols: Literal["auto", "target", "context"] = "auto",
    prob_delta: float = 0.9,
    n_permutations: int = 1000,
    alternative: Literal["two-sided", "greater", "less"] = "two-sided",
    random_state: int = 0,
    key_added: str = "pathway_lfc",
) -> pd.DataFrame:
    """Summarise homologous log2 fold changes per pathway and cell type, with a permutation test.

    The gene sets are matched to the homologous gene pairs of the LFC table through the symbols of
    either species (``gene_target`` or ``gene_context``: each row pairs a target gene with its context
    ortholog, so a human or a mouse collection works for a human-mouse table). Per cell type, a gene
    set is kept when at least ``min_genes`` of its genes have a finite LFC, and summarised by

    - ``n_genes``: the number of its genes in the table;
    - ``mean_lfc``: their mean LFC (target / context);
    - ``frac_called``: the share of its genes with ``p = P(|LFC| > lfc_delta)`` at least ``prob_delta``
      (the genes :func:`xspecies.pl.homologous_lfc` calls up or down; only when the table has a ``p`` column);
    - ``pval``: a permutation p-value of ``mean_lfc`` against the means of ``n_permutations`` random
      gene sets of the same size drawn without replacement from the cell type's genes in the table,
      ``(1 + #{as or more extreme}) / (1 + n_permutations)``; two-sided means farther from the mean LFC
      of all genes of the cell type, so the species-wide offset shared by all genes is not counted as
      a pathway effect;
    - ``pval_adj``: Benjamini-Hochberg adjusted within each cell type.

    This is the pathway summary of the original scSpecies (``load_and_filter_pathways``), with gene sets
    from any source, ortholog matching and a test.

    Parameters
    ----------
    data
        Output of :func:`xspecies.tl.homologous_lfc` (columns ``cell_type``, ``gene_target``,
        ``gene_context``, ``lfc`` and ``p``), or the AnnData holding it (``uns[key]["table"]``, e.g.
        ``target.adata``); :func:`xspecies.tl.data_lfc` output works as well (it has no ``p``, so no
        ``frac_called``; genes with a missing LFC are left out).
    gene_sets
        Path of a GMT file (name, description and genes per tab-separated line; ``.gmt.gz`` too), a
        dict ``{name: [genes]}``, or a long table with columns ``source`` (gene set) and ``target``
        (gene), the format of decoupler (``decoupler.pp.read_gmt``, ``decoupler.op.hallmark``).
    key
        With an AnnData as ``data``: the ``key_added`` of the LFC result to read.
    min_genes
        Minimum number of the set's genes present in the table for a cell type.
    symbols
        Species whose symbols the gene sets use: ``"target"`` (matched to ``gene_target``),
        ``"context"`` (``gene_context``), or ``"auto"``: the column sharing more symbols with the
        gene sets.
    prob_delta
        Probability from which a gene counts as changed in ``frac_called``.
    n_permutations
        Random gene sets per set size and cell type; the smallest p-value is ``1 / (n_permutations + 1)``.
    alternative
        ``"two-sided"``, ``"greater"`` (mean LFC higher in the target) or ``"less"``.
    random_state
        Seed of the random gene sets.
    key_added
        With an AnnData as ``data``: ``uns`` key of the result (nothing is stored for a DataFrame).

    Returns
    -------
    pandas.DataFrame
        One row per (cell type, kept gene set): ``cell_type``, ``pathway``, ``n_genes``, ``mean_lfc``,
        ``frac_called`` (with a ``p`` column), ``pval``, ``pval_adj`` and ``genes`` (the matched
        symbols, ``;``-separated), in the order of the cell types in ``lfc`` and of the gene sets.
        With an AnnData as ``data``, also stored in its ``uns[key_added]`` as
        ``{"params": {...}, "table": df}`` (read by :func:`xspecies.pl.pathway_lfc`).

    Raises
    ------
    FileNotFoundError
        When the GMT file does not exist.
    KeyError
        When ``lfc`` or a gene set table lacks a column.
    ValueError
        For an empty collection, gene sets without genes, gene sets naming no gene of the table, or
        when no set reaches ``min_genes`` genes.

    Notes
    -----
    Gene set collections. A GMT file of gene symbols from MSigDB (https://www.gsea-msigdb.org), e.g.
    the 50 hallmark sets ``h.all.v2024.1.Hs.symbols.gmt`` (human) or ``mh.all.v2024.1.Mm.symbols.gmt``
    (mouse), is downloaded once and then read offline (check the collection's license on its page):

    .. code-block:: python

        res = xs.tl.pathway_lfc(lfc, "h.all.v2024.1.Hs.symbols.gmt", min_genes=10)

    With decoupler installed (``pip install decoupler``), its readers give the long table directly;
    save it for offline use:

    .. code-block:: python

        import decoupler as dc

        hallmark = dc.op.hallmark(organism="human")  # MSigDB hallmarks through OmniPath (online)
        hallmark.to_csv("hallmark_human.csv", index=False)  # later, offline: pd.read_csv(...)
        res = xs.tl.pathway_lfc(lfc, pd.read_csv("hallmark_human.csv"))

    A collection of a third species is translated first, e.g. with
    ``xs.pp.ortholog_table("rat", "human", source="mgi")`` merged on its rat column.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> import xspecies as xs
    >>> rng = np.random.default_rng(0)
    >>> lfc = pd.DataFrame(
    ...     {
    ...         "cell_type": "beta",
    ...         "gene_target": [f"GENE{i}" for i in range(200)],
    ...         "gene_context": [f"Gene{i}" for i in range(200)],
    ...         "lfc": np.r_[np.full(10, 2.0), rng.normal(0, 0.5, 190)],
    ...         "p": np.r_[np.full(10, 0.95), rng.uniform(0, 0.5, 190)],
    ...     }
    ... )
    >>> sets = {"shifted": [f"Gene{i}" for i in range(10)], "other": [f"Gene{i}" for i in range(50, 70)]}
    >>> res = xs.tl.pathway_lfc(lfc, sets, min_genes=5, n_permutations=200)
    >>> res[["pathway", "n_genes", "mean_lfc", "frac_called"]]
       pathway  n_genes  mean_lfc  frac_called
    0  shifted       10  2.000000          1.0
    1    other       20  0.176388          0.0
    >>> bool(res["pval"].iloc[0] < 0.01)
    True
    """
    lfc = as_table(data, key, "tl.homologous_lfc")
    missing = [c for c in ("cell_type", "gene_target", "gene_context", "lfc") if c not in lfc]
    if missing:
        raise KeyError(f"lfc lacks columns {missing} (expected tl.homologous_lfc or tl.data_lfc output)")
    if isinstance(min_genes, bool) or not isinstance(min_genes, int | np.integer) or min_genes < 1:
        raise ValueError(f"min_genes must be an integer >= 1, got {min_genes!r}")
    if not 0 <= prob_delta <= 1:
        raise ValueError(f"prob_delta must be in [0, 1], got {prob_delta}")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    if symbols not in ("auto", *_SYMBOL_COLUMNS):
        raise ValueError(f"symbols must be 'auto', 'target' or 'context', got {symbols!r}")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")

    members = _gene_sets(gene_sets)
    column = _symbol_column(lfc, members["gene"], symbols)
    stats = ["lfc", "p"] if "p" in lfc else ["lfc"]
    table = lfc[["cell_type", column, *stats]].rename(columns={column: "gene"})
    table = table.astype({"cell_type": str, "gene": str})
    table = table[np.isfinite(table["lfc"].to_numpy(dtype=float))].drop_duplicates(["cell_type", "gene"])
    if "p" in table:
        table["called"] = table["p"].to_numpy(dtype=float) >= prob_delta
    matched = members.merge(table, on="gene")
    sums = {"n_genes": ("lfc", "size"), "mean_lfc": ("lfc", "mean"), "genes": ("gene", ";".join)}
    if "p" in table:
        sums["frac_called"] = ("called", "mean")
    summary = matched.groupby(["cell_type", "pathway"], sort=False).agg(**sums).reset_index()
    kept = summary[summary["n_genes"] >= min_genes]
    if kept.empty:
        largest = ""
        if len(summary):
            best = summary.loc[summary["n_genes"].idxmax()]
            largest = f"; the largest overlap is {best['n_genes']} genes ({best['pathway']})"
        raise ValueError(
            f"no gene set has at least min_genes={min_genes} genes with a finite LFC in the table{largest}"
        )

    rng = np.random.default_rng(random_state)
    frames = []
    for cell_type in pd.unique(table["cell_type"]):
        rows = kept[kept["cell_type"] == cell_type].copy()
        if rows.empty:
            continue
        universe = table.loc[table["cell_type"] == cell_type, "lfc"].to_numpy(dtype=float)
        sizes = rows["n_genes"].to_numpy(dtype=np.int64)
        rows["pval"] = _permutation_pvalues(
            universe, sizes, rows["mean_lfc"].to_numpy(float), n_permutations, alternative, rng
        )
        rows["pval_adj"] = false_discovery_control(rows["pval"].to_numpy())
        frames.append(rows)
    result = pd.concat(frames, ignore_index=True)  # cell types in table order, sets in given order
    columns = ["cell_type", "pathway", "n_genes", "mean_lfc", "frac_called", "pval", "pval_adj", "genes"]
    result = result[[c for c in columns if c in result]].reset_index(drop=True)
    if isinstance(data, AnnData):
        params = {
            "key": key,
            "gene_sets": str(gene_sets) if isinstance(gene_sets, str | Path) else "",
            "min_genes": int(min_genes),
            "symbols": symbols,
            "prob_delta": float(prob_delta),
            "n_permutations": int(n_permutations),
            "alternative": alternative,
            "random_state": int(random_state),
        }
        store_result(data, key_added, params, table=result)
    return result
