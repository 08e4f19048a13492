"""Inconsistency coefficient (IC) mathematics of scICE: element-centric similarity of flat partitions.

For two flat partitions ``A`` and ``B`` of the same cells, the element-centric similarity of a
cell ``i`` reduces to ``|A_i ∩ B_i| / max(|A_i|, |B_i|)`` (``A_i`` and ``B_i`` are the clusters
holding ``i``); summed over the cells it only depends on the contingency table, so the mean
similarity costs ``O(n_cells)``. The IC of a set of labelings is ``1 / (p^T S p)`` where ``p``
holds the frequencies of the distinct labelings and ``S`` their pairwise mean similarities.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components


def canonical_labels(labels: np.ndarray) -> np.ndarray:
    """Relabel a partition ``0, 1, ...`` in the order in which its clusters first appear.

    Parameters
    ----------
    labels
        Integer cluster label per cell.

    Returns
    -------
    numpy.ndarray
        ``int32`` labels; two labelings describing the same partition become identical.

    Examples
    --------
    >>> canonical_labels(np.array([5, 5, 2, 7])).tolist()
    [0, 0, 1, 2]
    """
    _, first, inverse = np.unique(np.asarray(labels), return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int32)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size, dtype=np.int32)
    return rank[inverse.ravel()]


def partition_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean element-centric similarity of two flat partitions.

    Parameters
    ----------
    a, b
        Non-negative integer cluster labels of the same cells.

    Returns
    -------
    float
        ``mean_i |A_i ∩ B_i| / max(|A_i|, |B_i|)``, in ``(0, 1]``; 1 for identical partitions.

    Examples
    --------
    >>> partition_similarity(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))
    1.0
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"partitions must be 1D of equal length, got shapes {a.shape} and {b.shape}")
    size_a = np.bincount(a)
    size_b = np.bincount(b)
    codes = a * size_b.size + b
    if size_a.size * size_b.size <= 4 * a.size + 1024:
        table = np.bincount(codes, minlength=size_a.size * size_b.size)
        pairs = np.flatnonzero(table)
        counts = table[pairs]
    else:
        pairs, counts = np.unique(codes, return_counts=True)
    rows, cols = np.divmod(pairs, size_b.size)
    counts = counts.astype(np.float64)
    return float(np.sum(counts * counts / np.maximum(size_a[rows], size_b[cols])) / a.size)


def unique_labelings(labelings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct partitions among several labelings of the same cells.

    Parameters
    ----------
    labelings
        ``(n_labelings, n_cells)`` integer labels.

    Returns
    -------
    unique
        ``(n_unique, n_cells)`` canonical labelings.
    inverse
        Index into ``unique`` of each input labeling.

    Examples
    --------
    >>> u, inv = unique_labelings(np.array([[0, 0, 1], [1, 1, 0], [0, 1, 1]]))
    >>> u.shape[0], inv.tolist()
    (2, [0, 0, 1])
    """
    canonical = np.stack([canonical_labels(row) for row in np.asarray(labelings)])
    unique, inverse = np.unique(canonical, axis=0, return_inverse=True)
    return unique, inverse.ravel()


def similarity_matrix(unique: np.ndarray) -> np.ndarray:
    """Pairwise mean element-centric similarities of labelings.

    Parameters
    ----------
    unique
        ``(n_labelings, n_cells)`` integer labels.

    Returns
    -------
    numpy.ndarray
        Symmetric ``(n_labelings, n_labelings)`` matrix with ones on the diagonal.

    Examples
    --------
    >>> similarity_matrix(np.array([[0, 0, 1, 1], [0, 0, 0, 1]])).round(3).tolist()
    [[1.0, 0.542], [0.542, 1.0]]
    """
    n = unique.shape[0]
    sim = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            sim[i, j] = sim[j, i] = partition_similarity(unique[i], unique[j])
    return sim


