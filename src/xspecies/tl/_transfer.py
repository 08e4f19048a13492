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

_NORMAL_MAD = 1.4826  # a normal distribution's standard deviation over its median absolute deviation


def _latent_knn(reference: np.ndarray, query: np.ndarray, k: int, exclude_self: bool = False) -> np.ndarray:
    k_eff = min(k + int(exclude_self), reference.shape[0])
    nn = NearestNeighbors(n_neighbors=k_eff).fit(reference)
    idx = nn.kneighbors(query, return_distance=False)
    return idx[:, 1:] if exclude_self else idx


CANDIDATE_SOURCES = ("auto", "homology", "latent")


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


def _log_density_ratio(context: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    """Log density ratio of the target over the context around each target cell (up to a constant).

    The log of the distance to the ``k``-th nearest context cell over that to the ``k``-th nearest other
    target cell: large where target cells are many and context cells few.
    """
    to_context = NearestNeighbors(n_neighbors=min(k, len(context))).fit(context).kneighbors(target)[0]
    to_target = NearestNeighbors(n_neighbors=min(k + 1, len(target))).fit(target).kneighbors(target)[0]
    return np.log(np.maximum(to_context[:, -1], 1e-12) / np.maximum(to_target[:, -1], 1e-12))


def _standardized(scores: np.ndarray) -> np.ndarray:
    """``(scores - median) / MAD``: robust to a minority of extreme scores (MAD scaled to a normal SD).

    The standard deviation replaces a MAD of 0 (more than half of the scores equal), 1 a zero deviation.
    """
    median = np.median(scores)
    scale = _NORMAL_MAD * np.median(np.abs(scores - median)) or np.std(scores) or 1.0
    return (scores - median) / scale


def _crowding(neighbors: np.ndarray, n_context: int) -> np.ndarray:
    """Log crowding of every target cell's data-level neighbours (up to a constant).

    The load of a context cell is the number of target cells that list it among their ``neighbors``
    over the number if every context cell were listed equally often; the score is the log of the median
    load of the cell's own neighbours: large where many target cells share few context cells.
    """
    load = np.bincount(neighbors.ravel(), minlength=n_context) * (n_context / neighbors.size)
    return np.log(np.median(load[neighbors], axis=1))


def _novelty_scores(
    z_context: np.ndarray,
    z_target: np.ndarray,
    fit: np.ndarray,
    k: int,
    search: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Novelty score of every target cell: the sum of three standardized, smoothed scores.

    Each score is the median over the cell and its ``k - 1`` nearest target cells (a novel type is a
    group of cells, not one cell), standardized by the median and MAD over the target cells: a
    *distance* from the context, the log-misfit ``-log(fit)`` (the context explains the counts worse
    than the cell's own species) and a *crowding* (many target cells where the context has few: a novel
    type mapped near a rare context type). With ``search``, the first ``k`` data-level neighbours of
    every target cell and their distances, distance and crowding come from the data: the log median
    distance to those neighbours and :func:`_crowding`; without, from the latent space: the
    log-outlyingness (far from the context for the context's local density) and the log density ratio at
    the scale of ``2 k`` cells.
    """
    if search is None:
        distance = np.log(np.maximum(_outlyingness(z_context, z_target, k), 1e-12))
        crowding = _log_density_ratio(z_context, z_target, 2 * k)
    else:
        neighbors, distances = search
        distance = np.log(np.maximum(np.median(distances, axis=1), 1e-12))
        crowding = _crowding(neighbors, len(z_context))
    scores = (distance, -np.log(np.maximum(fit, 1e-6)), crowding)
    around = _latent_knn(z_target, z_target, k)  # the cell itself first
    return sum(_standardized(np.median(score[around], axis=1)) for score in scores)


def _laplace_log_density(x: np.ndarray, location: float, scale: float) -> np.ndarray:
    return -np.abs(x - location) / scale - np.log(2 * scale)


def _weighted_median(x: np.ndarray, weight: np.ndarray) -> float:
    order = np.argsort(x)
    cumulative = np.cumsum(weight[order])
    return float(x[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def _spread_floor(scale: float) -> float:
    """Smallest standard deviation of the second group: a normal whose MAD is the Laplace null's (``scale * log 2``)."""
    return float(_NORMAL_MAD * np.log(2) * scale)


def _two_groups(scores: np.ndarray, n_iter: int = 200) -> tuple[np.ndarray, np.ndarray, dict]:
    """Novelty p-values and probabilities from a two-group model fitted to the unlabelled scores.

    Cells of types the context has (the null group) follow a Laplace distribution, cells of absent
    types a normal one above it; both, and the share of the second, are fitted by EM (at most
    ``n_iter`` steps, fewer once the parameters settle). The second group is a mixture of whatever absent
    types there are, each spread like a type of the context: its median absolute deviation is kept at
    least the null's (standard deviation at least ``1.4826 * log(2) * scale``), so that a narrow mode
    of one absent type does not leave the lower scores of another to the null. The p-value is
    the null's upper tail at the score. The probability of an absent type is the posterior of the
    second group when it is a separate mode (Ashman's ``D > 2``), centred beyond the null's 99th
    percentile and a minority; otherwise it is 0 and the null is the Laplace fitted to all scores.
    """
    location = float(np.median(scores))
    scale = max(float(np.median(np.abs(scores - location))) / np.log(2), 1e-12)
    top = scores >= np.quantile(scores, 0.9)
    share, mean = 0.1, float(scores[top].mean())
    sd = max(float(scores[top].std()) + 1e-6, _spread_floor(scale))
    previous = None
    for _ in range(n_iter):
        log_null = np.log1p(-share) + _laplace_log_density(scores, location, scale)
        log_novel = np.log(share) - 0.5 * ((scores - mean) / sd) ** 2 - np.log(sd * np.sqrt(2 * np.pi))
        posterior = 1.0 / (1.0 + np.exp(np.clip(log_null - log_novel, -700, 700)))
        share = float(np.clip(posterior.mean(), 1e-6, 1 - 1e-6))
        location = _weighted_median(scores, 1.0 - posterior)
        scale = max(float(np.average(np.abs(scores - location), weights=1.0 - posterior + 1e-12)), 1e-12)
        mean = float(np.average(scores, weights=posterior + 1e-12))
        sd = float(np.sqrt(np.average((scores - mean) ** 2, weights=posterior + 1e-12))) + 1e-6
        sd = max(sd, _spread_floor(scale))
        fitted = (share, location, scale, mean, sd)
        if previous is not None and np.allclose(fitted, previous, rtol=1e-10, atol=1e-12):
            break
        previous = fitted
    separation = np.sqrt(2) * (mean - location) / np.sqrt(2 * scale**2 + sd**2)
    separate = bool(separation > 2 and mean > location + scale * np.log(50) and share < 0.5)
    if separate:  # a higher score is never less likely novel (past its mode the normal's tail is the lighter)
        order = np.argsort(scores, kind="stable")
        posterior[order] = np.maximum.accumulate(posterior[order])
    else:  # one group: the Laplace fitted to all cells
        location = float(np.median(scores))
        scale = max(float(np.mean(np.abs(scores - location))), 1e-12)
        posterior = np.zeros_like(scores)
    excess = (scores - location) / scale
    pvalue = np.where(
        excess >= 0, 0.5 * np.exp(-np.maximum(excess, 0)), 1 - 0.5 * np.exp(np.minimum(excess, 0))
    )
    fitted = {
        "null_location": location,
        "null_scale": scale,
        "novel_share": share if separate else 0.0,
        "novel_mean": mean,
        "novel_sd": sd,
        "separation": float(separation),
    }
    return pvalue, posterior, fitted


def _homology_search(target, n_context: int) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The data-level neighbours of every target cell and their distances (None when not stored).

    None when the search is absent. Raises on neighbour indices out of range and on distances that are
    not one finite, non-negative value per neighbour.
    """
    key = target.adata_manager.registry["setup_args"].get("homology_key")
    if key is None or f"{key}_neighbors" not in target.adata.obsm:
        return None
    where = f"target.adata.obsm[{key + '_neighbors'!r}]"
    neighbors = check_neighbor_indices(target.adata.obsm[f"{key}_neighbors"], n_context, where)
    if f"{key}_distances" not in target.adata.obsm:
        return neighbors, None
    distances = np.asarray(target.adata.obsm[f"{key}_distances"])
    if distances.shape != neighbors.shape or not (np.isfinite(distances) & (distances >= 0)).all():
        raise ValueError(
            f"target.adata.obsm[{key + '_distances'!r}] must hold one finite, non-negative distance per "
            f"neighbour of {where} (shape {neighbors.shape}), got shape {distances.shape}: run "
            "xspecies.pp.homology_neighbors again."
        )
    return neighbors, distances


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

    - ``novel`` flags cells of types the context lacks, from three scores per target cell: a *distance*
      from the context, the *misfit* ``-log(fit)`` (the context explains the counts worse than the cell's
      own species, see ``fit`` below) and a *crowding* (many target cells where the context has few: a
      novel type the model maps near a rare context type). With the data-level neighbour search of
      :func:`xspecies.pp.homology_neighbors` registered (its ``_neighbors`` and ``_distances``), distance
      and crowding come from the data: the median distance to the first ``n_neighbors`` data-level
      neighbours, and the median *load* of those neighbours (how many target cells list a context cell
      among theirs, over the number if all were listed equally often). The training cannot move them: a
      shared type that the model aligns badly (with a large type missing from the context, the model
      moves shared types aside) stays close to its context cells in the data. Without the search, both
      come from the shared latent space: the *outlyingness* (the distance to the ``n_neighbors``-th
      nearest context cell over the mean of that distance for those context cells) and the *density
      ratio* (the distance to the ``2 * n_neighbors``-th nearest context cell over that to the
      ``2 * n_neighbors``-th nearest other target cell). Each score is the median over the cell and its
      ``n_neighbors - 1`` nearest target cells (a type is a group of cells), logged and standardized by
      its median and MAD over the target cells; their sum is the novelty score. The species gap moves
      and widens all target scores, so the null distribution is estimated from the target cells
      themselves, never from labels: a two-group model fitted by EM to the scores, a Laplace
      distribution for cells of types the context has and a normal one above it for the others (a
      mixture of whatever absent types there are, so never narrower than the null: its median absolute
      deviation is kept at least the Laplace's). ``novelty_pvalue`` is the Laplace null's upper tail
      at the cell's score. The second group counts only when it is a separate mode (Ashman's
      ``D > 2``), centred beyond the null's 99th percentile and a minority (below half of the cells);
      otherwise no cell is of it, and the null is the Laplace fitted to all scores. ``novel`` is ``novelty_pvalue <= novel_alpha`` *and* a posterior
      probability of the second group above 0.5 (never falling as the score rises). The error rate
      controlled is the share of target
      cells of types the context has that are flagged: at most ``novel_alpha`` when their scores
      follow the fitted Laplace, less where the second-group condition rejects them. It is not
      guaranteed: a shared type the model aligns badly scores like an absent type and is flagged
      (measured rates, with one large type removed from the context too: :doc:`/benchmarks`).
    - ``confidence`` is the probability that the transferred label is right. The context cells are split
      into ``calibration_folds`` folds; each cell gets the vote of its ``n_vote`` nearest latent
      neighbours outside its fold (same weighting), and an isotonic (monotone) regression of "the vote
      was right" on the vote share gives the probability for a cell of a type the context has. It is
      multiplied by the probability that the cell's type is in the context (one minus the posterior
      probability of the second group of the novelty model above), since the label of a cell of an
      absent type is wrong.

    The ``fit`` of every cell (one of the novelty scores, and kept as a diagnostic) is how well the
    context explains the cell compared with its own species: the median similarity of its ``n_vote``
    nearest **target** cells over that of its ``n_vote`` best context candidates (same score, same
    decoder), capped at 1.

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
        Level of the novelty test, in (0, 1): at most the share of the target cells of types present in
        the context that are flagged, under the assumptions above (the measured rates: :doc:`/benchmarks`).
    n_neighbors
        Neighbours of the novelty scores: data-level neighbours of the distance and the crowding (context
        neighbours of the outlyingness, twice as many for the density ratio, without the search), target
        neighbours of the median.
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
        - ``obs[key + "_fit"]``: the fit (see above);
        - ``obs[key + "_novelty_pvalue"]``: the p-value of the novelty test;
        - ``obs[key + "_novel"]``: True for cells flagged as of a type absent from the context;
        - ``obsm[key + "_candidates"]`` / ``obsm[key + "_similarity"]``: the candidates' context row
          indices and likelihood similarities, most credible first (most similar first when
          ``rank_prior=0`` or with latent candidates), so two transfers with different keys keep both;
        - ``uns[key]["params"]``: the parameters (``"candidates"``: the source used);
        - ``uns[key]["calibration"]``: the held-out context cells of the calibration (``"n_cells"``) and the
          share whose vote was right (``"accuracy"``);
        - ``uns[key]["novelty"]``: the fitted novelty model: ``"null_location"`` and ``"null_scale"`` of the
          Laplace null, ``"novel_share"`` (the second group's share, 0 when it does not count),
          ``"novel_mean"`` and ``"novel_sd"`` of the second group as fitted, its ``"separation"``
          (Ashman's ``D``) and ``"scores"``: ``"data"`` (distance and crowding from the data-level
          neighbours) or ``"latent"``.

    Raises
    ------
    ValueError
        Before any computation: models not trained or not built from each other (cell count, gene names,
        or the context fingerprint recorded by :func:`xspecies.pp.homology_neighbors`), stored neighbour
        indices out of range or distances not one finite, non-negative value per neighbour, context labels
        missing on all but at most one cell, parameters out of range.
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
    search = _homology_search(target, context.adata.n_obs)
    proposed = None if candidates == "latent" or search is None else search[0][:, :n_candidates]
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
    data_level = search is not None and search[1] is not None
    first = (search[0][:, :n_neighbors], search[1][:, :n_neighbors]) if data_level else None
    pvalue, novel_probability, novelty = _two_groups(
        _novelty_scores(z_context, z_target, fit, n_neighbors, first)
    )
    novelty["scores"] = "data" if data_level else "latent"

    adata.obs[key] = pd.Categorical.from_codes(winner, categories=labels.categories)
    adata.obs[f"{key}_vote_share"] = vote_share.astype(np.float32)
    adata.obs[f"{key}_fit"] = fit.astype(np.float32)
    confidence = calibration.predict(vote_share) * (1.0 - novel_probability)
    adata.obs[f"{key}_confidence"] = confidence.astype(np.float32)
    adata.obs[f"{key}_novelty_pvalue"] = pvalue.astype(np.float32)
    adata.obs[f"{key}_novel"] = (pvalue <= novel_alpha) & (novel_probability > 0.5)
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
    store_result(adata, key, params, calibration=held_out, novelty=novelty)
