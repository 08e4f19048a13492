import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import xspecies as xs

FAST = {"n_trials": 5, "n_bootstrap": 20, "max_iterations": 20, "n_iterations": 5, "progress_bar": False}


def planted_partition(n_blocks=4, size=40, p_in=0.5, p_out=0.01, seed=0):
    """Stochastic block model with weighted edges (the planted partition is the blocks)."""
    rng = np.random.default_rng(seed)
    block = np.repeat(np.arange(n_blocks), size)
    prob = np.where(block[:, None] == block[None, :], p_in, p_out)
    upper = np.triu(rng.random(prob.shape) < prob, k=1) * rng.uniform(0.5, 1.0, prob.shape)
    adj = sp.coo_matrix(upper)
    adata = ad.AnnData(np.zeros((block.size, 1), dtype=np.float32))
    adata.obs_names = [f"cell{i}" for i in range(adata.n_obs)]
    adata.obsp["connectivities"] = (adj + adj.T).tocsr()
    adata.obs["block"] = np.repeat(np.arange(n_blocks), size).astype(str)
    return adata


@pytest.fixture(scope="module")
def planted():
    adata = planted_partition()
    xs.tl.scice(adata, cluster_range=range(2, 7), **FAST)
    return adata


def test_planted_partition_is_consistent_at_planted_k(planted):
    res = planted.uns["scice"]
    assert res["analysis_mode"] == "cluster_range"
    assert 4 in res["consistent_clusters"]
    i = list(res["n_cluster"]).index(4)
    assert res["ic"][i] == pytest.approx(1.0)
    assert res["ic_vec"].shape == (len(res["n_cluster"]), 20)
    assert res["best_labels"].shape == (len(res["n_cluster"]), planted.n_obs)
    labels = res["best_labels"][i]
    crosstab = pd.crosstab(labels, planted.obs["block"].to_numpy())
    assert (crosstab.to_numpy() > 0).sum() == 4  # each planted block is one cluster
    assert res["best_cluster"] == 4
    assert res["best_resolution"] == res["gamma"][i] > 0
    diag = res["target_diagnostics"]
    assert diag["target"].tolist() == [2, 3, 4, 5, 6]
    assert set(diag["status"]) <= {"kept", "removed", "not_found", "duplicate"}
    assert res["params"]["beta_applied"] is True
    assert res["params"]["obsp"] == "connectivities" and res["params"]["neighbors_key"] is None
    assert list(res["resolution_search_diagnostics"].columns) == ["gamma", "median_cluster_count"]
    # the labels of the recommended count go to obs[key_added], as scanpy.tl.leiden writes them
    column = planted.obs["scice"]
    assert isinstance(column.dtype, pd.CategoricalDtype)
    assert column.cat.categories.tolist() == ["0", "1", "2", "3"]
    np.testing.assert_array_equal(column.cat.codes.to_numpy(), labels)


def _assert_same_results(a, b):
    for key in ("n_cluster", "gamma", "ic", "ic_vec", "best_labels", "n_iterations"):
        np.testing.assert_array_equal(a[key], b[key])
    pd.testing.assert_frame_equal(a["optimization_diagnostics"], b["optimization_diagnostics"])


def test_seed_reproducible(planted):
    again = planted_partition()
    xs.tl.scice(again, cluster_range=range(2, 7), **FAST)
    _assert_same_results(planted.uns["scice"], again.uns["scice"])
    other = xs.tl.scice(planted_partition(), cluster_range=[4], random_state=1, copy=True, **FAST)
    assert 4 in other.uns["scice"]["n_cluster"]


def test_process_pool_gives_the_serial_results(planted):
    """n_jobs=2: the Leiden runs go to two loky worker processes (the functions pickled by module path)."""
    parallel = xs.tl.scice(planted_partition(), cluster_range=range(2, 7), n_jobs=2, copy=True, **FAST)
    _assert_same_results(planted.uns["scice"], parallel.uns["scice"])
    assert parallel.uns["scice"]["params"]["n_jobs"] == 2
    assert parallel.obs["scice"].equals(planted.obs["scice"])


