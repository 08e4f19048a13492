"""Bad inputs to the models and to scICE: a clear, early error (or warning) and the user's data unchanged.

Each case asserts the exception type, a fragment of the message and, by checksum, that the AnnData
given is untouched (X, obs, var, obsm, uns).
"""

from __future__ import annotations

import hashlib
import pickle

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import xspecies as xs
from xspecies.model import ContextModel, NotTrainedError, TargetModel
from xspecies.model._base import require_trained
from xspecies.model._target import check_built_from
from xspecies.tl._scice._leiden import LeidenRunner

ONE_EPOCH = {"max_epochs": 1, "enable_progress_bar": False, "batch_size": 32}
SCICE_FAST = {
    "n_trials": 4,
    "n_bootstrap": 10,
    "max_iterations": 10,
    "n_iterations": 3,
    "progress_bar": False,
}


def _feed(digest, value) -> None:
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            digest.update(str(key).encode())
            _feed(digest, value[key])
    elif isinstance(value, pd.DataFrame | pd.Series | pd.Index):
        digest.update(pickle.dumps(value))
    elif sp.issparse(value):
        for part in (value.data, value.indices, value.indptr):
            digest.update(np.ascontiguousarray(part).tobytes())
    elif isinstance(value, np.ndarray):
        digest.update(str(value.dtype).encode() + np.ascontiguousarray(value).tobytes())
    else:
        digest.update(repr(value).encode())


def checksum(adata: ad.AnnData) -> str:
    """Hash of everything a user would notice changing: X, obs, var, obsm, obsp, layers and uns."""
    digest = hashlib.sha1()
    for part in (adata.X, adata.obs, adata.var, dict(adata.obsm), dict(adata.obsp), dict(adata.layers)):
        _feed(digest, part)
    _feed(digest, dict(adata.uns))
    return digest.hexdigest()


@pytest.fixture(scope="module")
def models(synthetic_pair):
    """A context model and a target model built from it, each trained for one epoch on tiny data."""
    torch.manual_seed(0)
    ctx, tgt = synthetic_pair(seed=11, n_ctx=60, n_tgt=40, n_genes=20)
    ContextModel.setup_anndata(ctx, batch_key="donor", labels_key="cell_type")
    context = ContextModel(ctx)
    context.train(**ONE_EPOCH)
    TargetModel.setup_anndata(tgt, batch_key="donor")
    target = TargetModel.from_context(context, tgt, n_candidates=10)
    target.train(**ONE_EPOCH)
    return context, target


@pytest.fixture
def pair(synthetic_pair):
    return synthetic_pair(seed=11, n_ctx=60, n_tgt=40, n_genes=20)


# --- setup_anndata: counts, columns, layers ------------------------------------------------------
def _last_value(value):
    def change(a):
        a.X = a.X.tocsr(copy=True)
        a.X.data[-1] = value
        return a

    return change


def _nan_in(column):
    def change(a):
        values = a.obs[column].astype(object)
        values.iloc[-1] = np.nan
        a.obs[column] = values
        return a

    return change


def _empty_genes(a):
    return a[:, []].copy()


SETUP_CASES = {
    "nan count": (_last_value(np.nan), {}, ValueError, r"NaN or infinite.*cell 'm59', gene '\w+'"),
    "inf count": (_last_value(np.inf), {}, ValueError, r"NaN or infinite.*cell 'm59'"),
    "negative count": (_last_value(-1.0), {}, ValueError, r"negative values.*cell 'm59'"),
    "fractional count": (_last_value(0.5), {}, ValueError, r"non-integer.*cell 'm59'"),
    "nan batch": (_nan_in("donor"), {"batch_key": "donor"}, ValueError, r"'donor'.*missing \(NaN\).*'m59'"),
    "nan label": (
        _nan_in("cell_type"),
        {"labels_key": "cell_type"},
        ValueError,
        r"'cell_type'.*labels_key.*NaN",
    ),
    "missing batch column": (lambda a: a, {"batch_key": "nope"}, KeyError, "batch_key='nope'"),
    "missing layer": (lambda a: a, {"layer": "counts"}, KeyError, "'counts' is not a layer"),
    "no genes": (_empty_genes, {}, ValueError, "0 genes"),
}


