"""Build the embedded human <-> mouse ortholog table ``src/xspecies/data/orthologs_human_mouse.tsv.gz``.

Inputs (``--source-dir``, default ``/work/shared/data/orthologs``):

- ``hcop_human_mouse.csv.gz``: HGNC Comparison of Orthology Predictions (HCOP), human <-> mouse; the column
  ``supporting_source`` lists the databases that predict each pair.
- ``ensembl_biomart_human_mouse.csv.gz``: Ensembl BioMart human -> mouse homologs (homology type,
  orthology confidence, gene-order conservation score).
- ``ensembl_baron_human_mouse.csv.gz``: Ensembl human <-> mouse gene-name matches.

Each (human symbol, mouse symbol) pair gets ``support`` = number of distinct databases predicting it (the
HCOP sources, with the two Ensembl tables counted as the single source "Ensembl"). Pairs with
``support >= MIN_SUPPORT`` are kept; ``type`` (one2one / one2many / many2many) is computed on the kept
pairs from the number of partners of each gene. Rows are written best first: support, then Ensembl
orthology confidence, then gene-order conservation (higher first), so that ties are resolved by row order.

Run: ``python scripts/build_ortholog_table.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

MIN_SUPPORT = 2
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "xspecies" / "data" / "orthologs_human_mouse.tsv.gz"


def _clean(df: pd.DataFrame) -> pd.DataFrame:
    df = df.dropna(subset=["human", "mouse"])
    df = df[(df["human"] != "-") & (df["mouse"] != "-")]
    return df.assign(human=df["human"].str.strip(), mouse=df["mouse"].str.strip())


def read_hcop(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path).rename(columns={"Gene name": "human", "Mouse gene name": "mouse"})
    df = _clean(df)
    df["sources"] = df["supporting_source"].fillna("").str.split(",").apply(lambda x: {s for s in x if s})
    return df[["human", "mouse", "sources"]]


def read_ensembl(biomart: Path, baron: Path) -> pd.DataFrame:
    cols = {
        "Gene name": "human",
        "Mouse gene name": "mouse",
        "Mouse orthology confidence [0 low, 1 high]": "confidence",
        "Mouse Gene-order conservation score": "goc",
    }
    a = _clean(pd.read_csv(biomart).rename(columns=cols))[list(cols.values())]
    b = pd.read_csv(baron)
    b.columns = ["human", "mouse", "type", "goc", "wga", "confidence"]
    b = _clean(b)[list(cols.values())]
    both = pd.concat([a, b], ignore_index=True)
    return both.groupby(["human", "mouse"], as_index=False)[["confidence", "goc"]].max()


def ortholog_types(df: pd.DataFrame, a: str, b: str) -> np.ndarray:
    """one2one / one2many / many2many from the number of partners of both genes of each pair."""
    na = df.groupby(a)[b].transform("nunique").to_numpy()
    nb = df.groupby(b)[a].transform("nunique").to_numpy()
    return np.where(
        (na == 1) & (nb == 1), "one2one", np.where((na == 1) | (nb == 1), "one2many", "many2many")
    )


def build(source_dir: Path) -> pd.DataFrame:
    hcop = read_hcop(source_dir / "hcop_human_mouse.csv.gz")
    hcop = hcop.groupby(["human", "mouse"], as_index=False)["sources"].agg(lambda s: set().union(*s))
    ens = read_ensembl(
        source_dir / "ensembl_biomart_human_mouse.csv.gz", source_dir / "ensembl_baron_human_mouse.csv.gz"
    )
    df = hcop.merge(ens, on=["human", "mouse"], how="outer", indicator=True)
    in_ensembl = df["_merge"] != "left_only"
    sources = df["sources"].apply(lambda s: s if isinstance(s, set) else set())
    df["support"] = [len(s | ({"Ensembl"} if e else set())) for s, e in zip(sources, in_ensembl, strict=True)]
    df = df[df["support"] >= MIN_SUPPORT].copy()
    df["type"] = ortholog_types(df, "human", "mouse")
    df = df.sort_values(
        ["support", "confidence", "goc", "human", "mouse"],
        ascending=[False, False, False, True, True],
        na_position="last",
    )
    return df[["human", "mouse", "type", "support"]].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-dir", type=Path, default=Path("/work/shared/data/orthologs"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    table = build(args.source_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, sep="\t", index=False, compression={"method": "gzip", "mtime": 0})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB): {len(table)} pairs")
    print(table["type"].value_counts().to_string())


if __name__ == "__main__":
    main()
