"""Likelihood-based label transfer from a context model to a target model."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from xspecies._docs import doc_params, doc_progress_bar
from xspecies._validation import (
    check_fraction,
    check_neighbor_indices,
    check_number,
    check_obs_key,
    check_positive_int,
)
from xspecies._vote import check_weighting, weighted_vote

from ._pair import check_pair
from ._results import store_result


def _latent_knn(reference: np.ndarray, query: np.ndarray, k: int, exclude_self: bool = False) -> np.ndarray:
    k_eff = min(k + int(exclude_self), reference.shape[0])
    nn = NearestNeighbors(n_neighbors=k_eff).fit(reference)
    idx = nn.kneighbors(query, return_distance=False)
    return idx[:, 1:] if exclude_self else idx


CANDIDATE_SOURCES = ("auto", "homology", "latent")


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
    novel_threshold: float = 0.5,
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

    The *confidence* is ``vote share x fit`` (the vote share is the winner's share of the vote weight). ``fit`` compares how well the context explains the cell
    with how well its own species does: the median similarity of the ``n_vote`` best context candidates
    against the median similarity of its ``n_vote`` nearest **target** cells (same score, same decoder),
    ``fit = min(1, target median / context median)`` (both are negative log-likelihood gaps). A cell
    whose type is absent from the context is explained much worse by context cells than by cells of its
    own species, so ``fit`` is small: such cells are flagged as novel when ``fit < novel_threshold``.

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
    novel_threshold
        Cells with ``fit`` below it are flagged as resembling no context cell (default 0.5: the best
        context cells explain the counts at least twice as badly as the cell's own neighbours).
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
        - ``obs[key + "_confidence"]``: confidence in [0, 1];
        - ``obs[key + "_vote_share"]`` and ``obs[key + "_fit"]``: its two factors;
        - ``obs[key + "_novel"]``: True for cells that resemble no context cell;
        - ``obsm[key + "_candidates"]`` / ``obsm[key + "_similarity"]``: the candidates' context row
          indices and likelihood similarities, most credible first (most similar first when
          ``rank_prior=0`` or with latent candidates), so two transfers with different keys keep both;
        - ``uns[key]["params"]``: the parameters (``"candidates"``: the source used).

    Raises
    ------
    ValueError
        Before any computation: models not trained or not built from each other (cell count, gene names,
        or the context fingerprint recorded by :func:`xspecies.pp.homology_neighbors`), stored neighbour
        indices out of range, context labels that are all missing, parameters out of range.
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
    check_fraction("novel_threshold", novel_threshold)
    check_weighting(weighting)
    if candidates not in CANDIDATE_SOURCES:
        raise ValueError(f"unknown candidates {candidates!r}: use one of {CANDIDATE_SOURCES}.")
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

    adata.obs[key] = pd.Categorical.from_codes(winner, categories=labels.categories)
    adata.obs[f"{key}_vote_share"] = vote_share.astype(np.float32)
    adata.obs[f"{key}_fit"] = fit.astype(np.float32)
    adata.obs[f"{key}_confidence"] = (vote_share * fit).astype(np.float32)
    adata.obs[f"{key}_novel"] = fit < novel_threshold
    adata.obsm[f"{key}_candidates"] = ranked.astype(np.int64)
    adata.obsm[f"{key}_similarity"] = similarity.astype(np.float32)
    params = {
        "labels_key": labels_key,
        "n_candidates": int(ranked.shape[1]),
        "candidates": source,
        "n_vote": int(n_vote),
        "weighting": weighting,
        "rank_prior": float(rank_prior) if source == "homology" else 0.0,
        "novel_threshold": float(novel_threshold),
    }
    store_result(adata, key, params)
