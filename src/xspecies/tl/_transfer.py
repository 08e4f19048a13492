"""Likelihood-based label transfer from a context model to a target model."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.neighbors import NearestNeighbors

from xspecies._docs import doc_params, doc_progress_bar
from xspecies._results import store_result
from xspecies._validation import (
    check_fraction,
    check_int,
    check_neighbor_indices,
    check_number,
    check_obs_key,
    check_positive_int,
)
from xspecies._vote import check_weighting, weighted_vote

from ._pair import check_pair


def _latent_knn(reference: np.ndarray, query: np.ndarray, k: int, exclude_self: bool = False) -> np.ndarray:
    k_eff = min(k + int(exclude_self), reference.shape[0])
    nn = NearestNeighbors(n_neighbors=k_eff).fit(reference)
    idx = nn.kneighbors(query, return_distance=False)
    return idx[:, 1:] if exclude_self else idx


CANDIDATE_SOURCES = ("auto", "homology", "latent")


def _outlyingness(reference: np.ndarray, query: np.ndarray | None, k: int) -> np.ndarray:
    """Latent outlyingness of ``query`` cells (of ``reference`` itself, leaving each cell out, when None).

    The distance to the ``k``-th nearest reference cell divided by the mean of the same distance of those
    ``k`` reference cells (within the reference): about 1 inside the reference cloud, large far from it.
    """
    nn = NearestNeighbors(n_neighbors=min(k + 1, reference.shape[0])).fit(reference)
    distance, index = nn.kneighbors(reference)
    own = distance[:, -1]  # k-th neighbour of each reference cell, itself left out
    if query is None:
        distance, index = distance[:, 1:], index[:, 1:]
    else:
        distance, index = nn.kneighbors(query, n_neighbors=min(k, reference.shape[0]))
    return distance[:, -1] / np.maximum(own[index].mean(axis=1), 1e-12)


def _held_out_votes(
    z: np.ndarray, codes: np.ndarray, n_categories: int, n_vote: int, weighting: str, n_folds: int, seed: int
):
    """Vote of every labelled context cell by its nearest latent neighbours outside its own fold."""
    labelled = np.flatnonzero(codes >= 0)
    n_folds = min(n_folds, len(labelled))
    folds = np.random.default_rng(seed).permutation(len(labelled)) % n_folds
    winner = np.empty(len(labelled), dtype=np.int64)
    share = np.empty(len(labelled))
    for fold in range(n_folds):
        held, rest = labelled[folds == fold], labelled[folds != fold]
        nearest = rest[_latent_knn(z[rest], z[held], n_vote)]
        winner[folds == fold], share[folds == fold] = weighted_vote(codes[nearest], n_categories, weighting)
    return winner == codes[labelled], share


def _conformal_pvalues(null: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``(1 + #{null >= score}) / (n + 1)``: the share of null scores at least as extreme as each score."""
    null = np.sort(null)
    return (1 + len(null) - np.searchsorted(null, scores, side="left")) / (len(null) + 1)


def _standardized(scores: np.ndarray) -> np.ndarray:
    """``(scores - median) / MAD``: robust to a minority of extreme scores (MAD scaled to a normal SD)."""
    median = np.median(scores)
    mad = 1.4826 * np.median(np.abs(scores - median))
    return (scores - median) / max(mad, 1e-12)


