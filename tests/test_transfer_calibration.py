"""Calibration of the label transfer: the held-out context votes, the outlyingness and the novelty test."""

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import xspecies as xs
from xspecies.tl._evaluate import expected_calibration_error, reliability_table
from xspecies.tl._transfer import (
    _conformal_pvalues,
    _held_out_votes,
    _novelty_pvalues,
    _outlyingness,
    _shared_probability,
)


def _blobs(n_per: int, centers, seed: int):
    rng = np.random.default_rng(seed)
    z = np.concatenate([rng.normal(c, 1.0, size=(n_per, 2)) for c in centers])
    return z, np.repeat(np.arange(len(centers)), n_per)


def test_novelty_test_false_flag_rate_and_power():
    context, _ = _blobs(300, [(0, 0), (8, 0)], seed=0)
    shared, _ = _blobs(300, [(0, 0), (8, 0)], seed=1)  # same types, new cells
    novel, _ = _blobs(100, [(4, 9)], seed=2)  # a type the context lacks
    null = _outlyingness(context, None, 15)
    assert null.shape == (600,)
    p_shared = _conformal_pvalues(null, _outlyingness(context, shared, 15))
    p_novel = _conformal_pvalues(null, _outlyingness(context, novel, 15))
    assert 0.01 < np.mean(p_shared <= 0.05) < 0.10  # the stated false flag rate, up to sampling
    assert np.mean(p_novel <= 0.05) > 0.95
    assert p_shared.min() >= 1 / 601 and p_shared.max() <= 1.0


def test_novelty_test_removes_a_species_gap():
    # the target cells of shared types sit less tightly among the context cells than these among
    # themselves (a species gap): against the context alone most would be flagged
    context, _ = _blobs(300, [(0, 0), (8, 0)], seed=0)
    shared = _blobs(300, [(0, 0), (8, 0)], seed=1)[0] + np.random.default_rng(4).normal(0, 1.2, (600, 2))
    novel, _ = _blobs(60, [(4, 9)], seed=2)
    null = _outlyingness(context, None, 15)
    scores = _outlyingness(context, np.concatenate([shared, novel]), 15)
    assert np.mean(_conformal_pvalues(null, scores[:600]) <= 0.05) > 0.2  # the gap, uncorrected
    pvalue = _novelty_pvalues(null, scores)
    assert np.mean(pvalue[:600] <= 0.05) < 0.08
    assert np.mean(pvalue[600:] <= 0.05) > 0.9


def test_shared_probability_is_a_local_fdr():
    rng = np.random.default_rng(0)
    uniform = rng.uniform(size=5000)
    np.testing.assert_allclose(_shared_probability(uniform), 1.0, atol=0.1)
    # 20 % of the cells with p-values near 0 (absent types): the lowest bin holds 1 shared cell in 5
    pvalue = np.concatenate([uniform[:4000], rng.uniform(0, 0.01, size=1000)])
    probability = _shared_probability(pvalue)
    assert probability[pvalue > 0.2].min() == 1.0
    assert 0.12 < probability[pvalue < 0.01].max() < 0.25


def test_conformal_pvalues_count_the_null():
    null = np.array([1.0, 2.0, 3.0, 4.0])
    # share of null scores at least as large, counting the score itself
    np.testing.assert_allclose(_conformal_pvalues(null, np.array([0.5, 2.0, 10.0])), [1.0, 0.8, 0.2])


def test_held_out_votes_right_on_separated_types_and_missing_labels_skipped():
    z, codes = _blobs(50, [(0, 0), (20, 0), (0, 20)], seed=3)
    codes = codes.copy()
    codes[:5] = -1  # missing labels: neither voters nor held out
    right, share = _held_out_votes(z, codes, 3, 10, "rank", 5, 0)
    assert right.shape == share.shape == (145,)
    assert right.all() and np.allclose(share, 1.0)


def test_reliability_table_and_ece():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(size=20000)
    calibrated = rng.uniform(size=20000) < confidence
    table = reliability_table(confidence, calibrated, 10)
    assert list(table["n_cells"].astype(int).cumsum())[-1] == 20000
    assert expected_calibration_error(table) < 0.02
    overconfident = rng.uniform(size=20000) < confidence / 2
    assert expected_calibration_error(reliability_table(confidence, overconfident, 10)) > 0.2


def test_evaluate_transfer_reports_calibration_and_flags():
    obs = pd.DataFrame(
        {
            "truth": ["a"] * 4 + ["b"] * 4 + ["new"] * 2,
            "pred": ["a", "a", "a", "b", "b", "b", "b", "b", "a", "b"],
            "pred_confidence": [0.95] * 4 + [0.95] * 4 + [0.9, 0.9],
            "pred_novel": [False, False, False, True, False, False, False, False, True, True],
        },
        index=[f"c{i}" for i in range(10)],
    )
    adata = AnnData(obs=obs)
    context = AnnData(obs=pd.DataFrame({"truth": ["a", "b"]}, index=["m0", "m1"]))
    report = xs.tl.evaluate_transfer(adata, labels_key="truth", key="pred", context=context, n_bins=10)
    assert report.novel_types == ["new"]
    assert report.false_flag_rate == pytest.approx(1 / 8)
    assert report.novel_flag_rate == pytest.approx(1.0)
    assert report.flag_rate.to_dict() == {"a": 0.25, "b": 0.0, "new": 1.0}
    # 8 shared cells at 0.95, 7 right: |0.95 - 0.875|
    assert report.ece == pytest.approx(0.075)
    assert report.reliability["n_cells"].sum() == 8
    stored = adata.uns["pred_evaluation"]
    assert stored["ece"] == pytest.approx(0.075) and "reliability" in stored
    ax = xs.pl.reliability(report, show=False)
    assert ax.get_title().startswith("ECE 0.075")


def test_evaluate_transfer_without_confidence_or_flag():
    adata = AnnData(obs=pd.DataFrame({"truth": ["a", "b"], "pred": ["a", "a"]}, index=["x", "y"]))
    report = xs.tl.evaluate_transfer(adata, labels_key="truth", key="pred")
    assert report.ece is None and report.false_flag_rate is None and report.reliability.empty
    assert "ece" not in adata.uns["pred_evaluation"]
    with pytest.raises(ValueError, match="no reliability table"):
        xs.pl.reliability(report, show=False)