@pytest.mark.parametrize("model_cls", [ContextModel, TargetModel])
@pytest.mark.parametrize("case", SETUP_CASES)
def test_setup_anndata_refuses_bad_data_and_leaves_it_unchanged(pair, model_cls, case):
    change, kwargs, error, match = SETUP_CASES[case]
    ctx, tgt = pair
    adata = change(ctx if model_cls is ContextModel else tgt)
    if model_cls is TargetModel:  # the target's cells are h0..h39
        match = match.replace("m59", "h39")
    before = checksum(adata)
    with pytest.raises(error, match=match):
        model_cls.setup_anndata(adata, **kwargs)
    assert checksum(adata) == before
    assert "_indices" not in adata.obs and "_scvi_uuid" not in adata.uns


@pytest.mark.parametrize("dense", [True, False])
def test_count_check_reads_every_value(dense):
    """The check used to look at the first 100,000 stored values (or 500 dense rows) only."""
    X = np.ones((600, 200), dtype=np.float32)
    X[599, 199] = 0.5
    adata = ad.AnnData(X if dense else sp.csr_matrix(X))
    adata.obs_names = [f"c{i}" for i in range(600)]
    adata.var_names = [f"g{i}" for i in range(200)]
    before = checksum(adata)
    with pytest.raises(ValueError, match="non-integer values.*cell 'c599', gene 'g199'"):
        ContextModel.setup_anndata(adata)
    assert checksum(adata) == before


def test_float16_counts_train(pair):
    ctx, _ = pair
    ctx.X = ctx.X.toarray().astype(np.float16)
    ContextModel.setup_anndata(ctx, batch_key="donor")
    context = ContextModel(ctx, n_latent=3)
    context.train(**ONE_EPOCH)
    z = context.get_latent_representation()
    assert z.shape == (60, 3) and np.isfinite(z).all()


# --- architecture -------------------------------------------------------------------------------
ARCHITECTURE_CASES = {
    "n_latent=0": ({"n_latent": 0}, "n_latent must be an integer >= 1, got 0"),
    "n_latent=-2": ({"n_latent": -2}, "n_latent must be an integer >= 1"),
    "n_latent=2.5": ({"n_latent": 2.5}, "n_latent must be an integer, got 2.5"),
    "zero hidden size": ({"outer_hidden": (0,)}, "every size in outer_hidden must be an integer >= 1"),
    "hidden size not a sequence": ({"decoder_hidden": 300}, "decoder_hidden must be a sequence"),
    "dropout 1": ({"layer_order": ("linear", ("dropout", 1.0))}, r"Dropout rate must lie in \[0, 1\)"),
    "dropout < 0": ({"layer_order": ("linear", ("dropout", -0.1))}, r"Dropout rate must lie in \[0, 1\)"),
    "dropout nan": (
        {"layer_order": ("linear", ("dropout", float("nan")))},
        r"Dropout rate must lie in \[0, 1\)",
    ),
}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_candidates": 0}, "n_candidates must be an integer >= 1, got 0"),
        ({"n_candidates": 100}, "n_candidates=100 exceeds the 30 neighbours"),
        ({"k_neigh": 10}, "k_neigh was renamed n_candidates"),
        ({"n_latent": 4}, "'n_latent', which the target takes from the context's shared inner encoder"),
        ({"n_neighbours": 4}, "'n_neighbours', which it does not take"),
        ({"decoder_hidden": (0,)}, "every size in decoder_hidden must be an integer >= 1"),
        ({"top_percent": 0}, r"top_percent must lie in \(0, 100\]"),
        ({"top_percent": 150.0}, r"top_percent must lie in \(0, 100\]"),
        ({"top_percent": float("nan")}, r"top_percent must lie in \(0, 100\]"),
    ],
)
def test_from_context_parameters(models, pair, kwargs, match):
    context, _ = models
    _, tgt = pair
    TargetModel.setup_anndata(tgt, batch_key="donor")
    before = checksum(tgt)
    with pytest.raises((TypeError, ValueError), match=match):
        TargetModel.from_context(context, tgt, **kwargs)
    assert checksum(tgt) == before


# --- training -------------------------------------------------------------------------------------
TRAIN_CASES = {
    "max_epochs=-1 (trained forever)": ({"max_epochs": -1}, "max_epochs must be an integer >= 1, got -1"),
    "max_epochs=0": ({"max_epochs": 0}, "max_epochs must be an integer >= 1, got 0"),
    "max_epochs=1.5": ({"max_epochs": 1.5}, "max_epochs must be an integer"),
    "max_epochs=True": ({"max_epochs": True}, "max_epochs must be an integer"),
    "max_epochs='3'": ({"max_epochs": "3"}, "max_epochs must be an integer"),
    "batch_size=0": ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    "lr=0": ({"lr": 0.0}, "lr must be a finite number > 0"),
    "lr=nan": ({"lr": float("nan")}, "lr must be a finite number > 0"),
    "kl weight nan": ({"max_kl_weight": float("nan")}, "max_kl_weight must be a finite number >= 0"),
    "kl warmup -1": ({"n_epochs_kl_warmup": -1}, "n_epochs_kl_warmup must be an integer >= 0"),
    "train_size=0": ({"train_size": 0.0}, r"train_size must lie in \(0, 1\]"),
}


