import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.metrics import balanced_accuracy_score
from sklearn.neighbors import NearestNeighbors

import xspecies as xs
from xspecies._results import stored_params

LABELS = "cell_ontology_class"


def _pair(n_target=60, n_context=80, n_genes=40, seed=0):
    """Two species sharing genes g0..g29 as G0..G29; context labels follow a block structure."""
    rng = np.random.default_rng(seed)
    profiles = rng.gamma(0.5, 4.0, size=(3, n_genes))

    def sample(n):
        kind = rng.integers(0, 3, size=n)
        return sparse.csr_matrix(rng.poisson(profiles[kind]).astype(np.float32)), kind

    Xt, kt = sample(n_target)
    Xc, kc = sample(n_context)
    target = ad.AnnData(
        Xt, obs=pd.DataFrame({"kind": kt.astype(str)}, index=[f"t{i}" for i in range(n_target)])
    )
    target.var_names = [f"g{j}" for j in range(n_genes)]
    target.var["ortholog"] = [f"G{j}" if j < 30 else None for j in range(n_genes)]
    context = ad.AnnData(
        Xc, obs=pd.DataFrame({"kind": kc.astype(str)}, index=[f"c{i}" for i in range(n_context)])
    )
    context.var_names = [f"G{j}" for j in range(n_genes)]
    return target, context


def test_outputs_match_contract_and_sklearn():
    target, context = _pair()
    xs.pp.homology_neighbors(target, context, labels_key="kind", n_neighbors=20, n_vote=5)
    idx, dist = target.obsm["homology_neighbors"], target.obsm["homology_distances"]
    assert idx.dtype == np.int64 and idx.shape == (60, 20)
    assert dist.dtype == np.float32 and dist.shape == (60, 20)
    assert (np.diff(dist, axis=1) >= -1e-6).all()  # closest first
    # same neighbours as a brute-force cosine search on log1p counts of the 30 shared genes
    T = np.log1p(target.X[:, :30].toarray())
    C = np.log1p(context.X[:, :30].toarray())
    d_ref, i_ref = NearestNeighbors(n_neighbors=20, metric="cosine").fit(C).kneighbors(T)
    np.testing.assert_allclose(dist, d_ref, atol=1e-5)
    assert (idx[:, 0] == i_ref[:, 0]).mean() > 0.95
    # the vote recovers the generating profile
    assert (target.obs["homology_kind"].astype(str) == target.obs["kind"]).mean() > 0.9
    assert isinstance(target.obs["homology_kind"].dtype, pd.CategoricalDtype)
    agreement = target.obs["homology_agreement"].to_numpy()
    assert ((agreement >= 0) & (agreement <= 1)).all()
    top = target.obs["homology_top_percent"].to_numpy()
    assert ((top >= 0) & (top < 100)).all()
    # top_percent: share of the voted label's cells ranked before (by agreement, ties: closer neighbours)
    voted = target.obs["homology_kind"].to_numpy()
    for kind in np.unique(voted):
        mine, a = top[voted == kind], agreement[voted == kind]
        np.testing.assert_allclose(np.sort(mine), 100 * np.arange(len(mine)) / len(mine))
        assert (np.diff(a[np.argsort(mine)]) <= 1e-12).all()
        assert (mine >= [100 * np.mean(a > x) for x in a]).all()
    info = target.uns["homology"]
    assert info["target_genes"] == [f"g{j}" for j in range(30)]
    assert info["context_genes"] == [f"G{j}" for j in range(30)]
    assert info["context_n_obs"] == 80 and info["params"]["labels_key"] == "kind"
    assert info["params"]["method"] == "exact" and info["params"]["n_vote"] == 5
    # an AnnData saved by an earlier xspecies holds the parameters beside the results
    flat = {k: v for k, v in info.items() if k != "params"} | info["params"]
    assert stored_params(info) == info["params"]
    assert all(stored_params(flat)[k] == v for k, v in info["params"].items())


