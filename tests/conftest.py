import os
from pathlib import Path

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from xspecies._validation import context_fingerprint

matplotlib.use("Agg")

#: environment variable naming the shared data folder when it does not lie beside the repository
SHARED_DATA_ENV = "XSPECIES_SHARED_DATA"
#: the repository's root (this file is ``<root>/tests/conftest.py``)
REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The shared data folder: ``$XSPECIES_SHARED_DATA``, else ``shared/data`` beside the repository."""
    configured = os.environ.get(SHARED_DATA_ENV)
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder with the full Baron files; a test that needs it fails (never skips) when it is missing."""
    folder = shared_data_dir()
    missing = [
        name
        for name in ("baron_human_counts.h5ad", "baron_mouse_counts.h5ad")
        if not (folder / name).is_file()
    ]
    if missing:
        pytest.fail(
            f"shared data not found: {', '.join(missing)} missing in {folder}. The tests that use the full "
            f"Baron files read them from `shared/data` beside the repository ({REPO_ROOT.parent / 'shared' / 'data'}); "
            f"set {SHARED_DATA_ENV} to the folder that holds them when it lies elsewhere.",
            pytrace=False,
        )
    return folder


def make_synthetic_pair(
    seed: int = 0,
    n_ctx: int = 200,
    n_tgt: int = 150,
    n_genes: int = 40,
    types: tuple = ("type0", "type1", "type2"),
    novel: str = "novel",
    library: float = 600.0,
    shift_sd: float = 0.2,
    n_neighbors: int = 30,
):
    """Context and target counts with cell types and donors, plus fake ``pp.homology_neighbors`` outputs.

    The target has the context's types and ``novel``; its expression profiles are the context's
    scaled per gene by a log-normal factor (``shift_sd``). Trusted neighbours are drawn from the
    context cells of the same type (any cell for ``novel``), with high agreement for shared types.
    """
    rng = np.random.default_rng(seed)
    n_types = len(types)
    profiles = rng.gamma(0.6, 2.0, size=(n_types + 1, n_genes))

    def counts(profile_rows):
        lib = rng.lognormal(np.log(library), 0.3, size=len(profile_rows))
        mu = profile_rows / profile_rows.sum(1, keepdims=True) * lib[:, None]
        return sparse.csr_matrix(rng.negative_binomial(5, 5 / (5 + mu)).astype(np.float32))

    ct = rng.integers(0, n_types, n_ctx)
    ctx = ad.AnnData(counts(profiles[ct]))
    ctx.var_names = [f"Gene{i}" for i in range(n_genes)]
    ctx.obs_names = [f"m{i}" for i in range(n_ctx)]
    ctx.obs["cell_type"] = pd.Categorical([types[i] for i in ct])
    ctx.obs["donor"] = pd.Categorical(rng.choice(["m1", "m2"], n_ctx))
    tt = rng.integers(0, n_types + 1, n_tgt)
    shifted = profiles * rng.lognormal(0, shift_sd, size=n_genes)
    tgt = ad.AnnData(counts(shifted[tt]))
    tgt.var_names = [f"GENE{i}" for i in range(n_genes)]
    tgt.obs_names = [f"h{i}" for i in range(n_tgt)]
    tgt.obs["cell_type"] = pd.Categorical([[*types, novel][i] for i in tt])
    tgt.obs["donor"] = pd.Categorical(rng.choice(["h1", "h2", "h3"], n_tgt))
    pools = [np.flatnonzero(ct == t) for t in range(n_types)] + [np.arange(n_ctx)]
    tgt.obsm["homology_neighbors"] = np.stack([rng.choice(pools[t], n_neighbors) for t in tt]).astype(
        np.int64
    )
    agree = np.where(tt < n_types, 0.9, 0.4) + rng.random(n_tgt) * 0.05
    tgt.obs["homology_agreement"] = agree
    tgt.obs["homology_top_percent"] = pd.Series(-agree).rank(method="max", pct=True).to_numpy() * 100
    tgt.var["ortholog"] = list(ctx.var_names)
    tgt.uns["homology"] = {
        "params": {"n_neighbors": n_neighbors, "labels_key": ""},
        "context_n_obs": n_ctx,
        "target_genes": list(tgt.var_names),
        "context_genes": list(ctx.var_names),
        "context_fingerprint": context_fingerprint(ctx),
    }
    return ctx, tgt


@pytest.fixture(scope="session")
def synthetic_pair():
    """:func:`make_synthetic_pair`, for tests that build small context/target pairs."""
    return make_synthetic_pair


def file_checksum(path: Path) -> str:
    """sha256 of a file, or of every file (relative name and content) of a folder."""
    import hashlib

    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def make_graph_h5ad(path: Path, n: int = 120, seed: int = 0) -> Path:
    """A small h5ad with counts, obs, a kNN-like graph of 4 groups and a previous ``uns["scice"]``."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(4), n // 4)
    rows, cols = [], []
    for i in range(n):
        rows += [i] * 6
        cols += list(rng.choice(np.flatnonzero(group == group[i]), 5)) + [int(rng.integers(n))]
    adj = sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float32)
    adj.setdiag(0)
    adj.eliminate_zeros()
    adata = ad.AnnData(sparse.csr_matrix(rng.poisson(1.0, (n, 5)).astype(np.float32)))
    adata.obs_names = [f"cell{i}" for i in range(n)]
    adata.obs["group"] = group.astype(str)
    adata.obsp["connectivities"] = adj.tocsr()
    adata.uns["scice"] = {"note": "previous result"}
    adata.write_h5ad(path)
    return path


@pytest.fixture(scope="session")
def checksum():
    """:func:`file_checksum`: sha256 of a file or folder, to show that a writer left it unchanged."""
    return file_checksum


@pytest.fixture(scope="session")
def graph_h5ad():
    """:func:`make_graph_h5ad`: a small h5ad with a graph, for the ``xspecies scice`` tests."""
    return make_graph_h5ad
