"""Orders and pieces of tables and cells, so that bounded tables of decoded latents serve many cells."""

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


def row_chunks(points: np.ndarray, limit: int) -> list:
    """The points cut into runs of at most ``limit`` nearby points (pieces of :func:`locality_order`).

    Parameters
    ----------
    points
        ``(n, d)`` coordinates.
    limit
        Most points of a run.

    Returns
    -------
    list of numpy.ndarray
        Positions of the points of each run, of nearly equal sizes, covering ``range(n)`` once; one run
        in the original order when all points fit.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(0, 1, (80, 2))
    >>> x[1::2] += 20  # two clouds, their points interleaved
    >>> runs = row_chunks(x, 40)
    >>> [len(run) for run in runs]
    [40, 40]
    >>> [bool(np.ptp(x[run, 0]) < 10) for run in runs]  # each run holds one cloud
    [True, True]
    >>> [run.tolist() for run in row_chunks(x[:5], 5)]
    [[0, 1, 2, 3, 4]]
    """
    n = len(points)
    if n <= limit:
        return [np.arange(n)]
    return np.array_split(locality_order(points), -(-n // max(1, limit)))


def pair_segments(cells: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of at most ``width`` pairs of one cell each, for pairs sorted by their cell.

    A cell with ``q`` pairs fills ``ceil(q / width)`` consecutive rows, so that a ``(rows, width)``
    array holds any number of pairs per cell with less than ``width`` empty places per cell.

    Parameters
    ----------
    cells
        Cell of each pair, sorted.
    width
        Places per row.

    Returns
    -------
    row, column : numpy.ndarray
        The place of each pair.

    Examples
    --------
    >>> import numpy as np
    >>> row, column = pair_segments(np.array([0, 0, 0, 4, 7, 7]), width=2)
    >>> row.tolist(), column.tolist()
    ([0, 0, 1, 2, 3, 3], [0, 1, 0, 0, 0, 1])
    """
    starts = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
    counts = np.diff(np.r_[starts, len(cells)])
    rank = np.arange(len(cells)) - np.repeat(starts, counts)
    rows_per_cell = -(-counts // width)
    first = np.repeat(np.cumsum(rows_per_cell) - rows_per_cell, counts)
    return first + rank // width, rank % width
