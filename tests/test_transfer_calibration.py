"""Calibration of the label transfer: the held-out context votes and the novelty flag."""

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import xspecies as xs
from xspecies.tl._evaluate import expected_calibration_error, reliability_table
from xspecies.tl._transfer import (
    _crowding,
    _held_out_votes,
    _novelty_scores,
    _standardized,
    _two_groups,
)


def _blobs(n_per: int, centers, seed: int):
    rng = np.random.default_rng(seed)
    z = np.concatenate([rng.normal(c, 1.0, size=(n_per, 2)) for c in centers])
    return z, np.repeat(np.arange(len(centers)), n_per)


def _flagged(context, target, fit, alpha=0.05, search=None):
    pvalue, probability, fitted = _two_groups(_novelty_scores(context, target, fit, 15, search))
    assert ((pvalue > 0) & (pvalue <= 1)).all() and ((probability >= 0) & (probability <= 1)).all()
    return (pvalue <= alpha) & (probability > 0.5), fitted


def _species_gap(z, seed):
    # the target species' cells of shared types: moved and spread out as a whole (about the centre)
    centre = z.mean(axis=0)
    spread = np.random.default_rng(seed).normal(0, 0.3, z.shape)
    return centre + 1.2 * (z - centre) + np.array([0.5, -0.5]) + spread


def test_novelty_flags_a_novel_cluster_not_a_shifted_scaled_shared_cloud():
    context, _ = _blobs(300, [(0, 0), (8, 0)], seed=0)
    shared = _species_gap(_blobs(300, [(0, 0), (8, 0)], seed=1)[0], seed=4)
    novel, _ = _blobs(60, [(4, 12)], seed=2)  # a type the context lacks
    fit = np.random.default_rng(5).uniform(0.05, 1.0, size=660)  # the same misfit for all: no help
    flagged, fitted = _flagged(context, np.concatenate([shared, novel]), fit)
    assert flagged[:600].mean() <= 0.05
    assert flagged[600:].mean() >= 0.9
    assert 0.05 < fitted["novel_share"] < 0.15
    # without the novel type nothing stands out: no second group, nothing flagged
    flagged, fitted = _flagged(context, shared, fit[:600])
    assert fitted["novel_share"] == 0
    assert not flagged.any()


def test_novelty_flag_robust_to_a_quarter_of_novel_cells():
    context, _ = _blobs(300, [(0, 0), (8, 0), (0, 8)], seed=0)
    shared = _species_gap(_blobs(200, [(0, 0), (8, 0), (0, 8)], seed=1)[0], seed=4)
    novel, _ = _blobs(100, [(9, 10), (-6, -6)], seed=2)  # two absent types, 25 % of the target
    fit = np.random.default_rng(5).uniform(0.05, 1.0, size=800)
    flagged, fitted = _flagged(context, np.concatenate([shared, novel]), fit)
    assert flagged[:600].mean() <= 0.05
    assert flagged[600:].mean() >= 0.9
    assert 0.15 < fitted["novel_share"] < 0.35


def test_novelty_misfit_finds_a_novel_type_the_latent_space_places_among_context_cells():
    # the model puts the novel cells beside a context type, as densely as the context cells there:
    # outlyingness and density ratio see nothing, the misfit (the context explains them badly) does
    context, _ = _blobs(300, [(0, 0), (8, 0), (4, 6)], seed=0)
    target, types = _blobs(300, [(0, 0), (8, 0), (4, 6)], seed=1)
    rng = np.random.default_rng(5)
    fit = rng.uniform(0.3, 1.0, size=900)
    fit[types == 2] = rng.uniform(0.001, 0.05, size=300)
    flagged, _ = _flagged(context, target, fit)
    assert flagged[types == 2].mean() >= 0.9
    assert flagged[types != 2].mean() <= 0.05


def test_crowding_is_the_load_of_the_neighbours_relative_to_an_even_one():
    # 4 target cells, 1 neighbour each, 4 context cells: context 0 is listed 3 times (3x an even load)
    np.testing.assert_allclose(_crowding(np.array([[0], [0], [0], [1]]), 4), np.log([3, 3, 3, 1]))
    # 2 neighbours each: the median of the two loads
    np.testing.assert_allclose(
        _crowding(np.array([[0, 1], [0, 1], [2, 3], [0, 1]]), 4), np.log([1.5, 1.5, 0.5, 1.5])
    )