CONTEXT_STEPS = {
    "build": lambda adata, kwargs: ContextModel(adata, **kwargs),
    "train": lambda adata, kwargs: ContextModel(adata).train(**{**ONE_EPOCH, **kwargs}),
}
CONTEXT_CASES = {
    **{f"build, {name}": ("build", *case) for name, case in ARCHITECTURE_CASES.items()},
    **{f"train, {name}": ("train", *case) for name, case in TRAIN_CASES.items()},
}


@pytest.mark.parametrize("case", CONTEXT_CASES)
def test_context_refuses_bad_arguments_before_any_work(pair, case):
    step, kwargs, match = CONTEXT_CASES[case]
    ctx, _ = pair
    ContextModel.setup_anndata(ctx)
    before = checksum(ctx)
    with pytest.raises((TypeError, ValueError), match=match):
        CONTEXT_STEPS[step](ctx, kwargs)
    assert checksum(ctx) == before


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_epochs": -1}, "max_epochs must be an integer >= 1, got -1"),
        ({"max_epochs": 0}, "max_epochs must be an integer >= 1, got 0"),
        ({"eta_max": float("nan")}, "eta_max must be a finite number >= 0"),
        ({"eta_start": -1.0}, "eta_start must be a finite number >= 0"),
        ({"partner_refresh": 0}, "partner_refresh must be an integer >= 1"),
        ({"n_epochs_eta_warmup": -1}, "n_epochs_eta_warmup must be an integer >= 0"),
    ],
)
def test_target_train_refuses_bad_arguments_before_training(models, pair, kwargs, match):
    context, _ = models
    _, tgt = pair
    TargetModel.setup_anndata(tgt, batch_key="donor")
    target = TargetModel.from_context(context, tgt, n_candidates=10)
    with pytest.raises((TypeError, ValueError), match=match):
        target.train(**{**ONE_EPOCH, **kwargs})
    assert not target.is_trained


@pytest.mark.parametrize("n_cells", [1, 2])
def test_too_few_cells_to_train(pair, n_cells):
    ctx, _ = pair
    tiny = ctx[:n_cells].copy()
    ContextModel.setup_anndata(tiny)
    context = ContextModel(tiny)
    with pytest.raises(ValueError, match=f"at least 3 training cells; the AnnData has {n_cells} cells"):
        context.train(**ONE_EPOCH)
    assert not context.is_trained


def test_a_fit_without_an_epoch_leaves_the_model_untrained(pair):
    ctx, _ = pair
    ContextModel.setup_anndata(ctx)
    context = ContextModel(ctx)
    context.train(**ONE_EPOCH, max_steps=0)
    assert not context.is_trained
    with pytest.raises(NotTrainedError, match="not trained"):
        context.get_latent_representation()


# --- not trained ----------------------------------------------------------------------------------
CONTEXT_NEEDS_TRAINING = {
    "get_latent_representation": lambda m: m.get_latent_representation(),
    "get_intermediate_representation": lambda m: m.get_intermediate_representation(),
    "get_normalized_expression": lambda m: m.get_normalized_expression(),
    "get_likelihood_parameters": lambda m: m.get_likelihood_parameters(),
    "posterior_predictive_sample": lambda m: m.posterior_predictive_sample(),
    "get_elbo": lambda m: m.get_elbo(),
    "get_reconstruction_error": lambda m: m.get_reconstruction_error(),
    "get_latent_library_size": lambda m: m.get_latent_library_size(),
    "decode_expression": lambda m: m.decode_expression(np.zeros((2, 10)), batch=0),
    "require_trained": lambda m: require_trained(m, "context"),
}


@pytest.mark.parametrize("method", CONTEXT_NEEDS_TRAINING)
def test_untrained_context_raises_not_trained(pair, method):
    ctx, _ = pair
    ContextModel.setup_anndata(ctx, batch_key="donor")
    context = ContextModel(ctx)
    before = checksum(ctx)
    with pytest.raises(NotTrainedError, match="not trained: call") as info:
        CONTEXT_NEEDS_TRAINING[method](context)
    # scvi-tools raises RuntimeError for untrained models, xspecies used to raise ValueError
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, ValueError)
    assert checksum(ctx) == before


