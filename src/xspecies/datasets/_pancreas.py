"""Baron et al. 2016 pancreas data (human and mouse, inDrop, GEO GSE84133)."""

from __future__ import annotations

import os
import re
from importlib.resources import as_file, files
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pooch
from scipy import sparse

from ._fetch import fetch

__all__ = ["pancreas", "read_gse84133"]

GEO_URL = "https://www.ncbi.nlm.nih.gov/geo/download/?acc=GSE84133&format=file"
GEO_FILE = "GSE84133_RAW.tar"
SPECIES = ("human", "mouse")
SUBSETS = ("demo", "full")
DATA_DIR_ENV = "XSPECIES_DATA_DIR"
#: GEO's ``assigned_cluster`` -> Cell Ontology class names (as in the full files of the data folder)
CLUSTER_TO_ONTOLOGY = {
    "alpha": "pancreatic A cell",
    "beta": "type B pancreatic cell",
    "delta": "pancreatic D cell",
    "gamma": "pancreatic PP cell",
    "epsilon": "pancreatic epsilon cell",
    "acinar": "pancreatic acinar cell",
    "ductal": "pancreatic ductal cell",
    "activated_stellate": "pancreatic stellate cell",
    "quiescent_stellate": "pancreatic stellate cell",
    "endothelial": "endothelial cell",
    "macrophage": "macrophage",
    "mast": "mast cell",
    "t_cell": "T cell",
    "b_cell": "B cell",
    "immune_other": "leukocyte",
    "schwann": "Schwann cell",
}
_GEO_NAME = re.compile(r"GSM\d+_(?P<donor>(?P<species>human|mouse)\d+)_umifm_counts\.csv(\.gz)?$")


def _check_species(species: str) -> str:
    if species not in SPECIES:
        raise ValueError(f"unknown species {species!r} for the pancreas data: use one of {SPECIES}.")
    return species


def read_gse84133(paths: list[str | Path], species: str) -> ad.AnnData:
    """Read GEO GSE84133 per-donor count tables into one AnnData.

    Parameters
    ----------
    paths
        Files named like ``GSM2230757_human1_umifm_counts.csv.gz``: comma-separated, columns
        ``index`` (cell), ``barcode``, ``assigned_cluster``, then one column per gene. Files of the other
        species are ignored.
    species
        ``"human"`` or ``"mouse"``.

    Returns
    -------
    AnnData with float32 CSR counts, ``obs`` with ``cell_ontology_class`` (from ``assigned_cluster``),
    ``cell_type1`` (GEO's cluster name), ``donor`` (from the file name) and ``barcode``.

    Examples
    --------
    >>> table = pd.DataFrame(
    ...     {"barcode": ["AAAC", "GGTT"], "assigned_cluster": ["beta", "alpha"], "Gcg": [0, 12], "Ins1": [30, 1]},
    ...     index=["mouse1_lib1.1", "mouse1_lib1.2"],
    ... )
    >>> table.to_csv("GSM2230761_mouse1_umifm_counts.csv.gz")
    >>> adata = read_gse84133(["GSM2230761_mouse1_umifm_counts.csv.gz"], "mouse")
    >>> adata.obs[["cell_ontology_class", "donor"]]
                      cell_ontology_class   donor
    mouse1_lib1.1  type B pancreatic cell  mouse1
    mouse1_lib1.2       pancreatic A cell  mouse1
    >>> adata.X.toarray()
    array([[ 0., 30.],
           [12.,  1.]], dtype=float32)
    """
    _check_species(species)
    parts = []
    for path in sorted(map(Path, paths)):
        match = _GEO_NAME.search(path.name)
        if match is None or match["species"] != species:
            continue
        table = pd.read_csv(path, index_col=0)
        missing = {"barcode", "assigned_cluster"} - set(table.columns[:2])
        if missing:
            raise ValueError(
                f"{path.name}: expected columns barcode, assigned_cluster first, missing {missing}."
            )
        counts = table.iloc[:, 2:]
        obs = pd.DataFrame(
            {
                "cell_type1": table["assigned_cluster"].astype(str),
                "donor": match["donor"],
                "barcode": table["barcode"].astype(str),
            },
            index=table.index.astype(str),
        )
        X = sparse.csr_matrix(counts.to_numpy(dtype=np.float32))
        parts.append(ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=counts.columns.astype(str))))
    if not parts:
        raise ValueError(f"no GSE84133 count files of species {species!r} among {len(paths)} paths.")
    adata = ad.concat(parts, join="outer", fill_value=0)
    adata.X = sparse.csr_matrix(adata.X, dtype=np.float32)
    clusters = adata.obs["cell_type1"].str.lower()
    unknown = sorted(set(clusters) - set(CLUSTER_TO_ONTOLOGY))
    if unknown:
        raise ValueError(f"unknown assigned_cluster values {unknown} in GSE84133 files.")
    adata.obs["cell_ontology_class"] = clusters.map(CLUSTER_TO_ONTOLOGY).astype("category")
    for key in ("cell_type1", "donor"):
        adata.obs[key] = adata.obs[key].astype("category")
    return adata


def _full(species: str, data_dir: str | Path | None) -> ad.AnnData:
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV)
    if data_dir:
        path = Path(data_dir) / f"baron_{species}_counts.h5ad"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found (data folder from {DATA_DIR_ENV} or data_dir).")
        adata = ad.read_h5ad(path)
        adata.X = sparse.csr_matrix(adata.X, dtype=np.float32)
        return adata
    paths = fetch(
        GEO_URL,
        GEO_FILE,
        processor=pooch.Untar(),
        what=f"the full {species} pancreas data (GEO GSE84133)",
        alternative=(
            f"the embedded subset, xs.datasets.pancreas({species!r}), or a local "
            f"baron_{species}_counts.h5ad in ${DATA_DIR_ENV}"
        ),
    )
    return read_gse84133(paths, species)


def pancreas(species: str = "human", subset: str = "demo", data_dir: str | Path | None = None) -> ad.AnnData:
    """Pancreas scRNA-seq of Baron et al. 2016 (inDrop, raw UMI counts), human or mouse.

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``.
    subset
        ``"demo"``: the small subset shipped with the package (all cells of the reference files, genes
        reduced to highly variable genes of both species, their orthologs and known markers; human
        2,142 cells x 4,676 genes, mouse 1,886 cells x 4,313 genes). ``"full"``: all genes, read from
        ``data_dir`` (or ``$XSPECIES_DATA_DIR``) as ``baron_<species>_counts.h5ad`` when given; else the
        original per-donor count files of GEO GSE84133 are downloaded once (``GSE84133_RAW.tar``, cached by
        pooch) and read with :func:`read_gse84133` (all published cells: 8,569 human, 1,886 mouse).
    data_dir
        Folder with ``baron_<species>_counts.h5ad`` (overrides ``$XSPECIES_DATA_DIR``).

    Returns
    -------
    AnnData: raw integer counts in X (float32 CSR), ``obs["cell_ontology_class"]``, ``obs["donor"]``;
    ``var_names`` are gene symbols of the species.

    Examples
    --------
    >>> import xspecies as xs
    >>> mouse = xs.datasets.pancreas("mouse")
    >>> mouse.obs["cell_ontology_class"].value_counts().index[0]
    'type B pancreatic cell'
    """
    _check_species(species)
    if subset == "full":
        return _full(species, data_dir)
    if subset != "demo":
        raise ValueError(f"unknown subset {subset!r}: use one of {SUBSETS}.")
    with as_file(files("xspecies").joinpath("data", f"pancreas_{species}_demo.h5ad")) as path:
        return ad.read_h5ad(path)
