"""Blocks of cells that share their candidates, so that a bounded table of decoded candidates serves them."""

from __future__ import annotations

import numpy as np


def locality_order(points: np.ndarray) -> np.ndarray:
    """An order of ``points`` in which nearby points are close: the leaf order of a k-d tree.

    Every node of the tree holds a contiguous run of the order, so any run of consecutive points is
    compact in space. Building the tree costs ``O(n log n)``.

    Parameters
    ----------
    points
        ``(n, d)`` coordinates.

    Returns
    -------
    numpy.ndarray
        A permutation of ``range(n)``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = np.zeros((80, 2))
    >>> x[::2] = rng.normal(0, 1, (40, 2))  # two clouds, their points interleaved
    >>> x[1::2] = rng.normal(20, 1, (40, 2))
    >>> order = locality_order(x)
    >>> sorted(order.tolist()) == list(range(80))
    True
    >>> int((np.abs(np.diff(x[order, 0])) > 10).sum())  # one cloud after the other
    1
    """
    from sklearn.neighbors import KDTree

    return np.asarray(KDTree(np.asarray(points, dtype=np.float64), leaf_size=16).get_arrays()[1])


def candidate_order(z_table: np.ndarray, candidates: np.ndarray, n_first: int = 8) -> np.ndarray:
    """An order of cells in which cells with nearby candidates are close (:func:`locality_order`).

    Each cell is placed at the mean latent of its first ``n_first`` candidates (rows of ``z_table``).

    Parameters
    ----------
    z_table
        ``(n_rows, d)`` latents of the table.
    candidates
        ``(n, k)`` table rows of each cell, most relevant first.
    n_first
        Candidates that place a cell.

    Returns
    -------
    numpy.ndarray
        A permutation of ``range(n)``.

    Examples
    --------
    >>> import numpy as np

    Cells whose candidates lie near 0 and near 10, interleaved, come out one group after the other:

    >>> z = np.array([[0.0], [1.0], [10.0], [11.0]])
    >>> candidates = np.tile([[2, 3], [0, 1]], (20, 1))  # even cells: near 10, odd cells: near 0
    >>> order = candidate_order(z, candidates)
    >>> int((np.diff(order % 2) != 0).sum())
    1
    """
    return locality_order(z_table[candidates[:, :n_first]].mean(axis=1))


def candidate_blocks(candidates: np.ndarray, order: np.ndarray, row_limit: int, max_cells: int) -> list:
    """Consecutive runs of ``order`` whose candidates hold at most ``row_limit`` distinct table rows.

    A run starts with the number of cells that always fits (``row_limit // k``) and doubles while its
    distinct candidates still fit and it has fewer than ``max_cells`` cells: cells that share their
    candidates (consecutive in a :func:`locality_order`) form long runs.

    Parameters
    ----------
    candidates
        ``(n, k)`` table rows of each cell.
    order
        Order of the ``n`` cells.
    row_limit
        Most distinct table rows of a run (at least ``k``).
    max_cells
        Most cells of a run.

    Returns
    -------
    list of numpy.ndarray
        Positions (into ``candidates``) of the cells of each run, covering ``order`` once.

    Examples
    --------
    Two groups of cells, each with the same 3 candidates:

    >>> import numpy as np
    >>> cand = np.array([[0, 1, 2]] * 4 + [[5, 6, 7]] * 4)
    >>> [b.tolist() for b in candidate_blocks(cand, np.arange(8), row_limit=3, max_cells=8)]
    [[0, 1, 2, 3], [4, 5, 6, 7]]
    """
    k = candidates.shape[1]
    base = max(1, min(row_limit // max(k, 1), max_cells))
    blocks, start, n = [], 0, len(order)
    while start < n:
        size = min(base, n - start)
        while size < max_cells and start + size < n:
            bigger = min(2 * size, max_cells, n - start)
            if len(np.unique(candidates[order[start : start + bigger]])) > row_limit:
                break
            size = bigger
        blocks.append(order[start : start + size])
        start += size
    return blocks
