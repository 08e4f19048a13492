"""Resampled Baron pancreas pairs of any size for benchmarks/bench_scale.py.

The real Baron mouse and human counts are first reduced to 4,000 highly variable genes per species
(:func:`xspecies.pp.prepare`, ``seurat_v3`` per donor, on the original cells); a resampled set of ``n``
cells draws cells with replacement and thins every count binomially (each count kept with
probability ``p``), so that every drawn cell is distinct while its cell type and donor are kept.
Everything stays sparse CSR and is built block by block: the memory is linear in ``n``.
"""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

import xspecies as xs

LABELS = "cell_ontology_class"
BATCH = "donor"
SPECIES = ("mouse", "human")
CACHE = Path(os.environ.get("XSPECIES_SCALE_CACHE", "/tmp/xspecies_scale"))
#: drawn cells resampled at once (bounds the working memory of the resampling)
BLOCK = 50_000


def prepared(data: Path, species: str, n_top_genes: int = 4000) -> ad.AnnData:
    """The Baron counts of ``species`` reduced to ``n_top_genes`` HVGs (cached as h5ad under ``CACHE``)."""
    path = CACHE / f"baron_{species}_hvg{n_top_genes}.h5ad"
    if path.exists():
        return ad.read_h5ad(path)
    adata = ad.read_h5ad(data / f"baron_{species}_counts.h5ad")
    adata.obs = adata.obs[[LABELS, BATCH]].copy()
    xs.pp.prepare(  # seurat_v3: the genes of the measured runs (pp.prepare's default is now seurat)
        adata,
        batch_key=BATCH,
        labels_key=LABELS,
        n_top_genes=n_top_genes,
        flavor="seurat_v3",
        min_celltype_size=0,
    )
    adata.uns.clear()
    adata.var = adata.var[[]]
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.h5ad")
    adata.write_h5ad(tmp)
    tmp.replace(path)
    return adata


def resample(adata: ad.AnnData, n: int, *, p: float = 0.8, seed: int = 0) -> ad.AnnData:
    """``n`` cells drawn with replacement from ``adata``, every count thinned with probability ``p``.

    The CSR arrays are preallocated for the drawn rows' stored entries and filled block by block;
    entries thinned to zero are dropped, and the arrays shrink in place at the end.
    """
    rng = np.random.default_rng(seed)
    X = sparse.csr_matrix(adata.X)
    rows = rng.integers(0, adata.n_obs, size=n)
    row_nnz = np.diff(X.indptr)[rows]
    capacity = int(row_nnz.sum())
    index_dtype = np.int32 if capacity < 2**31 else np.int64  # one dtype for both: scipy copies mixed ones
    data = np.empty(capacity, dtype=np.float32)
    indices = np.empty(capacity, dtype=index_dtype)
    indptr = np.zeros(n + 1, dtype=index_dtype)
    pos = 0
    for start in range(0, n, BLOCK):
        block = X[rows[start : start + BLOCK]]
        block.data = rng.binomial(block.data.astype(np.int64), p).astype(np.float32)
        block.eliminate_zeros()
        end = pos + block.nnz
        data[pos:end] = block.data
        indices[pos:end] = block.indices
        indptr[start + 1 : start + 1 + block.shape[0]] = pos + block.indptr[1:]
        pos = end
    data.resize(pos, refcheck=False)
    indices.resize(pos, refcheck=False)
    matrix = sparse.csr_matrix((data, indices, indptr), shape=(n, adata.n_vars))
    obs = pd.DataFrame(
        {key: adata.obs[key].to_numpy()[rows] for key in (LABELS, BATCH)},
        index=pd.Index([f"cell{i}" for i in range(n)]),
    )
    for key in (LABELS, BATCH):
        obs[key] = obs[key].astype("category")
    return ad.AnnData(matrix, obs=obs, var=pd.DataFrame(index=adata.var_names.copy()))


def resampled_pair(data: Path, n: int, *, p: float = 0.8, seed: int = 0) -> tuple[ad.AnnData, ad.AnnData]:
    """``(mouse, human)``, ``n`` resampled cells each on 4,000 HVGs per species."""
    mouse, human = (prepared(data, species) for species in SPECIES)
    return resample(mouse, n, p=p, seed=seed), resample(human, n, p=p, seed=seed + 1)
