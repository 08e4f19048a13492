"""Label transfer and its evaluation: unit tests and an end-to-end run on the embedded demo data."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import xspecies as xs


def _obs_adata(true, pred):
    adata = ad.AnnData(np.zeros((len(true), 1), dtype=np.float32))
    adata.obs["true"] = pd.Categorical(true)
    adata.obs["pred"] = pd.Categorical(pred)
    return adata


def test_evaluate_transfer_shared_types():
    true = ["a"] * 4 + ["b"] * 2 + ["novel"] * 3
    pred = ["a", "a", "a", "b", "b", "a", "a", "b", "b"]
    context = _obs_adata(["a", "b", "c"], ["a", "b", "c"])
    report = xs.tl.evaluate_transfer(_obs_adata(true, pred), labels_key="true", key="pred", context=context)
    assert report.shared_types == ["a", "b"]
    assert report.recall.to_dict() == {"a": 0.75, "b": 0.5}
    assert report.balanced_accuracy == pytest.approx(0.625)
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.n_cells == 6
    assert list(report.confusion.index) == ["a", "b", "novel"]
    np.testing.assert_allclose(report.confusion.sum(axis=1), 100.0)
    assert report.confusion.loc["a", "a"] == pytest.approx(75.0)
    assert set(report.to_dict()) >= {"balanced_accuracy", "accuracy", "recall"}


def test_evaluate_transfer_errors():
    adata = _obs_adata(["a", "b"], ["a", "b"])
    with pytest.raises(KeyError, match="missing"):
        xs.tl.evaluate_transfer(adata, labels_key="true", key="missing")
    with pytest.raises(ValueError, match="No true target type"):
        xs.tl.evaluate_transfer(adata, labels_key="true", key="pred", context=_obs_adata(["x"], ["x"]))


@pytest.fixture(scope="module")
def demo_pair():
    # every second cell keeps all major types and halves the run time
    return xs.datasets.pancreas("mouse")[::2].copy(), xs.datasets.pancreas("human")[::2].copy()


def test_end_to_end_demo(demo_pair):
    import scvi

    from xspecies import model

    scvi.settings.seed = 0
    mouse, human = demo_pair
    train = {"max_epochs": 10, "enable_progress_bar": False}
    model.ContextModel.setup_anndata(mouse, batch_key="donor", labels_key="cell_ontology_class")
    context = model.ContextModel(mouse)
    context.train(**train)
    xs.pp.translate_genes(human, "human", "mouse")
    xs.pp.homology_neighbors(human, mouse, labels_key="cell_ontology_class")
    model.TargetModel.setup_anndata(human, batch_key="donor")
    target = model.TargetModel.from_context(context, human)
    target.train(**train)
    xs.tl.transfer_labels(target, context, labels_key="cell_ontology_class", progress_bar=False)
    assert "xspecies_cell_ontology_class" in human.obs
    assert "xspecies_cell_ontology_class_confidence" in human.obs
    report = xs.tl.evaluate_transfer(
        human, labels_key="cell_ontology_class", key="xspecies_cell_ontology_class", context=mouse
    )
    # few epochs on half the cells: the large types must transfer, rare ones (1-4 cells) may not
    assert report.accuracy > 0.6, report.recall
    assert report.recall["type B pancreatic cell"] > 0.8, report.recall
    assert report.recall["pancreatic ductal cell"] > 0.8, report.recall
    key = "xspecies_cell_ontology_class"
    conf = human.obs[f"{key}_confidence"].to_numpy()
    assert ((conf >= 0) & (conf <= 1)).all()
    pvalue = human.obs[f"{key}_novelty_pvalue"].to_numpy()
    assert ((pvalue > 0) & (pvalue <= 1)).all()
    novel = human.obs[f"{key}_novel"].to_numpy()
    assert (pvalue[novel] <= 0.05).all()  # flagged: significant and in the second group
    novelty = human.uns[key]["novelty"]
    assert novelty["null_scale"] > 0 and 0 <= novelty["novel_share"] < 0.5
    assert novelty["scores"] == "data"  # the data-level neighbours are registered
    assert novel.mean() <= 2 * novelty["novel_share"]  # posterior above 0.5: at most twice its mean
    # acinar cells (absent in mouse) are flagged far more often than cells of shared types
    assert report.novel_flag_rate > 2 * report.false_flag_rate, report.flag_rate
    assert human.uns[key]["params"]["novel_alpha"] == 0.05
    assert 0.5 < human.uns[key]["calibration"]["accuracy"] <= 1
    assert report.ece is not None and 0 <= report.ece <= 1