def test_agreement_without_labels_and_copy(tmp_path):
    target, context = _pair()
    target.layers["counts"], context.layers["counts"] = target.X.copy(), context.X.copy()
    target.X, context.X = target.X * 0.5, context.X * 0.5  # not counts: the layer is used
    out = xs.pp.homology_neighbors(target, context, n_neighbors=10, n_vote=4, layer="counts", copy=True)
    out.write_h5ad(tmp_path / "t.h5ad")
    back = ad.read_h5ad(tmp_path / "t.h5ad")
    np.testing.assert_array_equal(back.obsm["homology_neighbors"], out.obsm["homology_neighbors"])
    assert list(back.uns["homology"]["context_genes"]) == out.uns["homology"]["context_genes"]
    target.X, context.X = target.layers["counts"], context.layers["counts"]
    assert "homology_neighbors" not in target.obsm
    sim = 1 - out.obsm["homology_distances"][:, :4].mean(axis=1)
    np.testing.assert_allclose(out.obs["homology_agreement"], sim, rtol=1e-5)
    assert out.uns["homology"]["params"]["labels_key"] == ""
    euclid = xs.pp.homology_neighbors(
        target, context, n_neighbors=10, n_vote=4, metric="euclidean", key_added="e", copy=True
    )
    T = np.log1p(target.X[:, :30].toarray())
    C = np.log1p(context.X[:, :30].toarray())
    d_ref, _ = NearestNeighbors(n_neighbors=10).fit(C).kneighbors(T)
    np.testing.assert_allclose(euclid.obsm["e_distances"], d_ref, rtol=1e-4, atol=1e-4)


def test_vote_ties_go_to_the_closest_label_and_rank_weights_favour_the_closest():
    from xspecies._vote import weighted_vote as _weighted_vote

    codes = np.array([[1, 0, 0, 1], [2, 2, 0, 1], [0, 1, 2, 3]])
    winner, share = _weighted_vote(codes, 4, "uniform")
    assert winner.tolist() == [1, 2, 0]
    np.testing.assert_allclose(share, [0.5, 0.5, 0.25])
    # ranks weigh 1, 1/2, 1/3, 1/4: label 1 (1 + 1/4) beats label 0 (1/2 + 1/3)
    rare = np.array([[1, 0, 0, 1], [3, 3, 2, 2]])
    winner, share = _weighted_vote(rare, 4, "rank")
    total = 1 + 1 / 2 + 1 / 3 + 1 / 4
    assert winner.tolist() == [1, 3]
    np.testing.assert_allclose(share, [(1 + 1 / 4) / total, (1 + 1 / 2) / total])
    # a rare type held by the two closest neighbours wins against a majority further away
    codes = np.array([[5, 5] + [0] * 8])
    assert _weighted_vote(codes, 6, "rank")[0].tolist() == [5]
    assert _weighted_vote(codes, 6, "uniform")[0].tolist() == [0]


def test_errors_name_the_problem():
    target, context = _pair()
    with pytest.raises(KeyError, match="translate_genes"):
        xs.pp.homology_neighbors(target, context, ortholog_key="missing")
    with pytest.raises(KeyError, match="'cell_type' not found in context.obs"):
        xs.pp.homology_neighbors(target, context, labels_key="cell_type", n_neighbors=5)
    with pytest.raises(ValueError, match="n_vote"):
        xs.pp.homology_neighbors(target, context, n_neighbors=5, n_vote=10)
    with pytest.raises(ValueError, match="unknown weighting 'votes'"):
        xs.pp.homology_neighbors(target, context, weighting="votes")
    with pytest.raises(ValueError, match="exceeds the 80 context cells"):
        xs.pp.homology_neighbors(target, context, n_neighbors=100)
    bad = target.copy()
    bad.var["ortholog"] = [f"X{j}" for j in range(bad.n_vars)]
    with pytest.raises(ValueError, match="share no homologous genes"):
        xs.pp.homology_neighbors(bad, context, n_neighbors=5, n_vote=5)
    logged = context.copy()
    logged.X = logged.X.copy()
    logged.X.data = np.log1p(logged.X.data)
    with pytest.raises(ValueError, match=r"context.X contains non-integer"):
        xs.pp.homology_neighbors(target, logged, n_neighbors=5, n_vote=5)


def _balanced_accuracy(target, context):
    shared = target.obs[LABELS].isin(context.obs[LABELS].unique())
    truth = target.obs.loc[shared, LABELS].astype(str)
    return balanced_accuracy_score(truth, target.obs.loc[shared, f"homology_{LABELS}"].astype(str))


