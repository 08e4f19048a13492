import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import xspecies as xs


@pytest.fixture(scope="module")
def mouse_demo():
    return xs.datasets.pancreas("mouse")


def test_prepare_copy_removes_rare_types_and_small_batches(mouse_demo):
    adata = mouse_demo.copy()
    adata.obs["donor"] = adata.obs["donor"].cat.add_categories("tiny")
    adata.obs.iloc[:5, adata.obs.columns.get_loc("donor")] = "tiny"
    out = xs.pp.prepare(adata, batch_key="donor", labels_key="cell_ontology_class", copy=True)
    assert adata.n_obs == mouse_demo.n_obs  # copy=True leaves the input alone
    assert "tiny" not in set(out.obs["donor"])
    counts = out.obs["cell_ontology_class"].value_counts()
    assert counts[counts > 0].min() >= 20
    for rare in ("B cell", "leukocyte", "T cell", "Schwann cell"):
        assert rare not in set(out.obs["cell_ontology_class"])
    report = out.uns["prepare"]["removed"]
    assert list(report.columns) == ["step", "reason", "group", "n_cells"]
    assert report.loc[report["step"] == "batch", "group"].tolist() == ["tiny"]
    assert set(report.loc[report["step"] == "celltype", "group"]) >= {
        "B cell",
        "leukocyte",
        "T cell",
        "Schwann cell",
    }
    # every removed cell is accounted for
    assert (
        report["n_cells"].sum() == adata.n_obs - out.n_obs == out.uns["prepare"]["n_obs_before"] - out.n_obs
    )


def test_prepare_in_place_complexity_and_hvg(mouse_demo):
    adata = mouse_demo.copy()
    n_genes = np.asarray((adata.X > 0).sum(axis=1)).ravel()
    threshold = np.quantile(n_genes, 0.1) / adata.n_vars
    assert xs.pp.prepare(adata, min_genes_fraction=threshold, n_top_genes=500) is None
    expected = int((n_genes >= np.ceil(threshold * mouse_demo.n_vars)).sum())
    assert adata.n_obs == expected < mouse_demo.n_obs
    assert adata.n_vars == 500
    assert adata.var["highly_variable"].all()
    report = adata.uns["prepare"]["removed"].set_index("step")
    assert report.loc["complexity", "n_cells"] == mouse_demo.n_obs - expected
    assert report.loc["hvg", "n_cells"] == mouse_demo.n_vars - 500
    assert adata.uns["prepare"]["n_vars_after"] == 500
    assert adata.uns["prepare"]["params"]["n_top_genes"] == 500
    assert adata.uns["prepare"]["params"]["batch_key"] == ""


def test_prepare_hvg_flavors_rank_from_the_counts(tmp_path, mouse_demo):
    """seurat (default) ranks a log-normalized copy, seurat_v3 the counts; the kept counts are unchanged."""
    import scanpy as sc

    norm = mouse_demo.copy()
    sc.pp.normalize_total(norm, target_sum=1e4)
    sc.pp.log1p(norm)
    expected = {
        "seurat": sc.pp.highly_variable_genes(norm, n_top_genes=300, flavor="seurat", inplace=False),
        "seurat_v3": sc.pp.highly_variable_genes(
            mouse_demo, n_top_genes=300, flavor="seurat_v3", inplace=False
        ),
    }
    for flavor, ranked in expected.items():
        kwargs = {} if flavor == "seurat" else {"flavor": flavor}
        out = xs.pp.prepare(mouse_demo, min_genes_fraction=0.0, n_top_genes=300, copy=True, **kwargs)
        assert list(out.var_names) == list(mouse_demo.var_names[ranked["highly_variable"].to_numpy()])
        assert out.uns["prepare"]["params"]["flavor"] == flavor
        assert (out.X != mouse_demo[:, out.var_names].X).nnz == 0  # still the raw counts
        out.write_h5ad(tmp_path / f"{flavor}.h5ad")  # every var column the ranking adds can be written
    # per batch: scanpy < 1.11 returns this table sorted by rank; the genes must still be the flagged ones
    for flavor, source in (("seurat", norm), ("seurat_v3", mouse_demo)):
        flagged = source.copy()
        sc.pp.highly_variable_genes(flagged, n_top_genes=300, flavor=flavor, batch_key="donor")  # by name
        out = xs.pp.prepare(
            mouse_demo, batch_key="donor", min_genes_fraction=0.0, n_top_genes=300, flavor=flavor, copy=True
        )
        assert list(out.var_names) == list(flagged.var_names[flagged.var["highly_variable"].to_numpy()])
        assert np.array_equal(out.var["means"], flagged[:, out.var_names].var["means"])
    kept = {
        f: set(xs.pp.prepare(mouse_demo, n_top_genes=300, flavor=f, copy=True).var_names) for f in expected
    }
    assert kept["seurat"] != kept["seurat_v3"]
    adata = mouse_demo.copy()
    with pytest.raises(
        ValueError, match=r"flavor must be one of \('seurat', 'seurat_v3'\), got 'cell_ranger'"
    ):
        xs.pp.prepare(adata, min_celltype_size=0, n_top_genes=300, flavor="cell_ranger")
    assert adata.shape == mouse_demo.shape  # checked before anything is removed


def test_prepare_report_roundtrip(tmp_path, mouse_demo):
    out = xs.pp.prepare(mouse_demo, labels_key="cell_ontology_class", copy=True)
    out.write_h5ad(tmp_path / "p.h5ad")
    back = ad.read_h5ad(tmp_path / "p.h5ad")
    pd.testing.assert_frame_equal(
        back.uns["prepare"]["removed"].reset_index(drop=True),
        out.uns["prepare"]["removed"].reset_index(drop=True),
        check_dtype=False,
    )


def _tiny(values):
    X = sparse.csr_matrix(np.asarray(values, dtype=np.float32))
    obs = pd.DataFrame({"cell_type": ["a"] * X.shape[0]}, index=[f"c{i}" for i in range(X.shape[0])])
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(X.shape[1])]))


def test_prepare_errors():
    counts = [[1, 0, 2], [0, 3, 1]]
    with pytest.raises(KeyError, match="'batch' not found in adata.obs"):
        xs.pp.prepare(_tiny(counts), batch_key="batch")
    with pytest.raises(ValueError, match="non-integer values.*e.g. 0.5 for cell 'c1', gene 'g2'"):
        xs.pp.prepare(_tiny([[1, 1, 0], [1, 1, 0.5]]))
    with pytest.raises(ValueError, match="negative"):
        xs.pp.prepare(_tiny([[-1, 1, 0], [1, 1, 1]]))
    with pytest.raises(ValueError, match="NaN"):
        xs.pp.prepare(_tiny([[np.nan, 1, 0], [1, 1, 1]]))
    with pytest.raises(ValueError, match="every cell was filtered away at step 'celltype'"):
        xs.pp.prepare(_tiny(counts), labels_key="cell_type", min_celltype_size=5)
    with pytest.raises(ValueError, match="min_genes_fraction"):
        xs.pp.prepare(_tiny(counts), min_genes_fraction=1.5)
