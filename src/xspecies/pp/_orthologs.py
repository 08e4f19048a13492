"""Ortholog tables (embedded, MGI, mygene) and the translation of gene symbols between species."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from xspecies._results import store_result
from xspecies._validation import (
    check_mapping_rate,
    check_not_view,
    check_unique_var_names,
    gene_mapping_hints,
)
from xspecies.datasets._fetch import fetch, network_errors, offline_error

from ._species import Species, resolve_species

__all__ = ["ortholog_table", "translate_genes"]

MGI_URL = "https://www.informatics.jax.org/downloads/reports/HOM_AllOrganism.rpt"
MYGENE_URL = "https://mygene.info"
#: What works without a connection (named in the error of the online sources).
OFFLINE_TABLE = 'the embedded human <-> mouse table (table="embedded") or your own table (a DataFrame)'
EMBEDDED_FILE = "orthologs_human_mouse.tsv.gz"
ORTHOLOG_TYPES = ("one2one", "one2many", "many2many")
POLICIES = ("best", "one2one", "all")
_SOURCES = ("embedded", "mgi", "mygene")


def _types(pairs: pd.DataFrame) -> np.ndarray:
    """one2one / one2many / many2many from the number of partners of both genes of each pair."""
    n_src = pairs.groupby("source")["target"].transform("nunique").to_numpy()
    n_tgt = pairs.groupby("target")["source"].transform("nunique").to_numpy()
    one_src, one_tgt = n_src == 1, n_tgt == 1
    return np.where(one_src & one_tgt, "one2one", np.where(one_src | one_tgt, "one2many", "many2many"))


def _finish(pairs: pd.DataFrame, src: Species, tgt: Species) -> pd.DataFrame:
    """Standard table: columns ``[src.name, tgt.name, "type", "support"]``, best-supported pairs first."""
    pairs = pairs.dropna(subset=["source", "target"]).astype({"source": str, "target": str})
    pairs = pairs.drop_duplicates(["source", "target"])
    if "support" not in pairs:
        pairs = pairs.assign(support=1)
    if "type" not in pairs:
        pairs = pairs.assign(type=_types(pairs))
    pairs = pairs.sort_values("support", ascending=False, kind="stable")
    out = pairs[["source", "target", "type", "support"]].reset_index(drop=True)
    return out.rename(columns={"source": src.name, "target": tgt.name})


def _embedded(src: Species, tgt: Species) -> pd.DataFrame:
    if {src.name, tgt.name} != {"human", "mouse"}:
        raise ValueError(
            f"the embedded ortholog table covers human <-> mouse only, not {src.name} -> {tgt.name}: "
            'use table="mgi" (human, mouse, rat, zebrafish, chimpanzee, macaque, dog, cattle, chicken, frog) '
            'or table="mygene" (any pair of NCBI taxon ids).'
        )
    with files("xspecies").joinpath("data", EMBEDDED_FILE).open("rb") as fh:
        raw = pd.read_csv(fh, sep="\t", compression="gzip")
    return _finish(raw.rename(columns={src.name: "source", tgt.name: "target"}), src, tgt)


def _mgi(src: Species, tgt: Species) -> pd.DataFrame:
    path = fetch(MGI_URL, "HOM_AllOrganism.rpt", what="the MGI homology report", alternative=OFFLINE_TABLE)
    report = pd.read_csv(path, sep="\t", dtype=str)
    key, taxon = report.columns[0], "NCBI Taxon ID"
    if taxon not in report or "Symbol" not in report:
        raise ValueError(f"unexpected MGI report format in {path}: columns {list(report.columns)}.")
    sides = [report.loc[report[taxon] == str(s.taxon_id), [key, "Symbol"]] for s in (src, tgt)]
    for side, s in zip(sides, (src, tgt), strict=True):
        if side.empty:
            raise ValueError(
                f"{s.name} (taxon {s.taxon_id}) is not in the MGI homology report: use table='mygene'."
            )
    pairs = sides[0].merge(sides[1], on=key, suffixes=("_s", "_t"))
    return _finish(pairs.rename(columns={"Symbol_s": "source", "Symbol_t": "target"}), src, tgt)


def _online(call, *args, **kwargs):
    """``call(*args, **kwargs)`` of the mygene client; no connection gives one clear line."""
    try:
        return call(*args, **kwargs)
    except network_errors() as exc:
        raise offline_error(
            "the mygene.info ortholog lookup", MYGENE_URL, OFFLINE_TABLE, exc, cached=False
        ) from None


def _mygene(src: Species, tgt: Species, genes: Sequence[str] | None) -> pd.DataFrame:
    if genes is None:
        raise ValueError('table="mygene" needs the gene symbols to look up (genes=...).')
    import mygene

    client = mygene.MyGeneInfo()
    hits = _online(
        client.querymany,
        list(genes),
        scopes="symbol",
        species=src.taxon_id,
        fields="homologene",
        verbose=False,
    )
    links = [
        (hit["query"], int(gene_id))
        for hit in hits
        if not hit.get("notfound")
        for taxon, gene_id in hit.get("homologene", {}).get("genes", [])
        if int(taxon) == tgt.taxon_id
    ]
    if not links:
        return _finish(pd.DataFrame(columns=["source", "target"]), src, tgt)
    ids = sorted({gene_id for _, gene_id in links})
    symbols = {
        int(rec["query"]): rec["symbol"]
        for rec in _online(client.getgenes, ids, fields="symbol", verbose=False)
        if not rec.get("notfound") and "symbol" in rec
    }
    pairs = pd.DataFrame([(s, symbols.get(g)) for s, g in links], columns=["source", "target"])
    return _finish(pairs, src, tgt)


def ortholog_table(
    source_species: str | int,
    target_species: str | int,
    *,
    source: Literal["embedded", "mgi", "mygene"] = "embedded",
    genes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Ortholog pairs between two species.

    Parameters
    ----------
    source_species, target_species
        Common names (``"human"``, ``"mouse"``, ``"rat"``, ``"zebrafish"``, ...) or NCBI taxon ids.
    source
        ``"embedded"``: the human <-> mouse table shipped with the package (HCOP + Ensembl, pairs predicted by
        at least two databases; see the data provenance page). ``"mgi"``: the MGI homology report
        ``HOM_AllOrganism.rpt`` (downloaded once with pooch; human, mouse, rat, zebrafish, chimpanzee,
        macaque, dog, cattle, chicken, frog). ``"mygene"``: HomoloGene groups queried through mygene.info
        for any pair of NCBI taxon ids (needs ``genes``).
    genes
        Source-species symbols to look up (``source="mygene"`` only).

    Returns
    -------
    DataFrame with columns ``[<source name>, <target name>, "type", "support"]``: one row per ortholog pair,
    ``type`` one of one2one / one2many / many2many, ``support`` the number of databases predicting the pair
    (1 for MGI and mygene); best-supported pairs first.

    Examples
    --------
    >>> import xspecies as xs
    >>> table = xs.pp.ortholog_table("human", "mouse")
    >>> table[table["human"] == "GCG"]["mouse"].tolist()
    ['Gcg']
    """
    src, tgt = resolve_species(source_species), resolve_species(target_species)
    if src.taxon_id == tgt.taxon_id:
        raise ValueError(f"source and target species are the same ({src.name}).")
    if source == "embedded":
        return _embedded(src, tgt)
    if source == "mgi":
        return _mgi(src, tgt)
    if source == "mygene":
        return _mygene(src, tgt, genes)
    raise ValueError(f"unknown ortholog source {source!r}: use one of {_SOURCES}.")


