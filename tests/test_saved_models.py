"""Models saved by an earlier xspecies still load: a change that breaks loading of an earlier save fails here.

``tests/data/saved_models`` holds a tiny ContextModel and TargetModel (synthetic pair of
``conftest.make_synthetic_pair(n_ctx=40, n_tgt=30, n_genes=20, n_neighbors=10)``, 1 epoch each),
saved with their AnnData by xspecies 0.2.0.dev before the model contract of issue 16 (the target's
``__init__`` then took ``k_neigh``, now ``n_candidates``), on the lowest supported stack (scvi-tools
1.4.0, numpy 1.24: a pickle of numpy 2 does not load in numpy 1, the reverse does). ``expected_latent.npz`` holds the latent
means both models gave right after training. Never regenerate these files: they stand for a user's
earlier save.
"""

from pathlib import Path

import numpy as np

import xspecies as xs

SAVED = Path(__file__).resolve().parent / "data" / "saved_models"


def test_fixture_is_in_the_repository():
    assert (SAVED / "context" / "model.pt").is_file(), f"missing saved-model fixture in {SAVED}"
    assert (SAVED / "target" / "model.pt").is_file(), f"missing saved-model fixture in {SAVED}"


def test_earlier_saves_load_and_give_the_same_latents():
    expected = np.load(SAVED / "expected_latent.npz")
    context = xs.model.ContextModel.load(str(SAVED / "context"), accelerator="cpu")
    target = xs.model.TargetModel.load(str(SAVED / "target"), accelerator="cpu")
    assert context.is_trained and target.is_trained
    np.testing.assert_allclose(context.get_latent_representation(), expected["context"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(target.get_latent_representation(), expected["target"], rtol=1e-5, atol=1e-6)
    # what the target kept of its context survives the round trip
    assert target.homologous_genes_ is not None
    assert target.context_fingerprint_ is not None
    assert target.module.context_qz_mean.shape == (context.adata.n_obs, 4)
    # the former name k_neigh=5 is read as n_candidates, and a new save records the new name
    assert target.module.n_candidates == 5
    assert target.init_params_["non_kwargs"]["n_candidates"] == 5
    assert "k_neigh" not in str(target.init_params_)
