"""Label votes of ranked neighbours, shared by the data-level search and the model's label transfer."""

from __future__ import annotations

import numpy as np

#: Weightings of :func:`weighted_vote`.
VOTE_WEIGHTS = ("rank", "uniform")


def check_weighting(weighting: str) -> None:
    """Raise a ValueError naming ``weighting`` unless it is one of :data:`VOTE_WEIGHTS`.

    Parameters
    ----------
    weighting
        The requested vote weighting.

    Returns
    -------
    None
        Returns only for a known weighting.

    Examples
    --------
    >>> check_weighting("rank")
    """
    if weighting not in VOTE_WEIGHTS:
        raise ValueError(f"unknown weighting {weighting!r}: use one of {VOTE_WEIGHTS}.")


def weighted_vote(
    codes: np.ndarray, n_categories: int, weighting: str = "rank"
) -> tuple[np.ndarray, np.ndarray]:
    """Label with the largest vote per row of ranked neighbour labels, and its share of the votes.

    Parameters
    ----------
    codes
        ``(n, v)`` label codes of each row's neighbours, closest first; negative codes (missing labels)
        do not vote.
    n_categories
        Number of labels.
    weighting
        ``"uniform"``: one vote per neighbour (majority); ``"rank"``: the neighbour at rank ``r``
        (0 = closest) votes ``1 / (r + 1)``, so a rare label held by the closest neighbours wins against a
        majority further away.

    Returns
    -------
    tuple of numpy.ndarray
        The winning code per row (ties: the label met first, i.e. the closest) and its share of the
        total vote weight; ``-1`` and share 0 for a row without any labelled neighbour.

    Examples
    --------
    >>> import numpy as np
    >>> codes = np.array([[5, 5, 0, 0, 0, 0, 0, 0]])
    >>> weighted_vote(codes, 6, "uniform")[0], weighted_vote(codes, 6, "rank")[0]
    (array([0]), array([5]))
    """
    check_weighting(weighting)
    if n_categories < 1:
        raise ValueError("no labels to vote on: every neighbour's label is missing.")
    n, v = codes.shape
    weights = 1.0 / np.arange(1, v + 1) if weighting == "rank" else np.ones(v)
    votes = np.zeros((n, n_categories))
    first = np.full((n, n_categories), v, dtype=np.int64)
    for c in range(n_categories):
        hit = codes == c
        votes[:, c] = hit @ weights
        first[:, c] = np.where(hit.any(axis=1), hit.argmax(axis=1), v)
    best = votes.max(axis=1, keepdims=True)
    winner = np.argmin(np.where(np.isclose(votes, best), first, v + 1), axis=1)
    share = votes[np.arange(n), winner] / weights.sum()
    voted = best[:, 0] > 0
    return np.where(voted, winner, -1), np.where(voted, share, 0.0)
