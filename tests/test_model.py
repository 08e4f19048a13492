"""Context and target models on small synthetic data (seconds per test)."""

import json
import warnings

import numpy as np
import pytest
import torch

import xspecies as xs
from xspecies import model
from xspecies._validation import context_fingerprint

TRAIN = {"max_epochs": 2, "enable_progress_bar": False, "batch_size": 64}


@pytest.fixture(scope="module")
def trained(synthetic_pair):
    torch.manual_seed(0)
    ctx, tgt = synthetic_pair()
    model.ContextModel.setup_anndata(ctx, batch_key="donor", labels_key="cell_type")
    context = model.ContextModel(ctx)
    context.train(**TRAIN)
    model.TargetModel.setup_anndata(tgt, batch_key="donor")
    target = model.TargetModel.from_context(context, tgt)
    before = {k: v.clone() for k, v in target.module.inner_encoder.state_dict().items()}
    target.train(**TRAIN)
    return context, target, before


def test_context_outputs(trained):
    context, _, _ = trained
    z = context.get_latent_representation()
    assert z.shape == (context.adata.n_obs, 10) and np.isfinite(z).all()
    inter = context.get_intermediate_representation()
    assert inter.shape == (context.adata.n_obs, 300)
    expr = context.get_normalized_expression()
    assert expr.shape == context.adata.shape
    assert "elbo_train" in context.history and len(context.history["elbo_train"]) == 2
    decoded = context.decode_expression(z[:4], "m1", library=100.0)
    np.testing.assert_allclose(decoded["rho"].sum(1), 1.0, rtol=1e-4)
    np.testing.assert_allclose(decoded["mu"], decoded["rho"] * 100.0, rtol=1e-5)
    assert decoded["dropout"].shape == decoded["rho"].shape  # zero-inflation probabilities (zinb)
    assert ((decoded["dropout"] > 0) & (decoded["dropout"] < 1)).all()
    with pytest.raises(ValueError, match="Unknown batch"):
        context.decode_expression(z[:2], "nope")


def test_kl_ramp_and_eta_ramp():
    from xspecies.model._training import linear_ramp

    assert linear_ramp(0, 10, 25, 10) == 10
    assert linear_ramp(5, 10, 25, 10) == 17.5
    assert linear_ramp(12, 10, 25, 10) == 25