def test_graph_chosen_as_leiden_does(planted):
    """neighbors_key names a scanpy.pp.neighbors result, obsp a graph; default: uns["neighbors"]."""
    adata = planted_partition()
    graph = adata.obsp.pop("connectivities")
    adata.obsp["pca_connectivities"] = graph
    adata.uns["pca"] = {"connectivities_key": "pca_connectivities"}
    by_neighbors = xs.tl.scice(adata, neighbors_key="pca", cluster_range=range(2, 7), copy=True, **FAST)
    by_obsp = xs.tl.scice(adata, obsp="pca_connectivities", cluster_range=range(2, 7), copy=True, **FAST)
    adata.uns["neighbors"] = {"connectivities_key": "pca_connectivities"}
    by_default = xs.tl.scice(adata, cluster_range=range(2, 7), copy=True, **FAST)
    for result in (by_neighbors, by_obsp, by_default):
        _assert_same_results(planted.uns["scice"], result.uns["scice"])
        assert result.uns["scice"]["params"]["obsp"] == "pca_connectivities"
    assert by_neighbors.uns["scice"]["params"]["neighbors_key"] == "pca"
    with pytest.raises(ValueError, match="either neighbors_key"):
        xs.tl.scice(adata, neighbors_key="pca", obsp="pca_connectivities")
    with pytest.raises(KeyError, match="neighbors_key 'umap' not found in adata.uns"):
        xs.tl.scice(adata, neighbors_key="umap")
    adata.uns["bad"] = {"params": {}}
    with pytest.raises(KeyError, match="names no 'connectivities_key'"):
        xs.tl.scice(adata, neighbors_key="bad")


def test_keyword_only_options():
    with pytest.raises(TypeError, match="positional"):
        xs.tl.scice(planted_partition(), "connectivities")


def test_h5ad_round_trip(planted, tmp_path):
    path = tmp_path / "scice.h5ad"
    planted.write_h5ad(path)
    back = ad.read_h5ad(path)
    a, b = planted.uns["scice"], back.uns["scice"]
    assert set(a) == set(b)
    for key in ("n_cluster", "gamma", "ic", "ic_vec", "best_labels", "consistent_clusters"):
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))
    assert b["best_cluster"] == a["best_cluster"]
    pd.testing.assert_frame_equal(a["target_diagnostics"], b["target_diagnostics"], check_dtype=False)
    frame = xs.tl.scice_labels(back, inplace=False)
    assert list(frame.columns) == [f"scice_k_{k}" for k in a["consistent_clusters"]]
    assert back.obs["scice"].equals(planted.obs["scice"])


def test_scice_labels(planted):
    adata = planted.copy()
    assert xs.tl.scice_labels(adata, threshold=1.005) is None
    assert isinstance(adata.obs["scice_k_4"].dtype, pd.CategoricalDtype)
    assert adata.obs["scice_k_4"].nunique() == 4
    frame = xs.tl.scice_labels(adata, threshold=np.inf, key_added="robust", inplace=False)
    assert len(frame.columns) == len(adata.uns["scice"]["n_cluster"])
    assert frame.index.equals(adata.obs_names)
    # the default threshold is the run's ic_threshold: one column per consistent count, that of
    # best_cluster equal to obs["scice"]
    default = xs.tl.scice_labels(adata, inplace=False)
    assert default.columns.tolist() == [f"scice_k_{k}" for k in adata.uns["scice"]["consistent_clusters"]]
    assert default[f"scice_k_{adata.uns['scice']['best_cluster']}"].equals(adata.obs["scice"])
    with pytest.raises(KeyError, match="nothere"):
        xs.tl.scice_labels(adata, key="nothere")


def test_manual_resolution_mode_deduplicates():
    adata = planted_partition()
    gamma = 0.1
    xs.tl.scice(adata, resolution=[gamma, gamma, 0.3], **FAST)
    res = adata.uns["scice"]
    assert res["analysis_mode"] == "resolution"
    assert res["resolution_input"].tolist() == [0.1, 0.3]
    assert (res["source_target_cluster"] == -1).all()
    assert len(set(res["n_cluster"])) == len(res["n_cluster"])


def test_plot_renders_with_content(planted):
    ax = xs.pl.scice(planted, threshold=1.005, show=False)
    res = planted.uns["scice"]
    n = len(res["n_cluster"])
    assert len(ax.patches) == n  # one box per result
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(k) for k in res["n_cluster"]]
    lines = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert any(np.allclose(line.get_ydata(), 1.005) for line in lines)
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == n and all(t.startswith("γ=") for t in texts)
    assert ax.get_ylabel().startswith("inconsistency")
    fig = xs.pl.scice(planted, show_gamma=False, return_fig=True, show=False)
    assert isinstance(fig, plt.Figure) and not fig.axes[0].texts
    plt.close("all")