def _novelty_pvalues(null: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Conformal p-values of target log-outlyingness against the context's, each robustly standardized.

    The species gap moves and widens the target cells' log-outlyingness as a whole; the median and MAD of
    the target scores remove that change as long as most target cells are of types the context has
    (cells of absent types, a minority, barely move the median and MAD: Efron's empirical null).
    """
    null, scores = np.log(np.maximum(null, 1e-12)), np.log(np.maximum(scores, 1e-12))
    return _conformal_pvalues(_standardized(null), _standardized(scores))


def _shared_probability(pvalue: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Probability that each cell is of a type the context has, given its novelty p-value (local fdr).

    Efron's local false discovery rate ``min(1, f0 / f)`` with the uniform null density ``f0 = 1`` of
    the p-values of shared types and their density ``f`` over all target cells, a non-increasing histogram
    (``n_bins`` equal bins, isotonic); ``f0 = 1`` takes every cell for shared (upper bound).
    """
    centers = (np.arange(n_bins) + 0.5) / n_bins
    density = np.histogram(pvalue, bins=n_bins, range=(0.0, 1.0))[0] * n_bins / len(pvalue)
    density = IsotonicRegression(increasing=False).fit(centers, density).predict(centers)
    which = np.minimum((pvalue * n_bins).astype(np.int64), n_bins - 1)
    return np.minimum(1.0, 1.0 / np.maximum(density[which], 1e-12))


def _homology_candidates(target, n: int, n_context: int) -> np.ndarray | None:
    """The first ``n`` data-level neighbours of every target cell, or None when the search is absent."""
    key = target.adata_manager.registry["setup_args"].get("homology_key")
    if key is None or f"{key}_neighbors" not in target.adata.obsm:
        return None
    where = f"target.adata.obsm[{key + '_neighbors'!r}]"
    return check_neighbor_indices(target.adata.obsm[f"{key}_neighbors"], n_context, where)[:, :n]


@doc_params(progress_bar=doc_progress_bar)
def transfer_labels(
    target,
    context,
    *,
    labels_key: str,
    candidates: Literal["auto", "homology", "latent"] = "auto",
    n_candidates: int = 250,
    n_vote: int = 25,
    weighting: Literal["rank", "uniform"] = "rank",
    rank_prior: float = 50.0,
    novel_alpha: float = 0.05,
    n_neighbors: int = 15,
    calibration_folds: int = 5,
    random_state: int = 0,
    key_added: str | None = None,
    batch_size: int | None = None,
    progress_bar: bool = True,
) -> None:
    """Transfer context labels to target cells by likelihood-based similarity and majority vote.

    For every target cell: (1) ``n_candidates`` context cells are candidates: its data-level neighbours
    on homologous genes (``candidates="homology"``, from :func:`xspecies.pp.homology_neighbors`) or its
    nearest context cells in the shared latent space (``"latent"``, latent means, Euclidean, as
    scSpecies); (2) each candidate's latent mean is decoded by the
    target decoder and scored with :meth:`~xspecies.model.TargetModel.likelihood_similarity`
    (``NLL(own z) - NLL(candidate z)``); (3) the ``n_vote`` most similar candidates vote, the
    ``r``-th most similar with weight ``1 / (r + 1)`` (``weighting="rank"``, default) or all equally
    (``"uniform"``, the majority vote of scSpecies), and the label with the largest vote is transferred.
    Rank weights let a rare type whose few context cells are the most similar win (the Baron mouse data
    has 6 Schwann and 7 T cells: a majority of 25 can never be theirs).

    Both the *confidence* and the *novel* flag are calibrated without target labels:

    - ``novel`` flags cells that lie outside the context in the shared latent space. A cell's
      *outlyingness* is its distance to its ``n_neighbors``-th nearest context cell divided by the mean of
      that distance for those context cells. Target cells of shared types sit less tightly among the
      context cells than these among themselves (the species gap), so the null distribution is estimated
      from the target cells themselves (an empirical null): the log-outlyingness of the target cells and
      that of the context cells (each left out of its own search) are each standardized by their median
      and MAD, and ``novelty_pvalue`` is the share of standardized context scores at least as large as
      the cell's. ``novel`` is ``novelty_pvalue <= novel_alpha``. The error rate controlled is the share
      of target cells of types the context has that are flagged: ``novel_alpha`` when the species gap
      shifts and scales the log-outlyingness of all target cells alike and cells of absent types are a
      minority of the target (they raise the median and MAD, so the test errs on the conservative side).
      A shared type that the model aligns worse than the others is flagged more often.
    - ``confidence`` is the probability that the transferred label is right. The context cells are split
      into ``calibration_folds`` folds; each cell gets the vote of its ``n_vote`` nearest latent
      neighbours outside its fold (same weighting), and an isotonic (monotone) regression of "the vote
      was right" on the vote share gives the probability for a cell of a type the context has. It is
      multiplied by the probability that the cell's type is in the context given its novelty p-value
      (Efron's local false discovery rate: one over the density of the target p-values, estimated as a
      non-increasing histogram, capped at 1), since the label of a cell of an absent type is wrong.

    The ``fit`` of every cell is kept as a diagnostic: how well the context explains the cell compared
    with its own species, the median similarity of its ``n_vote`` nearest **target** cells over that of
    its ``n_vote`` best context candidates (same score, same decoder), capped at 1.

    Parameters
    ----------
    target
        Trained :class:`~xspecies.model.TargetModel` (built from ``context``).
    context
        Trained :class:`~xspecies.model.ContextModel` with its AnnData.
    labels_key
        ``obs`` column of the context AnnData with the labels to transfer.
    candidates
        ``"homology"``, ``"latent"`` or ``"auto"`` (default: ``"homology"`` when the target AnnData holds
        the neighbour search registered with :meth:`~xspecies.model.TargetModel.setup_anndata`, else
        ``"latent"``). The data proposes and the model decides (measurements: :doc:`/benchmarks`).
    n_candidates
        Candidates per target cell (at most the number of stored neighbours for ``"homology"``).
    n_vote
        Most credible candidates that vote.
    rank_prior
        With ``"homology"`` candidates, candidates are ranked by ``similarity - rank_prior * log(1 + r)``,
        where ``r`` is the candidate's rank in the data-level search (0 = closest): the likelihood of the
        model times a prior ``(1 + r) ** -rank_prior`` from the data (similarities are in nats). ``0``
        ranks by the model alone. The data keeps rare types in play, the model sorts out the common
        ones (how the default was chosen: :doc:`/benchmarks`).
    weighting
        ``"rank"`` or ``"uniform"`` vote weights (see above).
    novel_alpha
        Level of the novelty test, in (0, 1): the share of the target cells of types present in the
        context that are flagged, under the assumptions above (the measured rates: :doc:`/benchmarks`).
    n_neighbors
        Context neighbours of the outlyingness.
    calibration_folds
        Folds of the context cells for the calibration of the confidence (at least 2).
    random_state
        Seed of the folds.
    key_added
        Name of the result column and prefix of every other key written (default
        ``"xspecies_<labels_key>"``, so transfers of different label columns keep their results apart).
    batch_size
        Target cells scored at once.
    {progress_bar}

    Returns
    -------
    None
        Writes to ``target.adata`` (in place), with ``key = key_added``:

        - ``obs[key]``: transferred label (categorical; missing when none of the voting candidates has a
          label: context cells with a missing label do not vote);
        - ``obs[key + "_confidence"]``: probability that the label is right, in [0, 1] (see above);
        - ``obs[key + "_vote_share"]``: the winner's share of the vote weight;
        - ``obs[key + "_fit"]``: the fit (diagnostic, see above);
        - ``obs[key + "_novelty_pvalue"]``: the p-value of the novelty test;
        - ``obs[key + "_novel"]``: True for cells flagged as of a type absent from the context;
        - ``obsm[key + "_candidates"]`` / ``obsm[key + "_similarity"]``: the candidates' context row
          indices and likelihood similarities, most credible first (most similar first when
          ``rank_prior=0`` or with latent candidates), so two transfers with different keys keep both;
        - ``uns[key]["params"]``: the parameters (``"candidates"``: the source used);
        - ``uns[key]["calibration"]``: the held-out context cells of the calibration (``"n_cells"``) and the
          share whose vote was right (``"accuracy"``).

    Raises
    ------
    ValueError
        Before any computation: models not trained or not built from each other (cell count, gene names,
        or the context fingerprint recorded by :func:`xspecies.pp.homology_neighbors`), stored neighbour
        indices out of range, context labels missing on all but at most one cell, parameters out of range.
    KeyError
        When ``labels_key`` is not a context ``obs`` column or homology candidates are absent.

    Examples
    --------
    Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch;
    train as in :doc:`/getting_started` for meaningful results):

    >>> import xspecies as xs
    >>> context, target = xs.datasets.pancreas_models()

    >>> xs.tl.transfer_labels(target, context, labels_key="cell_ontology_class", progress_bar=False)
    >>> confidence = target.adata.obs["xspecies_cell_ontology_class_confidence"]
    >>> bool(confidence.between(0, 1).all())
    True
    """
    check_pair(target, context)
    check_obs_key(context.adata, labels_key, "context", allow_nan=True)
    check_positive_int("n_candidates", n_candidates)
    check_positive_int("n_vote", n_vote)
    if batch_size is not None:
        check_positive_int("batch_size", batch_size)
    check_number("rank_prior", rank_prior, minimum=0)
    check_fraction("novel_alpha", novel_alpha, open_min=True, open_max=True)
    check_positive_int("n_neighbors", n_neighbors)
    check_int("calibration_folds", calibration_folds, minimum=2)
    check_int("random_state", random_state, minimum=0)
    check_weighting(weighting)
    if candidates not in CANDIDATE_SOURCES:
        raise ValueError(f"unknown candidates {candidates!r}: use one of {CANDIDATE_SOURCES}.")
    if context.adata.obs[labels_key].notna().sum() < 2:
        raise ValueError(
            f"context.obs[{labels_key!r}] labels fewer than 2 cells: the confidence is calibrated on "
            "held-out context cells."
        )
    key = key_added or f"xspecies_{labels_key}"
    proposed = (
        None if candidates == "latent" else _homology_candidates(target, n_candidates, context.adata.n_obs)
    )
    if candidates == "homology" and proposed is None:
        raise KeyError(
            "candidates='homology' needs the neighbour search in the target AnnData: run "
            "xspecies.pp.homology_neighbors and TargetModel.setup_anndata(..., homology_key='homology')."
        )
    adata = target.adata
    z_context = context.get_latent_representation(batch_size=batch_size)
    z_target = target.get_latent_representation(batch_size=batch_size)
    source = "latent" if proposed is None else "homology"
    if proposed is None:
        proposed = _latent_knn(z_context, z_target, n_candidates)
    n_vote = min(n_vote, proposed.shape[1])
    similarity = target.similarity_to_table(
        z_context, proposed, batch_size=batch_size, progress_bar=progress_bar
    )
    score = similarity
    if source == "homology" and rank_prior:
        score = similarity - rank_prior * np.log1p(np.arange(proposed.shape[1]))[None, :]
    order = np.argsort(-score, axis=1, kind="stable")
    ranked = np.take_along_axis(proposed, order, axis=1)
    similarity = np.take_along_axis(similarity, order, axis=1)

    labels = pd.Categorical(context.adata.obs[labels_key])
    winner, vote_share = weighted_vote(labels.codes[ranked[:, :n_vote]], len(labels.categories), weighting)

    neighbours = _latent_knn(z_target, z_target, n_vote, exclude_self=True)
    own_similarity = target.similarity_to_table(z_target, neighbours, batch_size=batch_size)
    reference = np.minimum(np.median(own_similarity, axis=1), -1e-6)
    best = -np.sort(-similarity, axis=1)[:, :n_vote]
    achieved = np.minimum(np.median(best, axis=1), -1e-6)
    fit = np.clip(reference / achieved, 0.0, 1.0)

    right, held_share = _held_out_votes(
        z_context, labels.codes, len(labels.categories), n_vote, weighting, calibration_folds, random_state
    )
    calibration = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(held_share, right)
    outlyingness = _outlyingness(z_context, z_target, n_neighbors)
    pvalue = _novelty_pvalues(_outlyingness(z_context, None, n_neighbors), outlyingness)

    adata.obs[key] = pd.Categorical.from_codes(winner, categories=labels.categories)
    adata.obs[f"{key}_vote_share"] = vote_share.astype(np.float32)
    adata.obs[f"{key}_fit"] = fit.astype(np.float32)
    confidence = calibration.predict(vote_share) * _shared_probability(pvalue)
    adata.obs[f"{key}_confidence"] = confidence.astype(np.float32)
    adata.obs[f"{key}_novelty_pvalue"] = pvalue.astype(np.float32)
    adata.obs[f"{key}_novel"] = pvalue <= novel_alpha
    adata.obsm[f"{key}_candidates"] = ranked.astype(np.int64)
    adata.obsm[f"{key}_similarity"] = similarity.astype(np.float32)
    params = {
        "labels_key": labels_key,
        "n_candidates": int(ranked.shape[1]),
        "candidates": source,
        "n_vote": int(n_vote),
        "weighting": weighting,
        "rank_prior": float(rank_prior) if source == "homology" else 0.0,
        "novel_alpha": float(novel_alpha),
        "n_neighbors": int(n_neighbors),
        "calibration_folds": int(calibration_folds),
        "random_state": int(random_state),
    }
    held_out = {"n_cells": int(len(right)), "accuracy": float(np.mean(right))}
    store_result(adata, key, params, calibration=held_out)