def test_optimizer_through_scvi_custom_creator(monkeypatch, trained):
    """The plan hands scvi-tools an optimizer_creator: fused Adam, standard where refused, or the user's."""
    from xspecies.model._training import OptimizerCreator, SpeciesTrainingPlan

    context, _, _ = trained
    plan = SpeciesTrainingPlan(context.module, lr=2e-3)
    assert plan.optimizer_name == "Custom"
    assert plan.optimizer_creator == OptimizerCreator("Adam", lr=2e-3, eps=0.01, weight_decay=1e-6)
    optimizer = plan.configure_optimizers()["optimizer"]
    assert type(optimizer) is torch.optim.Adam and optimizer.defaults["fused"]
    assert optimizer.defaults["lr"] == 2e-3 and optimizer.defaults["eps"] == 0.01
    # scvi-tools 1.5's plan argument, honoured with every scvi-tools
    standard = SpeciesTrainingPlan(context.module, optimizer="AdamW", fused_optimizer=False)
    optimizer = standard.configure_optimizers()["optimizer"]
    assert type(optimizer) is torch.optim.AdamW and not optimizer.defaults["fused"]
    # a device that refuses the fused step gets the standard one
    original = torch.optim.Adam

    def no_fused(params, fused=None, **kwargs):
        if fused:
            raise RuntimeError("fused=True requires all the params to be on a supported device")
        return original(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", no_fused)
    optimizer = plan.configure_optimizers()["optimizer"]
    assert not optimizer.defaults["fused"] and len(optimizer.param_groups[0]["params"]) > 0
    monkeypatch.undo()
    # the user's own creator
    custom = SpeciesTrainingPlan(
        context.module, optimizer="Custom", optimizer_creator=lambda p: torch.optim.SGD(p, lr=0.1)
    )
    assert type(custom.configure_optimizers()["optimizer"]) is torch.optim.SGD
    with pytest.raises(ValueError, match="optimizer_creator"):
        SpeciesTrainingPlan(context.module, optimizer="Custom")
    with pytest.raises(ValueError, match="optimizer must be"):
        SpeciesTrainingPlan(context.module, optimizer="SGD")


def _history_after_training(make_pair):
    import scvi

    scvi.settings.seed = 0
    ctx, tgt = make_pair(n_ctx=120, n_tgt=90)
    model.ContextModel.setup_anndata(ctx, batch_key="donor")
    context = model.ContextModel(ctx)
    context.train(**TRAIN)
    model.TargetModel.setup_anndata(tgt, batch_key="donor")
    target = model.TargetModel.from_context(context, tgt)
    target.train(**TRAIN)
    return context.history, target.history


def test_epoch_logging_matches_scvi_step_logging(monkeypatch, synthetic_pair):
    """Logging the epoch means once gives the history of scvi-tools' per-step logging."""
    from scvi.train import TrainingPlan

    from xspecies.model._training import AlignmentTrainingPlan, SpeciesTrainingPlan

    ours = _history_after_training(synthetic_pair)
    monkeypatch.setattr(SpeciesTrainingPlan, "training_step", TrainingPlan.training_step)
    monkeypatch.setattr(SpeciesTrainingPlan, "on_train_epoch_end", TrainingPlan.on_train_epoch_end)

    def step_with_eta(self, batch, batch_idx):
        self.loss_kwargs["eta"] = self.eta
        self.log("eta", self.eta, on_step=False, on_epoch=True)
        return TrainingPlan.training_step(self, batch, batch_idx)

    monkeypatch.setattr(AlignmentTrainingPlan, "training_step", step_with_eta)
    monkeypatch.setattr(AlignmentTrainingPlan, "on_train_epoch_end", TrainingPlan.on_train_epoch_end)
    scvi_logged = _history_after_training(synthetic_pair)
    for mine, theirs in zip(ours, scvi_logged, strict=True):
        # scvi-tools logs kl_weight per step, which reaches the history every 50 steps only
        assert set(mine) - set(theirs) <= {"kl_weight"}
        np.testing.assert_allclose(mine["kl_weight"].to_numpy(dtype=float).ravel(), [0.1, 0.19], rtol=1e-6)
        for key in set(theirs) - {"kl_weight"}:
            np.testing.assert_allclose(
                mine[key].to_numpy(dtype=float), theirs[key].to_numpy(dtype=float), rtol=1e-5, err_msg=key
            )
    assert {"train_loss", "elbo_train", "kl_weight", "eta", "alignment_train"} <= set(ours[1])


def test_target_frozen_inner_encoder(trained):
    _, target, before = trained
    after = target.module.inner_encoder.state_dict()
    assert all(torch.equal(before[k], after[k].cpu()) for k in before)
    assert all(not p.requires_grad for p in target.module.inner_encoder.parameters())
    target.module.train()
    assert not target.module.inner_encoder.training and target.module.outer_encoder.training
    target.module.eval()
    hist = target.history
    assert "alignment_train" in hist and np.isfinite(hist["alignment_train"].to_numpy(dtype=float)).all()
    assert hist["eta"].iloc[0, 0] == 10.0


def test_target_shares_inner_encoder_latents(trained):
    context, target, _ = trained
    # the stored context moments are the context model's own latents
    np.testing.assert_allclose(
        target.module.context_qz_mean.cpu().numpy(), context.get_latent_representation(), atol=1e-5
    )
    tgt_idx, ctx_idx = target.homologous_genes_
    assert len(tgt_idx) == len(ctx_idx) == 40


def test_alignment_partners_are_trusted_neighbours(trained):
    context, target, _ = trained
    tgt = target.adata
    partner = target.module.partner.cpu().numpy()
    trusted = tgt.obs["homology_top_percent"].to_numpy() <= 20
    assert (partner[trusted] >= 0).all() and (partner[~trusted] == -1).all()
    neigh = tgt.obsm["homology_neighbors"][:, :25]
    assert all(partner[i] in neigh[i] for i in np.flatnonzero(trusted))
    with pytest.raises(ValueError, match="partner_refresh"):
        target.train(max_epochs=1, partner_refresh=0)


def test_partners_keep_to_the_voted_label(trained):
    context, target, _ = trained
    labels = context.adata.obs["cell_type"].astype(str).to_numpy()
    # the voted labels_key is read from uns["homology"]["params"], or from the flat layout of earlier saves
    results = {k: v for k, v in target.adata.uns["homology"].items() if k != "params"}
    for layout in ({"params": {"labels_key": "cell_type"}}, {"labels_key": "cell_type"}):
        tgt = target.adata.copy()
        tgt.uns["homology"] = {**results, **layout}
        tgt.obs["homology_cell_type"] = "type0"  # every cell voted type0
        model.TargetModel.setup_anndata(tgt, batch_key="donor")
        voted = model.TargetModel.from_context(context, tgt)
        allowed = voted.module.allowed.cpu().numpy()
        np.testing.assert_array_equal(allowed, labels[tgt.obsm["homology_neighbors"][:, :25]] == "type0")
    voted.train(**TRAIN, partner_refresh=1)  # partners chosen at both epochs
    partner = voted.module.partner.cpu().numpy()
    trusted = tgt.obs["homology_top_percent"].to_numpy() <= 20
    has = trusted & allowed.any(axis=1)
    assert has.any() and (trusted & ~has).any()
    assert (labels[partner[has]] == "type0").all() and (partner[~has] == -1).all()


def test_latent_alignment_trains_inner_copy(synthetic_pair):
    ctx, tgt = synthetic_pair(seed=1)
    model.ContextModel.setup_anndata(ctx, batch_key="donor")
    context = model.ContextModel(ctx, gene_likelihood="nb", dispersion="gene", use_library_encoder=False)
    context.train(**TRAIN)
    model.TargetModel.setup_anndata(tgt, batch_key="donor")
    target = model.TargetModel.from_context(context, tgt, alignment="latent", candidate_z="sample")
    target.train(**TRAIN)
    changed = any(
        not torch.equal(a, b)
        for a, b in zip(
            target.module.inner_encoder.state_dict().values(),
            context.module.inner_encoder.state_dict().values(),
            strict=True,
        )
    )
    assert changed
    assert target.module.context_rep.shape == (ctx.n_obs, 10)


def test_likelihood_similarity(trained):
    context, target, _ = trained
    z_ctx = context.get_latent_representation()
    z_tgt = target.get_latent_representation()
    cand = np.stack([z_ctx[:6]] * 20)
    own = z_tgt[:20, None, :]
    sim = target.likelihood_similarity(np.concatenate([own, cand], axis=1), indices=np.arange(20))
    assert sim.shape == (20, 7)
    np.testing.assert_allclose(sim[:, 0], 0.0, atol=1e-2)  # own z: zero by definition
    table = target.similarity_to_table(z_ctx, np.tile(np.arange(6), (20, 1)), indices=np.arange(20))
    np.testing.assert_allclose(table, sim[:, 1:], rtol=1e-3, atol=0.05)
    with pytest.raises(ValueError, match="candidate_z must have shape"):
        target.likelihood_similarity(cand[:, :, :3], indices=np.arange(20))


def test_similarity_to_a_table_too_large_to_decode_at_once(trained, monkeypatch):
    """Above the table limit, the rows are decoded in pieces of nearby rows: the same scores."""
    from xspecies.model import _target

    context, target, _ = trained
    z_ctx = context.get_latent_representation()
    rng = np.random.default_rng(0)
    candidates = np.stack([rng.choice(len(z_ctx), 12, replace=False) for _ in range(target.adata.n_obs)])
    whole = target.similarity_to_table(z_ctx, candidates)
    decoded = []
    original = _target.DecodedTable

    def recording(rho, *args, **kwargs):
        decoded.append(rho.shape[0])
        return original(rho, *args, **kwargs)

    monkeypatch.setattr(_target, "DecodedTable", recording)
    monkeypatch.setattr(_target, "_TABLE_LIMIT", 30 * target.module.n_input)  # 30 rows at once
    monkeypatch.setattr(_target, "_PAIR_WIDTH", 5)  # a cell's 12 candidates in several pieces
    blocked = target.similarity_to_table(z_ctx, candidates)
    assert max(decoded) <= 30 < len(z_ctx)
    n_codes = len(np.unique(target.adata.obs["donor"]))
    assert len(decoded) > n_codes  # several pieces per batch
    # each row is decoded once per batch, its zero part at the same anchors as for the whole table
    np.testing.assert_allclose(blocked, whole, rtol=1e-4, atol=1e-3)


def test_custom_layer_order_and_dispersion(synthetic_pair):
    ctx, _ = synthetic_pair(seed=2, n_ctx=80)
    model.ContextModel.setup_anndata(ctx)
    order = ["linear", "batch_norm", ("act", "leaky_relu", (0, 6)), ("dropout", 0.2)]
    context = model.ContextModel(
        ctx,
        outer_hidden=(32,),
        inner_hidden=(16,),
        decoder_hidden=(16,),
        layer_order=order,
        dispersion="gene-cell",
    )
    context.train(**TRAIN)
    assert context.get_latent_representation().shape == (80, 10)
    with pytest.raises(ValueError, match="linear"):
        model.ContextModel(ctx, layer_order=["layer_norm"])
    with pytest.raises(ValueError, match="dispersion"):
        model.ContextModel(ctx, dispersion="per-cell")


def test_two_targets_on_one_context(trained, synthetic_pair):
    context, first, _ = trained
    _, rat = synthetic_pair(seed=3, n_tgt=90)
    model.TargetModel.setup_anndata(rat, batch_key="donor")
    second = model.TargetModel.from_context(context, rat)
    second.train(**TRAIN)
    assert second.get_latent_representation().shape == (90, 10)
    assert first.get_latent_representation().shape == (first.adata.n_obs, 10)
    for a, b in zip(
        second.module.inner_encoder.parameters(), first.module.inner_encoder.parameters(), strict=True
    ):
        assert torch.equal(a, b)


def test_save_load_roundtrip_and_gene_check(trained, tmp_path):
    context, target, _ = trained
    z = target.get_latent_representation()
    target.save(tmp_path / "target", save_anndata=True)
    loaded = model.TargetModel.load(tmp_path / "target", adata=target.adata)
    np.testing.assert_array_equal(loaded.get_latent_representation(), z)
    np.testing.assert_array_equal(
        loaded.module.context_qz_mean.cpu().numpy(), target.module.context_qz_mean.cpu().numpy()
    )
    assert loaded.homologous_genes_[0].tolist() == target.homologous_genes_[0].tolist()
    other = target.adata[:, ::-1].copy()
    with pytest.raises(ValueError, match="genes of `adata`"):
        model.TargetModel.load(tmp_path / "target", adata=other)
    context.save(tmp_path / "context")
    reloaded = model.ContextModel.load(tmp_path / "context", adata=context.adata)
    np.testing.assert_array_equal(reloaded.get_latent_representation(), context.get_latent_representation())


def test_hub_offline(trained, tmp_path):
    from scvi.hub import HubModel

    _, target, _ = trained
    from scvi.hub import HubMetadata
    from scvi.hub._constants import _SCVI_HUB

    from xspecies.model._hub import CARD_FILE, METADATA_FILE

    # the file names HubModel reads (private in scvi-tools: a change there fails here)
    assert (METADATA_FILE, CARD_FILE) == (_SCVI_HUB.METADATA_FILE_NAME, _SCVI_HUB.MODEL_CARD_FILE_NAME)
    _, target, _ = trained
    path = model.save_to_hub_dir(target, tmp_path / "hub_target", description="synthetic test")
    card = (path / "README.md").read_text()
    assert card.count("TargetModel") >= 2
    assert "'n_candidates': 25" in card and "'n_latent': 10" in card
    metadata = HubMetadata(**json.loads((path / METADATA_FILE).read_text()))
    assert (metadata.model_cls_name, metadata.model_parent_module) == ("TargetModel", "xspecies.model")
    hub = HubModel(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hub.load_model(accelerator="cpu")
    assert isinstance(hub.model, model.TargetModel)
    np.testing.assert_allclose(
        hub.model.get_latent_representation(), target.get_latent_representation(), atol=1e-6
    )


def test_bad_inputs(trained, synthetic_pair):
    context, _, _ = trained
    ctx, tgt = synthetic_pair(seed=4, n_ctx=60, n_tgt=40)
    bare = tgt.copy()
    del bare.obsm["homology_neighbors"]
    with pytest.raises(KeyError, match="homology_neighbors"):
        model.TargetModel.setup_anndata(bare, batch_key="donor")
    with pytest.raises(KeyError, match="nope"):
        model.ContextModel.setup_anndata(ctx, batch_key="nope")
    neg = ctx.copy()
    neg.X = neg.X * 0.5
    with pytest.raises(ValueError, match="raw"):
        model.ContextModel.setup_anndata(neg)
    model.ContextModel.setup_anndata(ctx)
    untrained = model.ContextModel(ctx)
    model.TargetModel.setup_anndata(tgt, batch_key="donor")
    with pytest.raises(ValueError, match="not trained"):
        model.TargetModel.from_context(untrained, tgt)
    # the neighbour search was run against another context (60 cells, not 200)
    with pytest.raises(ValueError, match="context with 60 cells"):
        model.TargetModel.from_context(context, tgt)
    no_genes = tgt.copy()
    no_genes.uns["homology"] = {
        **tgt.uns["homology"],
        "context_n_obs": 200,
        "context_fingerprint": context_fingerprint(context.adata),
        "target_genes": [],
        "context_genes": [],
    }
    model.TargetModel.setup_anndata(no_genes, batch_key="donor")
    with pytest.raises(ValueError, match="share no homologous genes"):
        model.TargetModel.from_context(context, no_genes)
    with pytest.raises(ValueError, match="n_candidates"):
        model.TargetModel.from_context(context, no_genes, n_candidates=100)


def test_transfer_on_synthetic(trained):
    context, target, _ = trained
    tgt = target.adata
    # default candidates: the data-level neighbours (30 stored), re-ranked by likelihood similarity
    xs.tl.transfer_labels(
        target, context, labels_key="cell_type", n_candidates=40, n_vote=10, progress_bar=False
    )
    assert tgt.uns["xspecies_cell_type"]["params"]["candidates"] == "homology"
    np.testing.assert_array_equal(
        np.sort(tgt.obsm["xspecies_cell_type_candidates"], axis=1),
        np.sort(tgt.obsm["homology_neighbors"], axis=1),
    )
    # rank_prior: 0 ranks by the model alone, a huge prior keeps the data-level order
    xs.tl.transfer_labels(target, context, labels_key="cell_type", rank_prior=0, progress_bar=False)
    assert (np.diff(tgt.obsm["xspecies_cell_type_similarity"], axis=1) <= 1e-6).all()
    xs.tl.transfer_labels(target, context, labels_key="cell_type", rank_prior=1e6, progress_bar=False)
    np.testing.assert_array_equal(tgt.obsm["xspecies_cell_type_candidates"], tgt.obsm["homology_neighbors"])
    xs.tl.transfer_labels(
        target,
        context,
        labels_key="cell_type",
        candidates="latent",
        n_candidates=40,
        n_vote=10,
        progress_bar=False,
    )
    assert tgt.uns["xspecies_cell_type"]["params"]["candidates"] == "latent"
    obs = target.adata.obs
    assert set(obs["xspecies_cell_type"].cat.categories) <= {"type0", "type1", "type2"}
    conf = obs["xspecies_cell_type_confidence"].to_numpy()
    assert ((conf >= 0) & (conf <= 1)).all()
    assert target.adata.obsm["xspecies_cell_type_candidates"].shape == (target.adata.n_obs, 40)
    sim = target.adata.obsm["xspecies_cell_type_similarity"]
    assert (np.diff(sim, axis=1) <= 1e-6).all()  # most similar first
    assert obs["xspecies_cell_type_novel"].dtype == bool
    # rank-weighted vote (default): the winner is the label of largest 1/(r+1) weight among the 10 best
    from xspecies._vote import weighted_vote

    cand = target.adata.obsm["xspecies_cell_type_candidates"][:, :10]
    labels = context.adata.obs["cell_type"].cat
    winner, share = weighted_vote(labels.codes.to_numpy()[cand], len(labels.categories), "rank")
    np.testing.assert_array_equal(obs["xspecies_cell_type"].cat.codes.to_numpy(), winner)
    np.testing.assert_allclose(obs["xspecies_cell_type_vote_share"], share, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown weighting 'most'"):
        xs.tl.transfer_labels(target, context, labels_key="cell_type", weighting="most")
    with pytest.raises(ValueError, match="unknown candidates 'data'"):
        xs.tl.transfer_labels(target, context, labels_key="cell_type", candidates="data")
    # a target registered without the neighbour search: only latent candidates are possible
    bare = tgt.copy()
    model.TargetModel.setup_anndata(bare, batch_key="donor", homology_key=None)
    plain = model.TargetModel(bare, n_context_obs=context.adata.n_obs)
    plain.train(max_epochs=1, eta_max=0, enable_progress_bar=False, batch_size=64)
    with pytest.raises(KeyError, match="candidates='homology' needs the neighbour search"):
        xs.tl.transfer_labels(plain, context, labels_key="cell_type", candidates="homology")
    xs.tl.transfer_labels(plain, context, labels_key="cell_type", n_candidates=20, progress_bar=False)
    assert bare.uns["xspecies_cell_type"]["params"]["candidates"] == "latent"
    with pytest.raises(KeyError, match="missing_key"):
        xs.tl.transfer_labels(target, context, labels_key="missing_key")


@pytest.mark.parametrize(("zinb", "per_row"), [(True, False), (False, False), (True, True)])
def test_decoded_table_matches_direct_likelihood(zinb, per_row):
    from xspecies.model._likelihoods import DecodedTable, count_log_likelihood

    gen = torch.Generator().manual_seed(0)
    n_rows, n_genes, m, k = 12, 30, 5, 4
    rho = torch.softmax(torch.randn(n_rows, n_genes, generator=gen), -1)
    theta = torch.rand(n_rows if per_row else 1, n_genes, generator=gen).expand(n_rows, -1) * 5 + 0.1
    zi = torch.randn(n_rows, n_genes, generator=gen) if zinb else None
    x = torch.poisson(torch.rand(m, n_genes, generator=gen) * 2)
    lib = torch.log(torch.rand(m, generator=gen) * 50 + 20)
    rows = torch.randint(0, n_rows, (m, k), generator=gen)
    table = DecodedTable(rho, theta, zi, per_row, lib)
    fast = table.log_likelihood(table.nonzero(x), lib, rows)
    direct = count_log_likelihood(
        x[:, None, :],
        torch.exp(lib)[:, None, None] * rho[rows],
        theta[rows],
        None if zi is None else zi[rows],
        theta_terms=per_row,
    )
    torch.testing.assert_close(fast, direct, rtol=1e-4, atol=0.05)


@pytest.mark.parametrize("zinb", [True, False])
def test_candidate_table_likelihood_matches_direct(zinb):
    from xspecies.model._likelihoods import candidate_table_log_likelihood, count_log_likelihood

    gen = torch.Generator().manual_seed(2)
    n_rows, n_genes, m, k = 12, 40, 6, 5
    rho = torch.softmax(2 * torch.randn(n_rows, n_genes, generator=gen), -1)
    theta = torch.rand(m, n_genes, generator=gen) * 5 + 0.1
    zi = torch.randn(n_rows, n_genes, generator=gen) if zinb else None
    x = torch.poisson(torch.rand(m, n_genes, generator=gen) * 3) * (
        torch.rand(m, n_genes, generator=gen) < 0.4
    )
    lib = torch.log(torch.rand(m, generator=gen) * 2000 + 200)
    rows = torch.randint(0, n_rows, (m, k), generator=gen)
    fast = candidate_table_log_likelihood(x, lib, rho, theta, zi, rows)
    direct = count_log_likelihood(
        x[:, None, :],
        torch.exp(lib)[:, None, None] * rho[rows],
        theta[:, None, :],
        None if zi is None else zi[rows],
        theta_terms=False,
    )
    torch.testing.assert_close(fast, direct, rtol=2e-4, atol=1e-3)


def test_count_log_likelihood_matches_scvi():
    from scvi.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial

    from xspecies.model._likelihoods import count_log_likelihood, count_log_likelihood_exact

    gen = torch.Generator().manual_seed(1)
    mu = torch.rand(6, 20, generator=gen) * 10
    theta = torch.rand(6, 20, generator=gen) * 3 + 0.2
    zi = torch.randn(6, 20, generator=gen)
    x = torch.poisson(torch.rand(6, 20, generator=gen) * 4)
    ref = ZeroInflatedNegativeBinomial(mu=mu, theta=theta, zi_logits=zi).log_prob(x).sum(-1)
    ours = count_log_likelihood(x, mu, theta, zi) - torch.lgamma(x + 1).sum(-1)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(count_log_likelihood_exact(x, mu, theta, zi), ref, rtol=1e-5, atol=1e-3)
    nb = NegativeBinomial(mu=mu, theta=theta).log_prob(x).sum(-1)
    torch.testing.assert_close(count_log_likelihood_exact(x, mu, theta), nb, rtol=1e-5, atol=1e-3)


def test_covariate_linear_equals_linear_on_the_concatenation():
    from xspecies.model._nn import CovariateLinear

    torch.manual_seed(3)
    layer = CovariateLinear(7, 5, 3)
    torch.manual_seed(3)
    full = torch.nn.Linear(10, 5)  # the same initial values
    torch.testing.assert_close(torch.cat([layer.weight, layer.cat_weight.T], 1), full.weight)
    x, cat = torch.randn(2, 4, 7), torch.tensor([[0.0], [2.0], [1.0], [2.0]])
    onehot = torch.nn.functional.one_hot(cat.reshape(-1).long(), 3).float().expand(2, 4, 3)
    torch.testing.assert_close(layer(x, cat), full(torch.cat([x, onehot], -1)))