def test_data_level_scores_keep_a_badly_aligned_shared_type_and_flag_a_novel_one():
    # the model displaces shared type 2 as far from its context cells as the novel type lies (a large
    # type missing from the context pushes it aside): the latent scores flag it; in the data its cells
    # are as close to their context cells as the other shared types', each listed about evenly
    rng = np.random.default_rng(0)
    context, context_types = _blobs(200, [(0, 0), (8, 0), (0, 8)], seed=0)
    target, types = _blobs(200, [(0, 0), (8, 0), (10, 12), (-6, -6)], seed=1)  # type 2 displaced, 3 novel
    fit = rng.uniform(0.05, 1.0, size=len(target))  # the same misfit for all: no help
    neighbors = np.empty((len(target), 15), dtype=np.int64)
    for t in range(3):  # shared types: 15 of the context cells of their type, at typical distances
        rows = np.flatnonzero(types == t)
        pool = np.flatnonzero(context_types == t)
        neighbors[rows] = [rng.choice(pool, 15, replace=False) for _ in rows]
    novel = types == 3  # crowds onto 10 context cells of type 0, further away
    neighbors[novel] = [rng.choice(10, 15, replace=True) for _ in range(novel.sum())]
    distances = np.sort(rng.uniform(0.3, 0.5, size=neighbors.shape), axis=1)
    distances[novel] += 0.2
    latent = _novelty_scores(context, target, fit, 15)  # the latent scores: type 2 as novel as type 3
    assert np.median(latent[types == 2]) > np.median(latent[types == 3])
    flagged, fitted = _flagged(context, target, fit, search=(neighbors, distances))
    assert flagged[novel].mean() >= 0.9
    assert flagged[~novel].mean() <= 0.05 and flagged[types == 2].mean() <= 0.05
    assert 0.15 < fitted["novel_share"] < 0.35


def test_two_groups_fits_a_separate_mode_and_no_mode():
    rng = np.random.default_rng(0)
    bulk = rng.laplace(0.0, 1.0, size=2000)
    mode = rng.normal(10.0, 1.0, size=200)
    pvalue, probability, fitted = _two_groups(np.concatenate([bulk, mode]))
    assert fitted["null_location"] == pytest.approx(0.0, abs=0.1)
    assert fitted["null_scale"] == pytest.approx(1.0, abs=0.1)
    assert fitted["novel_share"] == pytest.approx(200 / 2200, abs=0.01)
    assert (probability[2000:] > 0.5).mean() > 0.99 and (probability[:2000] > 0.5).mean() < 0.01
    # the p-value is the fitted Laplace null's upper tail: about uniform on the null group
    assert np.mean(pvalue[:2000] <= 0.05) == pytest.approx(0.05, abs=0.015)
    # beyond a narrow mode the normal's tail is lighter than the null's: the posterior stays high
    _, probability, _ = _two_groups(np.concatenate([bulk, rng.normal(10.0, 0.3, size=200), [40.0]]))
    assert probability[-1] == pytest.approx(probability.max()) and probability[-1] > 0.99
    pvalue, probability, fitted = _two_groups(bulk)
    assert fitted["novel_share"] == 0.0 and not probability.any()
    _, probability, fitted = _two_groups(rng.normal(size=2000))  # lighter tails than the null's
    assert fitted["novel_share"] == 0.0 and not probability.any()


def test_two_groups_second_group_spans_a_narrow_and_a_lower_absent_type():
    # two absent types: a narrow mode far out and a type scoring lower; a second group fitted to the
    # narrow mode alone (standard deviation 0.4) would leave every cell of the lower type to the null
    rng = np.random.default_rng(0)
    scores = np.concatenate(
        [rng.laplace(0.0, 1.0, 2000), rng.normal(10.0, 0.4, 250), rng.normal(6.0, 1.0, 250)]
    )
    pvalue, probability, fitted = _two_groups(scores)
    flagged = (pvalue <= 0.05) & (probability > 0.5)
    assert flagged[2000:2250].all()
    assert flagged[2250:].mean() >= 0.95
    assert flagged[:2000].mean() <= 0.02
    # the second group is no narrower than the null: median absolute deviations 0.6745 sd and log(2) b
    assert fitted["novel_sd"] * 0.6745 >= np.log(2) * fitted["null_scale"] * (1 - 1e-3)
    assert fitted["novel_share"] == pytest.approx(500 / 2500, abs=0.03)


def test_standardized_survives_equal_scores():
    np.testing.assert_allclose(
        _standardized(np.array([1.0, 1.0, 1.0, 4.0])), [0, 0, 0, 3 / np.std([1, 1, 1, 4])]
    )
    np.testing.assert_allclose(_standardized(np.full(5, 2.0)), 0.0)


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