def test_untrained_models_in_from_context_and_similarity(models, pair):
    context, _ = models
    ctx, tgt = pair
    ContextModel.setup_anndata(ctx)
    TargetModel.setup_anndata(tgt, batch_key="donor")
    with pytest.raises(NotTrainedError, match="The context model is not trained"):
        TargetModel.from_context(ContextModel(ctx), tgt)
    target = TargetModel.from_context(context, tgt, n_candidates=10)
    z = context.get_latent_representation()
    neighbors = target.adata.obsm["homology_neighbors"][:, :5]
    with pytest.raises(NotTrainedError):
        target.likelihood_similarity(z[neighbors])
    with pytest.raises(NotTrainedError):
        target.similarity_to_table(z, neighbors)


# --- gene names and order at inference ------------------------------------------------------------
INFERENCE = {
    "get_latent_representation": lambda m, a: m.get_latent_representation(a),
    "get_intermediate_representation": lambda m, a: m.get_intermediate_representation(a),
    "get_normalized_expression": lambda m, a: m.get_normalized_expression(a),
    "get_likelihood_parameters": lambda m, a: m.get_likelihood_parameters(a),
    "posterior_predictive_sample": lambda m, a: m.posterior_predictive_sample(a),
    "get_elbo": lambda m, a: m.get_elbo(a),
    "get_latent_library_size": lambda m, a: m.get_latent_library_size(a),
}


@pytest.mark.parametrize("registered", [False, True])
@pytest.mark.parametrize("method", INFERENCE)
def test_inference_refuses_genes_in_another_order(models, method, registered):
    context, _ = models
    shuffled = context.adata[:, ::-1].copy()
    if registered:
        ContextModel.setup_anndata(shuffled, batch_key="donor", labels_key="cell_type")
    before = checksum(shuffled)
    with pytest.raises(ValueError, match=r"same genes in another order.*adata\[:, model.adata.var_names\]"):
        INFERENCE[method](context, shuffled)
    assert checksum(shuffled) == before


def test_inference_refuses_other_genes_and_accepts_the_fix(models):
    context, target = models
    subset = context.adata[:, 2:].copy()
    with pytest.raises(ValueError, match=r"trained on 20 genes; the genes of `adata` \(18\) differ"):
        context.get_latent_representation(subset)
    fixed = context.adata[:, ::-1].copy()[:, context.adata.var_names].copy()
    np.testing.assert_allclose(
        context.get_latent_representation(fixed), context.get_latent_representation(), atol=1e-5
    )
    with pytest.raises(ValueError, match="another order"):
        target.get_latent_representation(target.adata[:, ::-1].copy())


# --- the context of from_context ------------------------------------------------------------------
@pytest.fixture(scope="module", params=["reordered cells", "other cells of the same count"])
def wrong_context(request, synthetic_pair):
    """A trained context model whose AnnData has the searched context's cell count, not its cells."""
    torch.manual_seed(0)
    if request.param == "reordered cells":
        ctx = synthetic_pair(seed=11, n_ctx=60, n_tgt=40, n_genes=20)[0][::-1].copy()
    else:
        ctx = synthetic_pair(seed=12, n_ctx=80, n_tgt=40, n_genes=20)[0][20:].copy()  # cells m20..m79
    ContextModel.setup_anndata(ctx, batch_key="donor", labels_key="cell_type")
    context = ContextModel(ctx)
    context.train(**ONE_EPOCH)
    return context


def test_from_context_refuses_another_context_of_the_same_size(models, pair, wrong_context):
    _, target = models
    _, tgt = pair
    TargetModel.setup_anndata(tgt, batch_key="donor")
    before = checksum(tgt)
    assert wrong_context.adata.n_obs == tgt.uns["homology"]["context_n_obs"]
    with pytest.raises(ValueError, match="ran on another context than the context model's AnnData"):
        TargetModel.from_context(wrong_context, tgt)
    assert checksum(tgt) == before
    with pytest.raises(ValueError, match="was not built from this context model"):
        check_built_from(target, wrong_context)


def test_from_context_without_fingerprint_warns(models, pair):
    context, target = models
    check_built_from(target, context)  # the right pair passes
    _, tgt = pair
    del tgt.uns["homology"]["context_fingerprint"]
    TargetModel.setup_anndata(tgt, batch_key="donor")
    with pytest.warns(UserWarning, match="no context fingerprint"):
        TargetModel.from_context(context, tgt, n_candidates=10)