def inconsistency(frequencies: np.ndarray, similarity: np.ndarray) -> np.ndarray:
    """Inconsistency coefficient ``1 / (p^T S p)`` for one or many frequency vectors.

    Parameters
    ----------
    frequencies
        ``(n_unique,)`` or ``(n_sets, n_unique)`` counts or frequencies of the distinct labelings
        (normalised here).
    similarity
        ``(n_unique, n_unique)`` similarity matrix from :func:`similarity_matrix`.

    Returns
    -------
    numpy.ndarray
        IC per frequency vector (a 0-d array for one vector); 1 means every run found the same partition.

    Examples
    --------
    >>> float(inconsistency(np.array([3, 0]), np.array([[1.0, 0.5], [0.5, 1.0]])))
    1.0
    """
    p = np.asarray(frequencies, dtype=np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    return 1.0 / np.einsum("...i,ij,...j->...", p, similarity, p)


def labeling_ic(labelings: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """IC of a set of labelings with the pieces needed to bootstrap it.

    Parameters
    ----------
    labelings
        ``(n_labelings, n_cells)`` integer labels (e.g. one per Leiden trial).

    Returns
    -------
    ic
        The inconsistency coefficient.
    unique
        Distinct canonical labelings.
    inverse
        Index into ``unique`` of each labeling.
    similarity
        Similarity matrix of ``unique``.

    Examples
    --------
    >>> labeling_ic(np.array([[0, 0, 1], [1, 1, 0]]))[0]
    1.0
    """
    unique, inverse = unique_labelings(labelings)
    similarity = similarity_matrix(unique)
    counts = np.bincount(inverse, minlength=unique.shape[0])
    return float(inconsistency(counts, similarity)), unique, inverse, similarity


def bootstrap_ic(
    inverse: np.ndarray, similarity: np.ndarray, n_bootstrap: int, rng: np.random.Generator
) -> np.ndarray:
    """IC of bootstrap resamples of the labelings; a resample only reweights the distinct labelings.

    Parameters
    ----------
    inverse
        Index of the distinct labeling of each original labeling (from :func:`unique_labelings`).
    similarity
        Similarity matrix of the distinct labelings.
    n_bootstrap
        Number of resamples (with replacement, of the same size as ``inverse``).
    rng
        Random generator.

    Returns
    -------
    numpy.ndarray
        ``(n_bootstrap,)`` IC values.

    Examples
    --------
    >>> bootstrap_ic(np.array([0, 0, 0]), np.eye(1), 4, np.random.default_rng(0)).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    draws = inverse[rng.integers(0, inverse.size, size=(n_bootstrap, inverse.size))]
    counts = np.zeros((n_bootstrap, similarity.shape[0]))
    np.add.at(counts, (np.repeat(np.arange(n_bootstrap), inverse.size), draws.ravel()), 1.0)
    return inconsistency(counts, similarity)


def representative_labeling(unique: np.ndarray, inverse: np.ndarray, similarity: np.ndarray) -> np.ndarray:
    """The labeling most similar to all others (frequency-weighted mean similarity).

    Parameters
    ----------
    unique, inverse, similarity
        Output of :func:`labeling_ic`.

    Returns
    -------
    numpy.ndarray
        The chosen canonical labeling.

    Examples
    --------
    >>> u = np.array([[0, 0, 1], [0, 1, 1]])
    >>> representative_labeling(u, np.array([1, 1, 0]), similarity_matrix(u)).tolist()
    [0, 1, 1]
    """
    counts = np.bincount(inverse, minlength=unique.shape[0])
    return unique[int(np.argmax(similarity @ counts))]


def effective_cluster_count(labels: np.ndarray, min_cluster_size: int) -> int:
    """Number of clusters holding at least ``min_cluster_size`` cells.

    Parameters
    ----------
    labels
        Non-negative integer labels.
    min_cluster_size
        Smallest size that counts.

    Returns
    -------
    int
        The effective cluster count.

    Examples
    --------
    >>> effective_cluster_count(np.array([0, 0, 1, 2, 2]), 2)
    2
    """
    return int(np.count_nonzero(np.bincount(labels) >= max(min_cluster_size, 1)))


def merge_small_clusters(labels: np.ndarray, adjacency: sp.csr_matrix, min_cluster_size: int) -> np.ndarray:
    """Merge clusters smaller than ``min_cluster_size`` into the neighbour with most edge weight.

    A small cluster joins the large cluster it shares most edge weight with (or, with no large
    neighbour, the small one); clusters without any edge to another cluster stay as they are.
    Clusters are finally numbered by decreasing size.

    Parameters
    ----------
    labels
        Non-negative integer labels.
    adjacency
        Symmetric ``(n_cells, n_cells)`` weighted adjacency matrix.
    min_cluster_size
        Smallest size a cluster keeps on its own.

    Returns
    -------
    numpy.ndarray
        ``int32`` merged labels, ``0`` being the largest cluster.

    Examples
    --------
    >>> adj = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=float))
    >>> merge_small_clusters(np.array([0, 0, 1]), adj, 2).tolist()
    [0, 0, 0]
    """
    labels = canonical_labels(labels)
    while True:
        sizes = np.bincount(labels)
        small = np.flatnonzero(sizes < min_cluster_size)
        if small.size == 0:
            break
        n_clusters = sizes.size
        member = sp.csr_matrix(
            (np.ones(labels.size), (np.arange(labels.size), labels)), shape=(labels.size, n_clusters)
        )
        between = (member.T @ adjacency @ member).tocsr()
        between.setdiag(0)
        between.eliminate_zeros()
        large = sizes >= min_cluster_size
        targets = np.arange(n_clusters)
        for cluster in small:
            row = between.getrow(cluster)
            if row.nnz == 0:
                continue
            neighbours, weights = row.indices, row.data
            preferred = large[neighbours]
            if preferred.any():
                neighbours, weights = neighbours[preferred], weights[preferred]
            targets[cluster] = neighbours[np.argmax(weights)]
        if np.array_equal(targets, np.arange(n_clusters)):
            break
        links = sp.csr_matrix(
            (np.ones(n_clusters), (np.arange(n_clusters), targets)), shape=(n_clusters,) * 2
        )
        _, groups = connected_components(links, directed=False)
        labels = canonical_labels(groups[labels])
    order = np.argsort(-np.bincount(labels), kind="stable")
    rank = np.empty(order.size, dtype=np.int32)
    rank[order] = np.arange(order.size, dtype=np.int32)
    return rank[labels]
