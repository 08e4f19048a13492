import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from scipy import sparse
from sklearn.neighbors import NearestNeighbors

import xspecies as xs
from xspecies.pp import _latent_neighbors


def _latent(n: int = 1500, d: int = 8, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (5, d))
    adata = ad.AnnData(np.zeros((n, 1), dtype=np.float32))
    adata.obsm["X_joint"] = (centres[rng.integers(0, 5, n)] + rng.normal(0, 1, (n, d))).astype(np.float32)
    return adata


def test_exact_graph_is_scanpys_graph_of_the_exact_neighbours(monkeypatch):
    """Queried in tree order and in chunks, the graph equals scanpy's with a brute-force search."""
    monkeypatch.setattr(_latent_neighbors, "CHUNK_CELLS", 400)  # several chunks
    adata = _latent()
    expected = adata.copy()
    sc.pp.neighbors(expected, use_rep="X_joint", n_neighbors=12, transformer="sklearn")  # brute force
    xs.pp.latent_neighbors(adata, use_rep="X_joint", n_neighbors=12)
    assert adata.uns["neighbors"]["params"]["search"] == "exact"
    for key in ("distances", "connectivities"):
        got, want = adata.obsp[key], expected.obsp[key]
        assert (got != want).nnz == 0 or np.abs(got - want).max() < 1e-5, key
    # every cell: itself first, then its 11 nearest others in distance order
    distances = adata.obsp["distances"]
    assert np.all(np.diff(distances.indptr) == 11)
    _, nearest = NearestNeighbors(n_neighbors=12).fit(adata.obsm["X_joint"]).kneighbors()
    np.testing.assert_array_equal(
        np.sort(distances.indices.reshape(-1, 11), axis=1), np.sort(nearest[:, :11], 1)
    )


def test_duplicated_cells_are_each_others_nearest_neighbour_and_not_their_own():
    """A cell with an identical twin: the search may list the twin before the cell; the cell is dropped."""
    adata = _latent(n=300)
    adata.obsm["X_joint"][1::2] = adata.obsm["X_joint"][::2]  # every cell has a twin at distance 0
    graph = _latent_neighbors._KNNGraph(n_neighbors=6).fit_transform(adata.obsm["X_joint"])
    indices = graph.indices.reshape(300, 5)
    assert not np.any(indices == np.arange(300)[:, None])
    np.testing.assert_array_equal(indices[:, 0], np.arange(300) ^ 1)  # the twin, at distance 0
    assert np.all(graph.data.reshape(300, 5)[:, 0] == 0)
    assert np.all(np.diff(graph.data.reshape(300, 5), axis=1) >= 0)


def test_nndescent_graph_is_close_to_the_exact_one_and_written_under_key_added():
    adata = _latent(n=3000)
    out = xs.pp.latent_neighbors(
        adata, use_rep="X_joint", n_neighbors=10, method="nndescent", key_added="joint", copy=True
    )
    assert "neighbors" not in adata.uns and not adata.obsp  # copy: the input is untouched
    assert out.uns["joint"]["params"]["search"] == "nndescent"
    assert out.uns["joint"]["connectivities_key"] == "joint_connectivities"
    got = out.obsp["joint_distances"]
    assert np.all(np.diff(got.indptr) == 9)
    _, nearest = NearestNeighbors(n_neighbors=9).fit(adata.obsm["X_joint"]).kneighbors()
    found = np.mean([len(set(got[i].indices) & set(nearest[i])) / 9 for i in range(3000)])
    assert found > 0.97
    # the graph is read as one of scanpy.pp.neighbors
    sc.tl.leiden(out, neighbors_key="joint", flavor="igraph", n_iterations=2, directed=False, random_state=0)
    assert out.obs["leiden"].nunique() >= 5


def test_auto_switches_to_nndescent_above_the_exact_limit(monkeypatch):
    monkeypatch.setattr(_latent_neighbors, "EXACT_MAX_CELLS", 200)
    small, large = _latent(n=200), _latent(n=201)
    for adata in (small, large):
        xs.pp.latent_neighbors(adata, use_rep="X_joint", n_neighbors=5)
    assert small.uns["neighbors"]["params"]["search"] == "exact"
    assert large.uns["neighbors"]["params"]["search"] == "nndescent"


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "match"),
    [
        (
            None,
            {"use_rep": "X_umap"},
            KeyError,
            r"use_rep 'X_umap' not found in adata.obsm \(available: \['X_joint'\]\)",
        ),
        ("nan", {}, ValueError, r"obsm\['X_joint'\] must hold finite numbers"),
        (None, {"n_neighbors": 50}, ValueError, "n_neighbors"),
        (
            None,
            {"method": "annoy"},
            ValueError,
            r"method must be one of \('auto', 'exact', 'nndescent'\), got 'annoy'",
        ),
        ("sparse", {}, ValueError, r"obsm\['X_joint'\] must be a dense cells x dimensions array"),
    ],
)
def test_bad_input_is_refused_before_any_work(change, kwargs, error, match):
    adata = _latent(n=50)
    if change == "nan":
        adata.obsm["X_joint"][3, 1] = np.nan
    elif change == "sparse":
        adata.obsm["X_joint"] = sparse.csr_matrix(adata.obsm["X_joint"])
    before = adata.copy()
    with pytest.raises(error, match=match):
        xs.pp.latent_neighbors(adata, **{"use_rep": "X_joint", **kwargs})
    assert not adata.uns and not adata.obsp and list(adata.obsm) == list(before.obsm)
