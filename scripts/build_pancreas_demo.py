"""Build the embedded pancreas demo ``src/xspecies/data/pancreas_{human,mouse}_demo.h5ad``.

Input: the Baron et al. 2016 pancreas counts (GEO GSE84133) as ``baron_{human,mouse}_counts.h5ad`` in
``--source-dir`` (default ``/work/shared/data``). All cells are kept; genes are reduced to

- the top ``N_TOP_GENES`` highly variable genes of each species (``seurat_v3`` on counts, per donor),
- the orthologs of the other species' highly variable genes (embedded human <-> mouse table, all pairs),
- known pancreas markers (``MARKERS`` and their orthologs),

so that both species keep the informative genes and the homologous genes between them. X is stored as
float32 CSR raw counts; obs holds ``cell_ontology_class`` and ``donor``.

Run: ``python scripts/build_pancreas_demo.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from xspecies.pp import ortholog_table
from xspecies.pp._prepare import _highly_variable

N_TOP_GENES = 3000
SPECIES = ("human", "mouse")
MARKERS = {
    "human": ["INS", "GCG", "SST", "PPY", "GHRL", "PRSS1", "CPA1", "KRT19", "SOX9", "PECAM1", "PDGFRB",
              "COL1A1", "PTPRC", "CD68", "TPSAB1", "CD3E", "CD19", "SOX10", "MKI67", "PDX1", "NKX6-1", "MAFA"],
    "mouse": ["Ins1", "Ins2", "Gcg", "Sst", "Ppy", "Ghrl", "Prss2", "Cpa1", "Krt19", "Sox9", "Pecam1",
              "Pdgfrb", "Col1a1", "Ptprc", "Cd68", "Cpa3", "Cd3e", "Cd19", "Sox10", "Mki67", "Pdx1", "Nkx6-1",
              "Mafa"],
}  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "xspecies" / "data"


def hvgs(adata: ad.AnnData, n: int) -> set[str]:
    # pp.prepare's ranking (scanpy's table matched to the genes by name), without its cell filters
    ranked = _highly_variable(adata, n, flavor="seurat_v3", batch_key="donor")
    return set(ranked.index[ranked["highly_variable"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-dir", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--out-dir", type=Path, default=OUT)
    args = parser.parse_args()
    data = {s: ad.read_h5ad(args.source_dir / f"baron_{s}_counts.h5ad") for s in SPECIES}
    genes = {s: hvgs(data[s], N_TOP_GENES) | set(MARKERS[s]) for s in SPECIES}
    table = ortholog_table("human", "mouse")
    to_mouse = table[table["human"].isin(genes["human"])]["mouse"]
    to_human = table[table["mouse"].isin(genes["mouse"])]["human"]
    keep = {"human": genes["human"] | set(to_human), "mouse": genes["mouse"] | set(to_mouse)}
    for s in SPECIES:
        adata = data[s]
        mask = adata.var_names.isin(sorted(keep[s]))
        X = sparse.csr_matrix(adata.X[:, mask], dtype=np.float32)
        obs = pd.DataFrame(
            {
                "cell_ontology_class": adata.obs["cell_ontology_class"].astype(str).astype("category"),
                "donor": adata.obs["donor"].astype(str).astype("category"),
            },
            index=adata.obs_names.astype(str),
        )
        demo = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=adata.var_names[mask].astype(str)))
        demo.uns["source"] = f"Baron et al. 2016 (GEO GSE84133), {s} pancreas, genes reduced for the demo"
        path = args.out_dir / f"pancreas_{s}_demo.h5ad"
        demo.write_h5ad(path, compression="gzip")
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {demo.n_obs} cells x {demo.n_vars} genes")


if __name__ == "__main__":
    main()