def _user_table(table: pd.DataFrame, src: Species, tgt: Species) -> pd.DataFrame:
    if {src.name, tgt.name} <= set(table.columns):
        pairs = table.rename(columns={src.name: "source", tgt.name: "target"})
    elif table.shape[1] >= 2:
        pairs = table.rename(columns={table.columns[0]: "source", table.columns[1]: "target"})
    else:
        raise ValueError("an ortholog table needs two columns: source-species and target-species symbols.")
    if "type" in pairs and not pairs["type"].dropna().isin(ORTHOLOG_TYPES).all():
        raise ValueError(f"the table's 'type' column may only hold {ORTHOLOG_TYPES}.")
    keep = [c for c in ("source", "target", "type", "support") if c in pairs]
    return _finish(pairs[keep], src, tgt)


def _select(pairs: pd.DataFrame, policy: str) -> pd.DataFrame:
    """Apply the many-to-many policy to best-first pairs (columns source, target, type, support)."""
    if policy == "one2one":
        return pairs[pairs["type"] == "one2one"].drop_duplicates("source")
    if policy == "all":
        return pairs.groupby("source", sort=False, as_index=False).agg(
            target=("target", "|".join), type=("type", "first"), support=("support", "max")
        )
    # "best": greedy one-to-one matching, best-supported pairs first
    used_src: set[str] = set()
    used_tgt: set[str] = set()
    keep = []
    for i, s, t in zip(range(len(pairs)), pairs["source"], pairs["target"], strict=True):
        if s not in used_src and t not in used_tgt:
            used_src.add(s)
            used_tgt.add(t)
            keep.append(i)
    return pairs.iloc[keep]


