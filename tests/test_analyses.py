"""Cross-species analyses (tl.similar_cells, celltype_similarity, homologous_lfc, data_lfc) on a tiny model."""

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

import xspecies as xs
from xspecies import model

TYPES = ["alpha", "beta", "delta"]
N_GENES = 30
TRAIN = {"max_epochs": 2, "enable_progress_bar": False, "batch_size": 64}


@pytest.fixture(scope="module")
def models(synthetic_pair):
    torch.manual_seed(0)
    ctx, tgt = synthetic_pair(
        n_ctx=180,
        n_tgt=120,
        n_genes=N_GENES,
        types=tuple(TYPES),
        novel="epsilon",
        library=500.0,
        shift_sd=0.5,
    )
    model.ContextModel.setup_anndata(ctx, batch_key="donor", labels_key="cell_type")
    context = model.ContextModel(
        ctx, n_latent=4, outer_hidden=(32,), inner_hidden=(16,), decoder_hidden=(32,)
    )
    context.train(**TRAIN)
    model.TargetModel.setup_anndata(tgt, batch_key="donor")
    target = model.TargetModel.from_context(context, tgt)
    target.train(**TRAIN)
    return target, context


def test_filter_outliers_chi2_cutoff():
    rng = np.random.default_rng(0)
    data = np.r_[rng.normal(size=(4000, 3)), [[12.0, -12.0, 12.0]]]
    inliers = xs.tl.filter_outliers(data, confidence_level=0.9)
    assert not inliers[-1]
    assert inliers[:-1].mean() == pytest.approx(0.9, abs=0.02)
    assert xs.tl.filter_outliers(data[:3], confidence_level=0.5).all()  # too few rows for a covariance
    with pytest.raises(ValueError, match="confidence_level"):
        xs.tl.filter_outliers(data, confidence_level=0.0)


def test_histogram_mode():
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(-3.0, 0.5, 5000), rng.normal(-40.0, 10.0, 1000)]
    assert xs.tl.histogram_mode(values) == pytest.approx(-3.0, abs=0.6)
    assert np.isnan(xs.tl.histogram_mode(np.array([])))


def test_similar_cells_ranks_all_context_cells(models, monkeypatch):
    target, context = models
    df = xs.tl.similar_cells(target, context, index=5, labels_key=["cell_type", "donor"])
    assert len(df) == context.adata.n_obs
    assert list(df.columns) == ["context_index", "obs_name", "similarity", "cell_type", "donor"]
    assert np.all(np.diff(df["similarity"].to_numpy()) <= 0)
    assert sorted(df["context_index"]) == list(range(context.adata.n_obs))
    obs = context.adata.obs.iloc[df["context_index"]]
    assert (df["cell_type"].to_numpy() == obs["cell_type"].astype(str).to_numpy()).all()
    assert (df["obs_name"].to_numpy() == obs.index.to_numpy()).all()
    # the same scores as the model's primitive on the whole table, also when chunked
    z = context.get_latent_representation()
    direct = target.similarity_to_table(z, np.arange(len(z))[None], indices=[5])[0]
    np.testing.assert_allclose(df["similarity"], direct[df["context_index"]], rtol=1e-4, atol=1e-3)
    monkeypatch.setattr("xspecies.tl._similar_cells._CELLS_X_GENES", 50 * N_GENES)
    chunked = xs.tl.similar_cells(target, context, index="h5", n_top=10)
    assert len(chunked) == 10
    np.testing.assert_allclose(chunked["similarity"], df["similarity"][:10], rtol=1e-4, atol=1e-3)
    assert chunked.attrs["target_obs_name"] == "h5"


def test_similar_cells_bad_input(models):
    target, context = models
    with pytest.raises(IndexError, match="out of range"):
        xs.tl.similar_cells(target, context, index=target.adata.n_obs)
    with pytest.raises(KeyError, match="nope"):
        xs.tl.similar_cells(target, context, index="nope")
    with pytest.raises(KeyError, match="tissue"):
        xs.tl.similar_cells(target, context, index=0, labels_key="tissue")
    with pytest.raises(TypeError, match="TargetModel"):
        xs.tl.similar_cells(context, target, index=0)