def test_bad_input():
    adata = planted_partition(n_blocks=2, size=10)
    with pytest.raises(KeyError, match="distances"):
        xs.tl.scice(adata, obsp="distances")
    with pytest.raises(ValueError, match="empty"):
        xs.tl.scice(adata, cluster_range=[])
    with pytest.raises(ValueError, match="21"):
        xs.tl.scice(adata, cluster_range=[2, 21])
    with pytest.raises(ValueError, match=r"-0\.5"):
        xs.tl.scice(adata, resolution=[0.1, -0.5])
    with pytest.raises(ValueError, match="either"):
        xs.tl.scice(adata, cluster_range=[2], resolution=[0.1])
    with pytest.raises(ValueError, match="objective_function"):
        xs.tl.scice(adata, objective_function="RB")
    upper = sp.triu(adata.obsp["connectivities"]).tocsr()
    adata.obsp["directed"] = upper
    with pytest.raises(ValueError, match="not symmetric"):
        xs.tl.scice(adata, obsp="directed")
    from xspecies.tl._scice._graph import check_graph

    with pytest.raises(ValueError, match="square"):
        check_graph(sp.csr_matrix((3, 4)))


def test_cli_neighbors_key(tmp_path):
    from xspecies.cli.main import main

    adata = planted_partition()
    adata.obsp["pca_connectivities"] = adata.obsp.pop("connectivities")
    adata.uns["pca"] = {"connectivities_key": "pca_connectivities", "params": {"n_neighbors": 15}}
    path = tmp_path / "in.h5ad"
    adata.write_h5ad(path)
    out = tmp_path / "out.h5ad"
    args = ["scice", str(path), "--resolution", "0.1", "--n-trials", "3", "--quiet", "--output", str(out)]
    assert main([*args, "--neighbors-key", "pca"]) == 0
    assert ad.read_h5ad(out).uns["scice"]["params"]["obsp"] == "pca_connectivities"
    assert main([*args, "--obsp", "pca_connectivities", "--key-added", "again"]) == 0
    assert ad.read_h5ad(tmp_path / "out.h5ad").obs.columns.tolist() == ["block", "again"]


def test_dask_backend(planted):
    import joblib
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster,
        Client(cluster),
        joblib.parallel_config(backend="dask"),
    ):
        adata = planted_partition()
        xs.tl.scice(adata, cluster_range=range(2, 7), n_jobs=2, **FAST)
    for key in ("n_cluster", "ic", "best_labels"):
        np.testing.assert_array_equal(adata.uns["scice"][key], planted.uns["scice"][key])


def test_cli_reads_graph_and_writes_the_results(tmp_path):
    from xspecies.cli.main import main

    adata = planted_partition()
    adata.X = np.ones(adata.shape, dtype=np.float32)
    path = tmp_path / "in.h5ad"
    adata.write_h5ad(path)
    out = tmp_path / "out.h5ad"
    args = [str(path), "--cluster-range", "3", "5", "--n-trials", "5", "--n-bootstrap", "10"]
    assert main(["scice", *args, "--max-iterations", "20", "--output", str(out), "--quiet"]) == 0
    assert "scice" not in ad.read_h5ad(path).uns  # input untouched with --output
    back = ad.read_h5ad(out)
    assert back.uns["scice"]["cluster_range_tested"].tolist() == [3, 4, 5]
    assert 4 in back.uns["scice"]["consistent_clusters"]
    np.testing.assert_array_equal(back.X, adata.X)
    assert (back.obs["block"] == adata.obs["block"]).all()
    assert back.obs.columns.tolist() == ["block", "scice"]  # the labels of best_cluster added
    assert back.obs["scice"].nunique() == back.uns["scice"]["best_cluster"] == 4
    assert pd.crosstab(back.obs["scice"], back.obs["block"]).gt(0).sum().sum() == 4
    assert main(["scice", str(path), "--resolution", "0.1", "--n-trials", "3", "--quiet", "--inplace"]) == 0
    assert ad.read_h5ad(path).uns["scice"]["analysis_mode"] == "resolution"
    assert main(["scice", str(path), "--obsp", "nope", "--resolution", "0.1"]) == 2  # one-line error


def test_modularity_objective_and_copy():
    adata = planted_partition()
    out = xs.tl.scice(adata, cluster_range=[4], objective_function="modularity", copy=True, **FAST)
    assert "scice" not in adata.uns  # copy=True leaves the input alone
    res = out.uns["scice"]
    assert res["n_cluster"].tolist() == [4]
    assert res["ic"][0] == pytest.approx(1.0)
    assert res["params"]["objective_function"] == "modularity"


def test_no_result_writes_no_labels():
    adata = planted_partition()
    adata.obs["scice"] = "previous"
    with pytest.warns(UserWarning, match=r"no labels were written to adata.obs\['scice'\]"):
        xs.tl.scice(adata, cluster_range=[4], remove_threshold=1.0, **FAST)  # every IC is >= 1: all removed
    res = adata.uns["scice"]
    assert res["best_cluster"] == -1 and res["n_cluster"].size == 0
    assert (adata.obs["scice"] == "previous").all()  # left as it was, not half-replaced