# --- scICE ----------------------------------------------------------------------------------------
def _graph(n_blocks=4, size=20, p_out=0.01, seed=0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    block = np.repeat(np.arange(n_blocks), size)
    prob = np.where(block[:, None] == block[None, :], 0.6, p_out)
    upper = sp.coo_matrix(np.triu(rng.random(prob.shape) < prob, k=1) * rng.uniform(0.5, 1.0, prob.shape))
    adata = ad.AnnData(np.zeros((block.size, 1), dtype=np.float32))
    adata.obsp["connectivities"] = (upper + upper.T).tocsr()
    return adata


def _no_edges(a):
    a.obsp["connectivities"] = sp.csr_matrix(a.shape[:1] * 2)
    return a


def _self_loops_only(a):
    a.obsp["connectivities"] = sp.identity(a.n_obs, format="csr")
    return a


SCICE_CASES = {
    "graph without edges": (_no_edges, {}, "has no edges between cells"),
    "self-loops only": (_self_loops_only, {}, "has no edges between cells"),
    "beta=0": (None, {"beta": 0.0}, "beta must be a finite number > 0, got 0.0"),
    "beta<0": (None, {"beta": -0.1}, "beta must be a finite number > 0"),
    "beta=nan": (None, {"beta": float("nan")}, "beta must be a finite number > 0"),
    "ic_threshold=nan": (None, {"ic_threshold": float("nan")}, "ic_threshold must be a number >= 1"),
    "ic_threshold<1": (None, {"ic_threshold": 0.5}, "ic_threshold must be a number >= 1"),
    "remove_threshold=nan": (None, {"remove_threshold": float("nan")}, "remove_threshold must be"),
    "n_jobs=0": (None, {"n_jobs": 0}, r"n_jobs must be None or a non-zero integer.*got 0"),
    "n_jobs=1.5": (None, {"n_jobs": 1.5}, "n_jobs must be None or a non-zero integer"),
    "random_state<0": (None, {"random_state": -1}, "random_state must be None or an integer >= 0"),
    "random_state=0.5": (None, {"random_state": 0.5}, "random_state must be None or an integer >= 0"),
    "neighbors_key and obsp": (None, {"neighbors_key": "n", "obsp": "c"}, "either neighbors_key"),
}


@pytest.mark.parametrize("case", SCICE_CASES)
def test_scice_refuses_bad_input_before_any_run(case, monkeypatch):
    change, kwargs, match = SCICE_CASES[case]
    adata = _graph()
    if change is not None:
        adata = change(adata)
    before = checksum(adata)

    def no_run(*args, **kwargs):
        raise AssertionError("a Leiden run started")

    monkeypatch.setattr(LeidenRunner, "run", no_run)
    with pytest.raises(ValueError, match=match):
        xs.tl.scice(adata, cluster_range=[2, 3], **SCICE_FAST, **kwargs)
    assert checksum(adata) == before


def test_scice_labels_refuses_nan_threshold():
    adata = _graph()
    xs.tl.scice(adata, resolution=[0.1], **SCICE_FAST)
    with pytest.raises(ValueError, match="threshold must be a number"):
        xs.tl.scice_labels(adata, threshold=float("nan"))


def test_scice_random_state_none_records_a_seed_that_reproduces_the_run():
    drawn = xs.tl.scice(_graph(), cluster_range=[4], random_state=None, copy=True, **SCICE_FAST)
    seed = drawn.uns["scice"]["params"]["random_state"]
    assert isinstance(seed, int) and seed >= 0
    again = xs.tl.scice(_graph(), cluster_range=[4], random_state=seed, copy=True, **SCICE_FAST)
    for key in ("n_cluster", "gamma", "ic", "ic_vec", "best_labels"):
        np.testing.assert_array_equal(drawn.uns["scice"][key], again.uns["scice"][key])


def test_scice_warns_about_unreached_counts():
    adata = _graph(p_out=0.0)  # four separate blocks: fewer than 4 clusters cannot be reached
    with pytest.warns(
        UserWarning, match=r"no result for the requested cluster counts \[2, 3\].*no resolution"
    ):
        xs.tl.scice(adata, cluster_range=[2, 3, 4], **SCICE_FAST)
    res = adata.uns["scice"]
    assert not res["coverage_complete"] and res["n_cluster"].tolist() == [4]


def test_scice_names_tied_counts():
    adata = _graph()
    with pytest.warns(UserWarning, match="are equally consistent"):
        xs.tl.scice(adata, cluster_range=range(2, 6), **SCICE_FAST)
    res = adata.uns["scice"]
    tied = res["tied_clusters"].tolist()
    assert len(tied) > 1 and res["best_cluster"] in tied
    assert np.all(res["ic"][np.isin(res["n_cluster"], tied)] == res["ic"].min())