def test_celltype_similarity_table_and_scales(models):
    target, context = models
    sim = xs.tl.celltype_similarity(
        target,
        context,
        target_labels_key="cell_type",
        context_labels_key="cell_type",
        n_target=40,
        n_context=10,
        progress_bar=False,
    )
    assert list(sim.index) == ["alpha", "beta", "delta", "epsilon"]
    assert list(sim.columns) == TYPES
    assert np.isfinite(sim.to_numpy()).all()
    stored = target.adata.uns["celltype_similarity"]
    pd.testing.assert_frame_equal(stored["table"], sim)
    assert stored["params"]["n_context"] == 10
    mm = xs.tl.celltype_similarity(
        target,
        context,
        target_labels_key="cell_type",
        context_labels_key="cell_type",
        n_target=40,
        n_context=10,
        scale="min_max",
        key_added="mm",
        progress_bar=False,
    )
    np.testing.assert_allclose(mm.max(axis=1), 1.0)
    np.testing.assert_allclose(mm.min(axis=1), 0.0)
    pd.testing.assert_index_equal(mm.idxmax(axis=1).index, sim.index)
    assert (mm.idxmax(axis=1) == sim.idxmax(axis=1)).all()  # same seed, same ranking
    mx = xs.tl.celltype_similarity(
        target,
        context,
        target_labels_key="cell_type",
        context_labels_key="cell_type",
        n_target=40,
        n_context=10,
        scale="max",
        progress_bar=False,
    )
    np.testing.assert_allclose(mx.abs().max(axis=1), 1.0)
    with pytest.raises(ValueError, match="scale"):
        xs.tl.celltype_similarity(
            target, context, target_labels_key="cell_type", context_labels_key="cell_type", scale="log"
        )


def test_celltype_similarity_draws_from_bounded_pools(models, monkeypatch):
    """Each target cell draws distinct context cells of every type from a pool whose size does not grow."""
    from xspecies.tl import _celltype_similarity as cts

    target, context = models
    seen = {}
    original = type(target).similarity_to_table

    def spy(self, z_table, candidates, **kwargs):
        seen["table"], seen["candidates"] = z_table, candidates
        return original(self, z_table, candidates, **kwargs)

    monkeypatch.setattr(type(target), "similarity_to_table", spy)
    monkeypatch.setattr(cts, "_POOL", 12)
    labels = context.adata.obs["cell_type"]
    xs.tl.celltype_similarity(
        target,
        context,
        target_labels_key="cell_type",
        context_labels_key="cell_type",
        n_context=5,
        progress_bar=False,
    )
    sizes = [min(12, n) for n in labels.value_counts().sort_index()]
    assert len(seen["table"]) == sum(sizes) < context.adata.n_obs
    widths = np.cumsum([0, *(min(5, n) for n in sizes)])
    starts = np.cumsum([0, *sizes])
    for j in range(len(sizes)):  # draws of type j: distinct cells of pool j
        block = seen["candidates"][:, widths[j] : widths[j + 1]]
        assert ((block >= starts[j]) & (block < starts[j + 1])).all()
        assert all(len(set(row)) == block.shape[1] for row in block)


def test_celltype_similarity_uses_transferred_labels(models):
    target, context = models
    adata = target.adata
    adata.obs["xspecies_annotation"] = adata.obs["cell_type"].astype(str).replace("epsilon", "alpha")
    try:
        sim = xs.tl.celltype_similarity(
            target,
            context,
            target_labels_key="annotation",
            context_labels_key="cell_type",
            n_target=30,
            n_context=5,
            progress_bar=False,
        )
        assert sim.index.name == "xspecies_annotation"
        assert list(sim.index) == TYPES
        with pytest.raises(KeyError, match="transfer_labels"):
            xs.tl.celltype_similarity(
                target, context, target_labels_key="missing", context_labels_key="cell_type"
            )
    finally:
        del adata.obs["xspecies_annotation"]


