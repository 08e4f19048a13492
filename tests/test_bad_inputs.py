"""Bad or unusual inputs get a clear, early error (type and message checked) and leave the data unchanged.

Every case is one class of input from issue 15 (data level: pp, tl and the shared validation layer).
``unchanged`` compares checksums of ``X``, ``obs``, ``var``, ``obsm``, ``layers`` and ``uns`` taken before
and after the call.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
from importlib.resources import files

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import xspecies as xs
from xspecies import _validation as validation
from xspecies._validation import (
    check_context_fingerprint,
    check_counts,
    check_fraction,
    check_int,
    check_n_jobs,
    check_neighbor_indices,
    check_number,
    check_positive_int,
    context_fingerprint,
)

# --- helpers ------------------------------------------------------------------------------------------


def _matrix_bytes(M) -> bytes:
    if sparse.issparse(M):
        M = sparse.csr_matrix(M)
        return b"".join(np.ascontiguousarray(a).tobytes() for a in (M.data, M.indices, M.indptr))
    return np.ascontiguousarray(M).tobytes() + str(np.asarray(M).dtype).encode()


def _frame_bytes(df: pd.DataFrame) -> bytes:
    return (
        pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes()
        + repr(list(df.columns)).encode()
        + repr(df.dtypes.astype(str).tolist()).encode()
    )


def checksum(adata: ad.AnnData) -> str:
    """Checksum of everything a user keeps in an AnnData: X, obs, var, obsm, layers and uns."""
    digest = hashlib.sha256()
    digest.update(repr((adata.shape, adata.is_view)).encode())
    digest.update(_matrix_bytes(adata.X))
    digest.update(_frame_bytes(adata.obs))
    digest.update(_frame_bytes(adata.var))
    for mapping in (adata.obsm, adata.layers):
        for key in sorted(k for k in mapping if k is not None):  # anndata 0.13 lists X as layer None
            digest.update(key.encode() + _matrix_bytes(mapping[key]))
    digest.update(pickle.dumps(adata.uns))
    return digest.hexdigest()


def _counts(n_obs: int, n_vars: int, seed: int = 0, prefix: str = "g") -> ad.AnnData:
    rng = np.random.default_rng(seed)
    adata = ad.AnnData(sparse.csr_matrix(rng.poisson(2.0, (n_obs, n_vars)).astype(np.float32)))
    adata.obs_names = [f"c{i}" for i in range(n_obs)]
    adata.var_names = [f"{prefix}{j}" for j in range(n_vars)]
    adata.obs["batch"] = pd.Categorical(np.where(np.arange(n_obs) % 2, "b1", "b2"))
    adata.obs["cell_type"] = pd.Categorical(np.where(np.arange(n_obs) % 3, "alpha", "beta"))
    return adata


def _with_value(adata: ad.AnnData, row: int, col: int, value: float, kind: str = "csr") -> ad.AnnData:
    X = adata.X.toarray()
    X[row, col] = value
    if kind == "csr":
        adata.X = sparse.csr_matrix(X)
    elif kind == "csr_array":
        adata.X = sparse.csr_array(X)
    elif kind == "float16":
        adata.X = X.astype(np.float16)
    else:
        adata.X = X
    return adata


def _demo(species: str) -> ad.AnnData:
    with files("xspecies").joinpath("data", f"pancreas_{species}_demo.h5ad").open("rb") as fh:
        return ad.read_h5ad(fh)


@pytest.fixture(scope="module")
def demo():
    return {"human": _demo("human"), "mouse": _demo("mouse")}


@pytest.fixture(scope="module")
def pair():
    """Target (translated) and context on 30 shared genes."""
    context = _counts(60, 30, seed=1)
    target = _counts(40, 30, seed=2, prefix="G")
    target.var["ortholog"] = list(context.var_names)
    return target, context


def assert_unchanged(objects, call, exc, match):
    before = [checksum(a) for a in objects]
    with pytest.raises(exc, match=match):
        call()
    assert [checksum(a) for a in objects] == before


# --- the count check: every value, every matrix type --------------------------------------------------

BAD_VALUES = [
    (0.5, "non-integer values"),
    (np.nan, "NaN or infinite"),
    (np.inf, "NaN or infinite"),
    (-1.0, "negative values"),
]
MATRIX_KINDS = ["csr", "csr_array", "dense", "float16"]


@pytest.mark.parametrize("kind", MATRIX_KINDS)
@pytest.mark.parametrize(("value", "message"), BAD_VALUES)
def test_count_check_sees_the_last_value_and_names_cell_and_gene(monkeypatch, kind, value, message):
    # small chunks: the bad value sits many chunks after the start (the old check sampled the start only)
    monkeypatch.setattr(validation, "_CHUNK", 64)
    adata = _with_value(_counts(300, 20), 297, 13, value, kind)
    assert_unchanged([adata], lambda: check_counts(adata), ValueError, rf"{message}.*cell 'c297', gene 'g13'")


def test_count_check_csc_backed_and_integer(tmp_path, monkeypatch):
    monkeypatch.setattr(validation, "_CHUNK", 64)
    adata = _with_value(_counts(300, 20), 150, 4, 2.5)
    adata.X = sparse.csc_matrix(adata.X)
    with pytest.raises(ValueError, match="cell 'c150', gene 'g4'"):
        check_counts(adata)
    adata.X = sparse.csr_matrix(adata.X)
    adata.write_h5ad(tmp_path / "bad.h5ad")
    backed = ad.read_h5ad(tmp_path / "bad.h5ad", backed="r")
    with pytest.raises(ValueError, match="cell 'c150', gene 'g4'"):
        check_counts(backed)
    backed.file.close()
    integers = _counts(30, 5)
    integers.X = integers.X.toarray().astype(np.int64)
    check_counts(integers)
    integers.X[3, 2] = -2
    with pytest.raises(ValueError, match="negative values.*cell 'c3'"):
        check_counts(integers)


def test_count_check_refuses_empty_and_non_numeric():
    with pytest.raises(ValueError, match="empty"):
        check_counts(_counts(5, 3)[:0])
    text = ad.AnnData(np.array([["a", "b"]], dtype=object))
    with pytest.raises(ValueError, match="dtype object"):
        check_counts(text)


# --- parameter checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "value", "exc", "match"),
    [
        (check_positive_int, 0, ValueError, r"integer >= 1, got 0"),
        (check_positive_int, -5, ValueError, r"integer >= 1, got -5"),
        (check_positive_int, 2.5, TypeError, "must be an integer"),
        (check_positive_int, True, TypeError, "must be an integer"),
        (check_positive_int, "3", TypeError, "must be an integer"),
        (check_n_jobs, 0, ValueError, "positive number of jobs"),
        (check_fraction, float("nan"), ValueError, r"in \[0, 1\], got nan"),
        (check_fraction, 1.5, ValueError, r"in \[0, 1\]"),
        (check_number, "x", TypeError, "must be a number"),
    ],
)
def test_parameter_checks_name_the_parameter(check, value, exc, match):
    with pytest.raises(exc, match=match) as info:
        check("n", value)
    assert str(info.value).startswith("n ")


def test_parameter_checks_accept_good_values():
    assert check_positive_int("n", np.int64(3)) == 3
    assert check_int("seed", 0, minimum=0) == 0
    assert check_n_jobs("n_jobs", -1) == -1 and check_n_jobs("n_jobs", None) is None
    assert check_fraction("q", 1.0) == 1.0
    assert check_number("prior", np.inf, minimum=0) == np.inf
    with pytest.raises(ValueError, match=r"prior must lie in \[0, inf\)"):
        check_number("prior", -1, minimum=0)


# --- pp.prepare ---------------------------------------------------------------------------------------


def _small_batch(n_small: int) -> ad.AnnData:
    adata = _counts(120, 50)
    batch = np.array(["big"] * adata.n_obs, dtype=object)
    batch[:n_small] = "small"
    adata.obs["batch"] = pd.Categorical(batch)
    return adata


PREPARE_CASES = {
    "n_top_genes=0": ({"n_top_genes": 0}, ValueError, "n_top_genes must be an integer >= 1, got 0"),
    "n_top_genes=-5": ({"n_top_genes": -5}, ValueError, "n_top_genes must be an integer >= 1, got -5"),
    "n_top_genes=2.5": ({"n_top_genes": 2.5}, TypeError, "n_top_genes must be an integer"),
    "min_batch_size=-1": ({"min_batch_size": -1}, ValueError, "min_batch_size"),
    "min_genes_fraction=nan": ({"min_genes_fraction": float("nan")}, ValueError, "min_genes_fraction"),
    "min_genes_fraction=1": ({"min_genes_fraction": 1.0}, ValueError, "min_genes_fraction"),
    "missing layer": ({"layer": "counts"}, KeyError, "layer 'counts' not found"),
    "missing batch key": ({"batch_key": "donor"}, KeyError, "'donor' not found in adata.obs"),
}


@pytest.mark.parametrize("case", list(PREPARE_CASES))
@pytest.mark.parametrize("copy", [False, True])
def test_prepare_parameters(case, copy):
    kwargs, exc, match = PREPARE_CASES[case]
    adata = _counts(60, 30)
    assert_unchanged([adata], lambda: xs.pp.prepare(adata, copy=copy, **kwargs), exc, match)


@pytest.mark.parametrize("n_small", [1, 2, 5, 10])
def test_prepare_small_batches_before_hvg(n_small):
    # one cell used to kill the interpreter inside skmisc, 2-10 cells gave skmisc errors
    adata = _small_batch(n_small)
    assert_unchanged(
        [adata],
        lambda: xs.pp.prepare(
            adata, batch_key="batch", min_batch_size=1, min_celltype_size=1, n_top_genes=10
        ),
        ValueError,
        rf"batch 'small' of obs\['batch'\] has {n_small} after filtering",
    )


def test_prepare_too_few_cells_for_hvg_without_batches():
    adata = _counts(8, 50)
    assert_unchanged(
        [adata],
        lambda: xs.pp.prepare(adata, min_celltype_size=1, n_top_genes=10),
        ValueError,
        "the data has 8 after filtering",
    )


def test_prepare_small_batches_are_fine_without_hvg():
    adata = _small_batch(2)
    out = xs.pp.prepare(adata, batch_key="batch", min_batch_size=1, min_celltype_size=1, copy=True)
    assert out.n_obs == adata.n_obs


@pytest.mark.parametrize(
    ("column", "message"),
    [("batch", r"obs\['batch'\] has 1 missing \(NaN\) values, e.g. cell 'c7'"), ("cell_type", "cell 'c7'")],
)
def test_prepare_nan_in_batch_or_labels(column, message):
    adata = _counts(60, 30)
    values = adata.obs[column].astype(object)
    values.iloc[7] = np.nan
    adata.obs[column] = pd.Categorical(values)
    assert_unchanged(
        [adata], lambda: xs.pp.prepare(adata, batch_key="batch", labels_key="cell_type"), ValueError, message
    )


@pytest.mark.parametrize(("value", "message"), BAD_VALUES)
def test_prepare_bad_counts(value, message):
    adata = _with_value(_counts(60, 30), 59, 29, value)
    assert_unchanged([adata], lambda: xs.pp.prepare(adata), ValueError, rf"{message}.*'c59'")


def test_prepare_on_a_view_in_place():
    parent = _counts(60, 30)
    view = parent[:40]
    assert_unchanged([parent], lambda: xs.pp.prepare(view), ValueError, "is a view")
    assert xs.pp.prepare(view, copy=True).n_obs == 40


# --- pp.translate_genes -------------------------------------------------------------------------------


def _lower(adata):
    adata.var_names = adata.var_names.str.lower()
    return adata


def _ensembl(adata):
    adata.var_names = [f"ENSG{i:011d}" for i in range(adata.n_vars)]
    return adata


@pytest.mark.parametrize(
    ("species", "change", "source", "match"),
    [
        ("human", _lower, "human", r"only 0 of 4676 genes map.*match only when case is ignored"),
        ("human", _ensembl, "human", r"only 0 of 4676 genes map.*Ensembl gene IDs"),
        ("mouse", lambda a: a, "human", r"only 5 of 4313 genes map.*species swapped"),
    ],
    ids=["lower-case", "ensembl", "swapped"],
)
def test_translate_genes_mapping_rate(demo, species, change, source, match):
    adata = change(demo[species].copy())
    target = "mouse" if source == "human" else "human"
    assert_unchanged([adata], lambda: xs.pp.translate_genes(adata, source, target), ValueError, match)


def test_translate_genes_warns_on_a_low_rate(demo):
    adata = demo["human"].copy()
    keep = adata.var_names[:300]
    adata.var_names = [name if name in keep else f"{name}.x" for name in adata.var_names]
    with pytest.warns(UserWarning, match=r"genes map \(6\.\d%\)"):
        xs.pp.translate_genes(adata, "human", "mouse")
    assert adata.uns["ortholog"]["n_mapped"] > 0


def test_translate_genes_on_a_view(demo):
    parent = demo["human"].copy()
    view = parent[:50]
    assert_unchanged([parent], lambda: xs.pp.translate_genes(view, "human", "mouse"), ValueError, "is a view")
    assert "ortholog" not in view.var
    out = xs.pp.translate_genes(view, "human", "mouse", copy=True)
    assert out.var["ortholog"].notna().sum() > 4000


# --- pp.homology_neighbors ----------------------------------------------------------------------------

NEIGHBOR_PARAMETERS = {
    "batch_size=-1": {"batch_size": -1},
    "batch_size=0": {"batch_size": 0},
    "n_neighbors=0": {"n_neighbors": 0},
    "n_vote=0": {"n_vote": 0},
    "n_components=0": {"n_components": 0},
    "random_state=-1": {"random_state": -1},
}


@pytest.mark.parametrize("case", list(NEIGHBOR_PARAMETERS))
def test_homology_neighbors_parameters(pair, case):
    target, context = pair
    kwargs = {"n_neighbors": 10, "n_vote": 5, **NEIGHBOR_PARAMETERS[case]}
    name = case.split("=")[0]
    assert_unchanged(
        [target, context],
        lambda: xs.pp.homology_neighbors(target, context, labels_key="cell_type", **kwargs),
        ValueError,
        rf"^{name} must be an integer",
    )


def _zero_rows(adata, rows):
    X = adata.X.toarray()
    X[rows] = 0
    adata.X = sparse.csr_matrix(X)
    return adata


@pytest.mark.parametrize(
    ("which", "match"),
    [
        ("all context", "the context holds no counts on them at all"),
        ("target cell", r"1 target cells have no counts on the 30 shared genes, e.g. 'c3'"),
        ("most context", "only 5 of the 60 context cells have counts"),
    ],
)
def test_homology_neighbors_cells_without_counts(pair, which, match):
    target, context = (a.copy() for a in pair)
    if which == "all context":
        _zero_rows(context, slice(None))
    elif which == "target cell":
        _zero_rows(target, [3])
    else:
        _zero_rows(context, slice(5, None))
    assert_unchanged(
        [target, context],
        lambda: xs.pp.homology_neighbors(target, context, labels_key="cell_type", n_neighbors=10, n_vote=5),
        ValueError,
        match,
    )


def test_context_cells_without_counts_are_never_neighbours(pair):
    target, context = (a.copy() for a in pair)
    _zero_rows(context, [0, 1, 2])
    xs.pp.homology_neighbors(
        target, context, labels_key="cell_type", n_neighbors=20, n_vote=5, metric="euclidean"
    )
    assert not np.isin(target.obsm["homology_neighbors"], [0, 1, 2]).any()


def test_homology_neighbors_labels(pair):
    target, context = (a.copy() for a in pair)
    context.obs["cell_type"] = pd.Categorical([np.nan] * context.n_obs, categories=["alpha"])
    assert_unchanged(
        [target, context],
        lambda: xs.pp.homology_neighbors(target, context, labels_key="cell_type", n_neighbors=10, n_vote=5),
        ValueError,
        r"context.obs\['cell_type'\] holds only missing",
    )
    # some missing labels: they do not vote; a cell without any labelled voter gets no label
    labels = np.array(["alpha"] * context.n_obs, dtype=object)
    labels[1:] = None
    context.obs["cell_type"] = pd.Categorical(labels)
    xs.pp.homology_neighbors(target, context, labels_key="cell_type", n_neighbors=10, n_vote=3)
    voted = target.obs["homology_cell_type"]
    has_labelled_voter = (target.obsm["homology_neighbors"][:, :3] == 0).any(axis=1)
    assert (voted.isna().to_numpy() == ~has_labelled_voter).all()
    assert (target.obs["homology_agreement"].to_numpy()[~has_labelled_voter] == 0).all()


def test_homology_neighbors_two_datasets_of_one_species(demo):
    human = demo["human"].copy()
    xs.pp.translate_genes(human, "human", "mouse")
    other_human = demo["human"].copy()
    assert_unchanged(
        [human, other_human],
        lambda: xs.pp.homology_neighbors(human, other_human, n_neighbors=10, n_vote=5),
        ValueError,
        r"only 8 of 4362 genes map.*both datasets of one species",
    )


def test_homology_neighbors_on_a_view_and_bad_counts(pair):
    target, context = pair
    view = target[:20]
    assert_unchanged(
        [target, context],
        lambda: xs.pp.homology_neighbors(view, context, n_neighbors=10, n_vote=5),
        ValueError,
        "target is a view",
    )
    bad = _with_value(context.copy(), 59, 0, 0.5)
    assert_unchanged(
        [target, bad],
        lambda: xs.pp.homology_neighbors(target, bad, n_neighbors=10, n_vote=5),
        ValueError,
        r"context.X contains non-integer values.*'c59'",
    )


def test_homology_neighbors_csr_array_and_fingerprint(pair):
    target, context = pair
    expected = xs.pp.homology_neighbors(
        target, context, labels_key="cell_type", n_neighbors=10, n_vote=5, copy=True
    )
    t_arr, c_arr = target.copy(), context.copy()
    t_arr.X, c_arr.X = sparse.csr_array(t_arr.X), sparse.csr_array(c_arr.X)
    xs.pp.homology_neighbors(t_arr, c_arr, labels_key="cell_type", n_neighbors=10, n_vote=5)
    np.testing.assert_array_equal(t_arr.obsm["homology_neighbors"], expected.obsm["homology_neighbors"])
    assert t_arr.uns["homology"]["context_fingerprint"] == context_fingerprint(context)


# --- the context fingerprint and stored neighbour indices ---------------------------------------------


def test_context_fingerprint_tells_order_and_size():
    context = _counts(20, 5)
    recorded = context_fingerprint(context)
    check_context_fingerprint(recorded, context, "uns['homology']")
    check_context_fingerprint(None, context, "uns['homology']")  # results from before fingerprints
    with pytest.raises(ValueError, match="same size but other cell or gene names, or another order"):
        check_context_fingerprint(recorded, context[::-1].copy(), "uns['homology']")
    with pytest.raises(ValueError, match="20 cells x 5 genes, this one has 10 cells x 5 genes"):
        check_context_fingerprint(recorded, context[:10].copy(), "uns['homology']")
    renamed = context.copy()
    renamed.var_names = [f"x{j}" for j in range(5)]
    assert context_fingerprint(renamed) != recorded


@pytest.mark.parametrize(
    ("indices", "match"),
    [
        (np.array([[0, 1], [2, 20]]), "out of range.*e.g. 20 in row 1"),
        (np.array([[0, -1]]), "out of range.*e.g. -1 in row 0"),
        (np.array([[0.5, 1.0]]), "integer row indices"),
        (np.array([0, 1]), "2D"),
    ],
)
def test_neighbour_indices(indices, match):
    with pytest.raises(ValueError, match=match):
        check_neighbor_indices(indices, 20, "obsm['homology_neighbors']")


# --- tl on data: evaluate_transfer and filter_outliers ------------------------------------------------


def test_evaluate_transfer_leaves_missing_labels_out():
    adata = ad.AnnData(np.zeros((6, 1)))
    adata.obs["true"] = pd.Categorical(["A", "A", "B", "B", None, None])
    adata.obs["pred"] = pd.Categorical(["A", "B", "B", "A", None, None])
    before = checksum(adata)
    with pytest.warns(UserWarning, match="2 cells without a true or predicted label are left out"):
        report = xs.tl.evaluate_transfer(adata, labels_key="true", key="pred")
    assert report.balanced_accuracy == pytest.approx(0.5)  # 0.667 when "nan" counted as a type
    assert report.n_missing == 2 and report.n_cells == 4
    assert "nan" not in report.confusion.index and "nan" not in report.confusion.columns
    stored = adata.uns.pop("pred_evaluation")  # the report is stored, nothing else is changed
    assert stored["n_missing"] == 2 and stored["params"]["key"] == "pred"
    assert checksum(adata) == before
    adata.obs["pred"] = pd.Categorical([None] * 6, categories=["A"])
    assert_unchanged(
        [adata],
        lambda: xs.tl.evaluate_transfer(adata, labels_key="true", key="pred"),
        ValueError,
        "every cell lacks",
    )


def test_evaluate_transfer_missing_prediction_is_left_out():
    adata = ad.AnnData(np.zeros((4, 1)))
    adata.obs["true"] = ["A", "A", "B", "B"]
    adata.obs["pred"] = pd.Categorical(["A", None, "B", "A"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        report = xs.tl.evaluate_transfer(adata, labels_key="true", key="pred")
    assert report.recall.to_dict() == {"A": 1.0, "B": 0.5} and report.n_missing == 1


@pytest.mark.parametrize(
    ("data", "level", "match"),
    [
        (
            np.r_[np.ones((3, 2)), [[np.nan, 1.0]], np.zeros((5, 2))],
            0.9,
            r"NaN or infinite values in 1 rows, e.g. row 3",
        ),
        (np.ones((9, 2)), float("nan"), "confidence_level"),
        (np.ones((9, 2)), 0.0, "confidence_level"),
    ],
)
def test_filter_outliers_bad_input(data, level, match):
    with pytest.raises(ValueError, match=match):
        xs.tl.filter_outliers(data, confidence_level=level)


# --- tl on models: transfer_labels ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(synthetic_pair):
    import torch

    from xspecies import model

    torch.manual_seed(0)
    ctx, tgt = synthetic_pair(n_ctx=80, n_tgt=60, n_genes=20, n_neighbors=20)
    tgt.uns["homology"]["context_fingerprint"] = context_fingerprint(ctx)
    train = {"max_epochs": 1, "enable_progress_bar": False, "batch_size": 32}
    model.ContextModel.setup_anndata(ctx, batch_key="donor", labels_key="cell_type")
    context = model.ContextModel(
        ctx, n_latent=4, outer_hidden=(16,), inner_hidden=(16,), decoder_hidden=(16,), library_hidden=(8,)
    )
    context.train(**train)
    model.TargetModel.setup_anndata(tgt, batch_key="donor")
    target = model.TargetModel.from_context(context, tgt, n_candidates=10)
    target.train(**train)
    return target, context


TRANSFER_PARAMETERS = {
    "n_vote=0": ({"n_vote": 0}, ValueError, "n_vote must be an integer >= 1"),
    "n_candidates=-1": ({"n_candidates": -1}, ValueError, "n_candidates must be an integer >= 1"),
    "batch_size=0": ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1"),
    "rank_prior=-1": ({"rank_prior": -1.0}, ValueError, "rank_prior must lie in"),
    "novel_alpha=nan": ({"novel_alpha": float("nan")}, ValueError, "novel_alpha must lie in"),
    "novel_alpha=0": ({"novel_alpha": 0.0}, ValueError, "novel_alpha must lie in"),
    "calibration_folds=1": ({"calibration_folds": 1}, ValueError, "calibration_folds must be an integer"),
    "labels_key": ({"labels_key": "tissue"}, KeyError, "'tissue' not found in context.obs"),
}


@pytest.mark.parametrize("case", list(TRANSFER_PARAMETERS))
def test_transfer_labels_parameters(models, case):
    target, context = models
    kwargs, exc, match = TRANSFER_PARAMETERS[case]
    kwargs = {"labels_key": "cell_type", "progress_bar": False, **kwargs}
    assert_unchanged(
        [target.adata, context.adata], lambda: xs.tl.transfer_labels(target, context, **kwargs), exc, match
    )


def test_transfer_labels_checks_the_context_fingerprint_and_indices(models):
    target, context = models

    def refused(message):
        assert_unchanged(
            [target.adata, context.adata],
            lambda: xs.tl.transfer_labels(target, context, labels_key="cell_type", progress_bar=False),
            ValueError,
            message,
        )

    homology = target.adata.uns["homology"]
    recorded = homology["context_fingerprint"]
    homology["context_fingerprint"] = context_fingerprint(context.adata[::-1])
    try:
        refused(r"uns\['homology'\] was computed against another context.*another order")
    finally:
        homology["context_fingerprint"] = recorded
    neighbours = target.adata.obsm["homology_neighbors"]
    saved = neighbours[2, 0]
    neighbours[2, 0] = context.adata.n_obs + 5
    try:
        refused(r"out of range for a context of 80 cells, e.g. 85 in row 2")
    finally:
        neighbours[2, 0] = saved
    distances = np.ones(neighbours.shape, dtype=np.float32)
    distances[3, 1] = np.nan
    target.adata.obsm["homology_distances"] = distances
    try:
        refused(r"obsm\['homology_distances'\] must hold one finite, non-negative distance per neighbour")
    finally:
        del target.adata.obsm["homology_distances"]


def test_transfer_labels_keys_follow_key_added(models):
    target, context = models
    adata = target.adata
    xs.tl.transfer_labels(
        target, context, labels_key="cell_type", n_vote=5, key_added="first", progress_bar=False
    )
    first = adata.obsm["first_candidates"].copy()
    xs.tl.transfer_labels(
        target,
        context,
        labels_key="cell_type",
        candidates="latent",
        n_candidates=15,
        key_added="second",
        progress_bar=False,
    )
    np.testing.assert_array_equal(adata.obsm["first_candidates"], first)
    assert adata.obsm["second_candidates"].shape == (adata.n_obs, 15)
    assert adata.obsm["second_similarity"].shape == (adata.n_obs, 15)
    assert "xspecies_candidates" not in adata.obsm