def test_label_vote_on_demo_data():
    human, mouse = xs.datasets.pancreas("human"), xs.datasets.pancreas("mouse")
    xs.pp.translate_genes(human, "human", "mouse", policy="one2one")
    xs.pp.homology_neighbors(human, mouse, labels_key=LABELS)
    assert len(human.uns["homology"]["target_genes"]) > 3000
    assert _balanced_accuracy(human, mouse) > 0.7
    beta = human.obs[LABELS] == "type B pancreatic cell"
    assert (human.obs.loc[beta, f"homology_{LABELS}"] == "type B pancreatic cell").mean() > 0.75
    # trusted cells (top 20 %) agree more often with their true label than the rest
    trusted = human.obs["homology_top_percent"] <= 20
    assert 0.15 < trusted.mean() <= 0.21  # 20 % of each voted type (its first cell always counts)
    correct = human.obs[f"homology_{LABELS}"].astype(str) == human.obs[LABELS].astype(str)
    assert correct[trusted].mean() > correct[~trusted].mean()


def test_label_vote_on_full_baron_pair(shared_data):
    """Mouse context, human target, 1:1 orthologs, cosine on log1p counts, 250 neighbours, vote of 25."""
    human = ad.read_h5ad(shared_data / "baron_human_counts.h5ad")
    mouse = ad.read_h5ad(shared_data / "baron_mouse_counts.h5ad")
    for adata in (human, mouse):
        xs.pp.prepare(adata, batch_key="donor", labels_key=LABELS, n_top_genes=2000)
    xs.pp.translate_genes(human, "human", "mouse", policy="one2one")
    xs.pp.homology_neighbors(human, mouse, labels_key=LABELS, n_neighbors=250, n_vote=25)
    assert _balanced_accuracy(human, mouse) >= 0.8


@pytest.mark.slow
def test_pynndescent_method_close_to_exact():
    human, mouse = xs.datasets.pancreas("human"), xs.datasets.pancreas("mouse")
    human, mouse = human[::4].copy(), mouse[::3].copy()
    xs.pp.translate_genes(human, "human", "mouse", policy="one2one")
    exact = xs.pp.homology_neighbors(human, mouse, labels_key=LABELS, n_neighbors=50, copy=True)
    approx = xs.pp.homology_neighbors(
        human, mouse, labels_key=LABELS, n_neighbors=50, method="pynndescent", copy=True
    )
    assert approx.uns["homology"]["method"] == "pynndescent"
    assert approx.obsm["homology_neighbors"].shape == (human.n_obs, 50)
    agree = (approx.obs[f"homology_{LABELS}"] == exact.obs[f"homology_{LABELS}"]).mean()
    assert agree > 0.85
    assert _balanced_accuracy(approx, mouse) > 0.6


def test_exact_search_without_dense_context_cache(monkeypatch):
    from xspecies.pp import _homology

    target, context = _pair(n_target=70, n_context=90)
    cached = xs.pp.homology_neighbors(target, context, n_neighbors=12, n_vote=5, batch_size=8, copy=True)
    monkeypatch.setattr(_homology, "DENSE_CONTEXT_BYTES", 0)  # re-densify context blocks per target block
    blocked = xs.pp.homology_neighbors(target, context, n_neighbors=12, n_vote=5, batch_size=8, copy=True)
    np.testing.assert_array_equal(cached.obsm["homology_neighbors"], blocked.obsm["homology_neighbors"])
    np.testing.assert_allclose(
        cached.obsm["homology_distances"], blocked.obsm["homology_distances"], atol=1e-6
    )


def test_approximate_search_streams_blocks_of_cells(monkeypatch):
    """The approximate search transforms blocks of BLOCK_CELLS cells: same result as one block."""
    from xspecies.pp import _homology

    target, context = _pair(n_target=70, n_context=90)
    monkeypatch.setattr(_homology, "SVD_FIT_CELLS", 40)
    kwargs = {"n_neighbors": 12, "n_vote": 5, "method": "pynndescent", "n_components": 5, "copy": True}
    whole = xs.pp.homology_neighbors(target, context, **kwargs)
    rows_seen = []
    transform = _homology._log1p_rows

    def spy(X, cols, metric):
        rows_seen.append(X.shape[0])
        return transform(X, cols, metric)

    monkeypatch.setattr(_homology, "BLOCK_CELLS", 16)
    monkeypatch.setattr(_homology, "_log1p_rows", spy)
    blocked = xs.pp.homology_neighbors(target, context, **kwargs)
    assert max(rows_seen) <= 40  # the SVD sample or one block, never a whole matrix (70 or 90 cells)
    assert rows_seen.count(16) >= 8
    np.testing.assert_array_equal(whole.obsm["homology_neighbors"], blocked.obsm["homology_neighbors"])
    np.testing.assert_allclose(
        whole.obsm["homology_distances"], blocked.obsm["homology_distances"], atol=1e-6
    )
