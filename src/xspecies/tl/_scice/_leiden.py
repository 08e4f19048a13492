"""Batched Leiden runs for scICE on python-igraph's C implementation, serial or through joblib.

igraph's random number generator is global and igraph is not thread-safe, so every trial runs in
a process (joblib's loky or a Dask worker) under a lock, seeded with its own ``random.Random``.
A task carries the graph as numpy arrays and many trials; workers build the igraph graph once and
keep it in a small cache keyed by a token.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import igraph as ig
import joblib
import numpy as np
import scipy.sparse as sp

#: One Leiden trial: (resolution, seed, n_iterations, initial membership or None).
Job = tuple[float, int, int, np.ndarray | None]

_LOCK = threading.Lock()
_GRAPHS: OrderedDict[str, ig.Graph] = OrderedDict()
_MAX_CACHED_GRAPHS = 2


@dataclass(frozen=True)
class GraphPayload:
    """An undirected weighted graph as arrays: every edge once (upper triangle).

    Attributes
    ----------
    n_nodes
        Number of vertices.
    edges
        ``(n_edges, 2)`` ``int32`` vertex pairs with ``i <= j``.
    weights
        ``(n_edges,)`` ``float64`` edge weights.
    token
        Identifier under which workers cache the built igraph graph.
    """

    n_nodes: int
    edges: np.ndarray
    weights: np.ndarray
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def from_adjacency(cls, adjacency: sp.spmatrix) -> GraphPayload:
        """Keep the upper triangle (diagonal included) of a symmetric adjacency matrix.

        Parameters
        ----------
        adjacency
            Symmetric sparse ``(n, n)`` matrix of non-negative weights.

        Returns
        -------
        GraphPayload
            The graph with each undirected edge once.

        Examples
        --------
        >>> GraphPayload.from_adjacency(sp.csr_matrix(np.array([[0, 1.0], [1.0, 0]]))).edges.tolist()
        [[0, 1]]
        """
        upper = sp.triu(sp.coo_matrix(adjacency), k=0).tocoo()
        upper.sum_duplicates()
        keep = upper.data != 0
        edges = np.column_stack([upper.row[keep], upper.col[keep]]).astype(np.int32)
        return cls(int(adjacency.shape[0]), edges, upper.data[keep].astype(np.float64))

    def graph(self) -> ig.Graph:
        """The igraph graph, built once per process.

        Returns
        -------
        igraph.Graph
            Undirected graph with the edge attribute ``"weight"``.

        Examples
        --------
        >>> GraphPayload(2, np.array([[0, 1]], dtype=np.int32), np.array([1.0])).graph().ecount()
        1
        """
        cached = _GRAPHS.get(self.token)
        if cached is None:
            cached = ig.Graph(n=self.n_nodes, edges=self.edges, directed=False)
            cached.es["weight"] = self.weights
            _GRAPHS[self.token] = cached
            while len(_GRAPHS) > _MAX_CACHED_GRAPHS:
                _GRAPHS.popitem(last=False)
        return cached


def run_batch(payload: GraphPayload, jobs: list[Job], objective: str, beta: float) -> list[np.ndarray]:
    """Run Leiden trials on one graph (the unit of work sent to a worker).

    Parameters
    ----------
    payload
        The graph.
    jobs
        Trials as ``(resolution, seed, n_iterations, initial_membership)``.
    objective
        ``"CPM"`` or ``"modularity"``.
    beta
        Randomness of Leiden's refinement step.

    Returns
    -------
    list of numpy.ndarray
        ``int32`` membership per trial, in the order of ``jobs``.

    Examples
    --------
    >>> g = GraphPayload(3, np.array([[0, 1], [1, 2]], dtype=np.int32), np.ones(2))
    >>> run_batch(g, [(0.1, 0, 2, None)], "CPM", 0.01)[0].tolist()
    [0, 0, 0]
    """
    with _LOCK:
        graph = payload.graph()
        out = []
        try:
            for resolution, seed, n_iterations, initial in jobs:
                ig.set_random_number_generator(random.Random(int(seed)))
                partition = graph.community_leiden(
                    objective_function=objective,
                    weights="weight",
                    resolution=float(resolution),
                    beta=float(beta),
                    n_iterations=int(n_iterations),
                    initial_membership=None if initial is None else initial.tolist(),
                )
                out.append(np.asarray(partition.membership, dtype=np.int32))
        finally:
            ig.set_random_number_generator(random)
    return out


class LeidenRunner:
    """Dispatch batches of Leiden trials serially or through joblib (loky, Dask, ...).

    Parameters
    ----------
    payload
        The graph.
    objective
        ``"CPM"`` or ``"modularity"``.
    beta
        Randomness of the refinement step.
    n_jobs
        Number of joblib workers; 1 runs in this process without joblib. Under
        ``joblib.parallel_config(backend="dask")`` the trials run on the Dask cluster.

    Examples
    --------
    >>> g = GraphPayload(3, np.array([[0, 1], [1, 2]], dtype=np.int32), np.ones(2))
    >>> LeidenRunner(g, "CPM", 0.01, 1).run([(0.1, 0, 2, None)])[0].tolist()
    [0, 0, 0]
    """

    def __init__(self, payload: GraphPayload, objective: str, beta: float, n_jobs: int) -> None:
        self.payload = payload
        self.objective = objective
        self.beta = beta
        self.n_jobs = n_jobs

    def run(self, jobs: list[Job]) -> list[np.ndarray]:
        """Run the trials, one task per worker, and return the memberships in order.

        Parameters
        ----------
        jobs
            Trials as ``(resolution, seed, n_iterations, initial_membership)``.

        Returns
        -------
        list of numpy.ndarray
            Membership per trial.
        """
        if self.n_jobs == 1 or len(jobs) <= 1:
            return run_batch(self.payload, jobs, self.objective, self.beta)
        n_tasks = min(len(jobs), max(1, joblib.effective_n_jobs(self.n_jobs)))
        chunks = [jobs[i::n_tasks] for i in range(n_tasks)]
        results = joblib.Parallel(n_jobs=self.n_jobs)(
            joblib.delayed(run_batch)(self.payload, chunk, self.objective, self.beta) for chunk in chunks
        )
        out: list[np.ndarray] = [np.empty(0, dtype=np.int32)] * len(jobs)
        for offset, chunk_result in enumerate(results):
            out[offset::n_tasks] = chunk_result
        return out