def test_homologous_lfc_table(models):
    target, context = models
    df = xs.tl.homologous_lfc(
        target,
        context,
        target_labels_key="cell_type",
        context_labels_key="cell_type",
        n_samples=300,
        progress_bar=False,
    )
    assert list(df.columns) == [
        "cell_type",
        "gene_target",
        "gene_context",
        "lfc",
        "lfc_specific",
        "p",
        "rho_target",
        "rho_context",
        "mu_target",
        "mu_context",
        "lfc_rand",
        "p_rand",
    ]
    assert len(df) == len(TYPES) * N_GENES  # "epsilon" exists in the target only
    assert sorted(df["cell_type"].unique()) == TYPES
    first = df[df.cell_type == "alpha"]
    assert list(first["gene_target"]) == list(target.adata.var_names)
    assert list(first["gene_context"]) == list(context.adata.var_names)
    assert np.isfinite(df[["lfc", "lfc_rand", "mu_target", "mu_context"]].to_numpy()).all()
    assert df["p"].between(0, 1).all() and df["p_rand"].between(0, 1).all()
    assert (df["rho_target"] > 0).all() and (df["mu_context"] > 0).all()
    # renormalised rho of the homologous genes: means sum to 1, and lfc is the log2 ratio of the means
    assert first["rho_target"].sum() == pytest.approx(1.0, abs=1e-3)
    assert first["rho_context"].sum() == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(
        first["lfc"], np.log2(first["rho_target"] + 1e-6) - np.log2(first["rho_context"] + 1e-6), atol=1e-3
    )
    assert target.adata.uns["homologous_lfc"]["params"]["n_samples"] == 300
    again = xs.tl.homologous_lfc(
        target,
        context,
        target_labels_key="cell_type",
        context_labels_key="cell_type",
        cell_types="beta",
        n_samples=300,
        progress_bar=False,
        key_added="x",
    )
    pd.testing.assert_frame_equal(
        again[["lfc", "p"]], df[df.cell_type == "beta"][["lfc", "p"]].reset_index(drop=True), atol=0.5, rtol=0
    )
    # the type-specific part: each gene's LFC minus its mean over the evaluated types (none for one type)
    gene_mean = df.groupby(["gene_target", "gene_context"])["lfc"].transform("mean")
    np.testing.assert_allclose(df["lfc_specific"], df["lfc"] - gene_mean, atol=1e-5)
    assert again["lfc_specific"].isna().all()