def translate_genes(
    adata: AnnData,
    source_species: str | int,
    target_species: str | int,
    *,
    table: pd.DataFrame | str | None = None,
    policy: Literal["best", "one2one", "all"] = "best",
    key_added: str = "ortholog",
    copy: bool = False,
) -> AnnData | None:
    """Map the genes of ``adata`` to their orthologs in another species.

    No gene is removed: unmapped genes keep a missing value, so the matrix is never changed. The
    mapping is computed completely before anything is written. When few genes map the likely cause
    (Ensembl IDs instead of symbols, symbols in another case, species swapped) is named: below 5 % of
    ``n_vars`` (or none) a ValueError, below 25 % a UserWarning.

    Parameters
    ----------
    adata
        Data of ``source_species``; ``var_names`` are gene symbols (unique).
    source_species, target_species
        Common names (``"human"``, ``"mouse"``, ``"rat"``, ``"zebrafish"``, ...) or NCBI taxon ids.
    table
        ``None`` or ``"embedded"``: the embedded human <-> mouse table (other pairs raise an error
        suggesting ``"mgi"`` or ``"mygene"``); ``"mgi"`` or ``"mygene"``: online sources (see
        :func:`ortholog_table`); or a DataFrame of ortholog pairs with columns named after the two species
        (else its first two columns are taken as source and target symbols) and optional ``type`` and
        ``support`` columns (missing types are computed from the pairs; rows are taken best first when
        there is no ``support``).
    key_added
        Name of the ``var`` column written.
    policy
        How one-to-many and many-to-many orthologs are handled:

        - ``"best"``: a one-to-one assignment: pairs are taken best-supported first and a pair is kept
          when neither of its genes has a partner yet, so every gene gets at most one partner and no two
          genes share one (``INS`` -> ``Ins2``, the better-supported of ``Ins1``/``Ins2``).
        - ``"one2one"``: only genes with a one-to-one ortholog are mapped.
        - ``"all"``: every partner, best first, joined by ``"|"`` (for inspection; the neighbour search
          uses single symbols only).

    copy
        Return a modified copy instead of writing to ``adata``.

    Returns
    -------
    ``None`` (or the copy when ``copy=True``); writes

    - ``adata.var[key_added]``: target-species symbol (missing when unmapped),
    - ``adata.var[f"{key_added}_type"]``: one2one / one2many / many2many (missing when unmapped),
    - ``adata.var[f"{key_added}_support"]``: number of databases predicting the pair (0 when unmapped),
    - ``adata.uns[key_added]``: ``"params"`` (``source_species``, ``target_species``, ``table``,
      ``policy``) and ``n_mapped``, the number of genes mapped.

    Examples
    --------
    >>> import xspecies as xs
    >>> human = xs.datasets.pancreas("human")
    >>> xs.pp.translate_genes(human, "human", "mouse")
    >>> human.var.loc["GCG", "ortholog"]
    'Gcg'
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: use one of {POLICIES}.")
    check_unique_var_names(adata)
    if not copy:
        check_not_view(adata)
    src, tgt = resolve_species(source_species), resolve_species(target_species)
    if isinstance(table, pd.DataFrame):
        pairs, table_name = _user_table(table, src, tgt), "user"
    else:
        table_name = "embedded" if table is None else table
        genes = list(adata.var_names) if table_name == "mygene" else None
        pairs = ortholog_table(src.taxon_id, tgt.taxon_id, source=table_name, genes=genes)
    pairs = pairs.rename(columns={src.name: "source", tgt.name: "target"})
    known = pairs
    pairs = pairs[pairs["source"].isin(adata.var_names)]
    chosen = _select(pairs, policy).set_index("source")

    index = adata.var_names
    columns = {
        key_added: chosen["target"].reindex(index).astype(object).where(lambda s: s.notna(), None),
        f"{key_added}_type": pd.Categorical(chosen["type"].reindex(index), categories=ORTHOLOG_TYPES),
        f"{key_added}_support": chosen["support"].reindex(index).fillna(0).astype(int),
    }
    n_mapped = int(columns[key_added].notna().sum())
    check_mapping_rate(
        n_mapped,
        adata.n_vars,
        f"translate_genes ({src.name} -> {tgt.name})",
        lambda: gene_mapping_hints(
            index,
            known["source"],
            {f"are {tgt.name} symbols (source and target species swapped?)": known["target"]},
        ),
    )
    adata = adata.copy() if copy else adata
    for column, values in columns.items():
        adata.var[column] = values
    params = {"source_species": src.name, "target_species": tgt.name, "table": table_name, "policy": policy}
    store_result(adata, key_added, params, n_mapped=n_mapped)
    return adata if copy else None