def test_homologous_lfc_bad_input(models):
    target, context = models
    with pytest.raises(ValueError, match="epsilon.*context"):
        xs.tl.homologous_lfc(
            target,
            context,
            target_labels_key="cell_type",
            context_labels_key="cell_type",
            cell_types=["epsilon"],
            progress_bar=False,
        )
    with pytest.raises(KeyError, match="tissue"):
        xs.tl.homologous_lfc(target, context, target_labels_key="cell_type", context_labels_key="tissue")
    saved = target.homologous_genes_
    target.homologous_genes_ = (np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    try:
        with pytest.raises(ValueError, match="no homologous genes"):
            xs.tl.homologous_lfc(
                target, context, target_labels_key="cell_type", context_labels_key="cell_type"
            )
    finally:
        target.homologous_genes_ = saved


def test_data_lfc_matches_manual(models):
    target, context = models
    df = xs.tl.data_lfc(
        target, context, target_labels_key="cell_type", context_labels_key="cell_type", eps=1e-6
    )
    assert len(df) == len(TYPES) * N_GENES

    def mean_norm(adata, t):
        x = adata[adata.obs["cell_type"] == t].X.toarray()
        x = x[x.sum(1) > 0]
        return (x / x.sum(1, keepdims=True)).mean(0)

    expected = np.log2(mean_norm(target.adata, "beta") + 1e-6) - np.log2(
        mean_norm(context.adata, "beta") + 1e-6
    )
    observed = (mean_norm(target.adata, "beta") > 0) | (mean_norm(context.adata, "beta") > 0)
    np.testing.assert_allclose(
        df[df.cell_type == "beta"]["lfc"], np.where(observed, expected, np.nan), atol=1e-5
    )
    # a loaded model has no homologous_genes_: the genes come from uns["homology"]
    saved, target.homologous_genes_ = target.homologous_genes_, None
    try:
        pd.testing.assert_frame_equal(
            xs.tl.data_lfc(target, context, target_labels_key="cell_type", context_labels_key="cell_type"), df
        )
    finally:
        target.homologous_genes_ = saved


def test_plots_of_real_outputs(models, tmp_path):
    target, context = models
    lfc = xs.tl.homologous_lfc(
        target,
        context,
        target_labels_key="cell_type",
        context_labels_key="cell_type",
        n_samples=200,
        progress_bar=False,
    )
    axes = xs.pl.homologous_lfc(lfc, n_top=3, show=False)
    assert len(axes) == len(TYPES)
    axes = xs.pl.lfc_comparison(
        lfc,
        xs.tl.data_lfc(target, context, target_labels_key="cell_type", context_labels_key="cell_type"),
        show=False,
    )
    assert all("Spearman r" in ax.get_title() for ax in axes)
    sim = xs.tl.celltype_similarity(
        target,
        context,
        target_labels_key="cell_type",
        context_labels_key="cell_type",
        n_target=20,
        n_context=5,
        progress_bar=False,
    )
    ax = xs.pl.celltype_similarity(sim, show=False)
    assert sum(t.get_text() == "1" for t in ax.texts) == len(sim)
    context.adata.obsm["X_umap"] = context.get_latent_representation()[:, :2]
    target.adata.obsm["X_umap"] = target.get_latent_representation()[:, :2]
    near = xs.tl.similar_cells(target, context, index=0)
    ax = xs.pl.similar_cells(
        context.adata,
        target.adata,
        near,
        index=0,
        labels_key="cell_type",
        save=tmp_path / "s.png",
        show=False,
    )
    assert len(ax.collections[2].get_offsets()) == context.adata.n_obs
    # the same plot from the result stored in the target AnnData (cell and table from uns["similar_cells"])
    stored = xs.pl.similar_cells(context.adata, target.adata, labels_key="cell_type", show=False)
    assert stored.get_title() == ax.get_title()
    fig = xs.pl.history(target, return_fig=True)
    assert any(ax.get_title() == "alignment" for ax in fig.axes)
    plt.close("all")


def test_results_stored_in_one_layout_and_read_back_by_pl(models, tmp_path):
    """Every table tool stores {"params", "table"} under key_added; its pl pair reads it from the AnnData."""
    target, context = models
    labels = {"target_labels_key": "cell_type", "context_labels_key": "cell_type"}
    lfc = xs.tl.homologous_lfc(target, context, **labels, n_samples=100, progress_bar=False, key_added="m")
    observed = xs.tl.data_lfc(target, context, **labels, key_added="d")
    sim = xs.tl.celltype_similarity(target, context, **labels, n_target=20, n_context=5, progress_bar=False)
    near = xs.tl.similar_cells(target, context, index="h3", n_top=5)
    uns = target.adata.uns
    for key, table in (("m", lfc), ("d", observed), ("celltype_similarity", sim), ("similar_cells", near)):
        assert set(uns[key]) == {"params", "table"}
        pd.testing.assert_frame_equal(uns[key]["table"], table)
    assert uns["d"]["params"]["cell_types"] == TYPES
    assert uns["similar_cells"]["params"]["index"] == "h3"
    axes = xs.pl.homologous_lfc(target.adata, key="m", n_top=2, show=False)
    assert len(axes) == len(TYPES)
    axes = xs.pl.lfc_comparison(target.adata, key="m", data_key="d", show=False)
    assert len(axes) == len(TYPES)
    ax = xs.pl.celltype_similarity(target.adata, show=False)
    assert sum(t.get_text() == "1" for t in ax.texts) == len(sim)
    with pytest.raises(KeyError, match="tl.homologous_lfc"):
        xs.pl.homologous_lfc(target.adata, key="absent", show=False)
    pathways = xs.tl.pathway_lfc(
        target.adata, {"first": list(lfc["gene_target"][:6])}, key="m", min_genes=3, n_permutations=20
    )
    assert uns["pathway_lfc"]["params"]["key"] == "m"
    pd.testing.assert_frame_equal(uns["pathway_lfc"]["table"], pathways)
    assert xs.pl.pathway_lfc(target.adata, show=False).get_xlabel() == "pathway"
    plt.close("all")
    # the stored results survive a round trip through h5ad
    copy = target.adata.copy()
    copy.write_h5ad(tmp_path / "results.h5ad")
    back = ad.read_h5ad(tmp_path / "results.h5ad")
    pd.testing.assert_frame_equal(back.uns["m"]["table"], lfc, check_dtype=False)
    assert back.uns["similar_cells"]["params"]["index"] == "h3"
