"""Plain reference implementation of the scICE procedure, for benchmarks/bench_scice.py.

Straightforward on purpose (not deliberately slowed): leidenalg.find_partition with
CPMVertexPartition per trial, serial; every k bisected on its own; element-centric similarity
computed per cell for every pair of trials (no deduplication of labelings); bootstrap IC from
the trial-by-trial similarity matrix. Same search constants as xspecies.tl.scice.
"""

from __future__ import annotations

import igraph as ig
import leidenalg as la
import numpy as np
import scipy.sparse as sp

SEARCH_TRIALS, SEARCH_ITERATIONS, TOLERANCE, N_GAMMA = 5, 2, 1.05, 6


def make_graph(adjacency):
    upper = sp.triu(adjacency).tocoo()
    graph = ig.Graph(
        n=adjacency.shape[0], edges=list(zip(upper.row.tolist(), upper.col.tolist(), strict=True))
    )
    graph.es["weight"] = upper.data.tolist()
    return graph


def leiden(graph, gamma, seed, n_iterations, initial=None):
    partition = la.find_partition(
        graph,
        la.CPMVertexPartition,
        initial_membership=initial,
        weights="weight",
        n_iterations=n_iterations,
        resolution_parameter=gamma,
        seed=seed,
    )
    return np.array(partition.membership)


def ecs(a, b):
    """Mean element-centric similarity, cell by cell: |A_i & B_i| / max(|A_i|, |B_i|)."""
    members_a = {c: set(np.flatnonzero(a == c)) for c in np.unique(a)}
    members_b = {c: set(np.flatnonzero(b == c)) for c in np.unique(b)}
    done = {}
    total = 0.0
    for i in range(a.size):
        key = (a[i], b[i])
        if key not in done:
            set_a, set_b = members_a[a[i]], members_b[b[i]]
            done[key] = len(set_a & set_b) / max(len(set_a), len(set_b))
        total += done[key]
    return total / a.size


def ic_of(labels, weights=None):
    n = len(labels)
    sim = np.ones((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            sim[i, j] = sim[j, i] = ecs(labels[i], labels[j])
    p = np.full(n, 1.0 / n) if weights is None else weights / weights.sum()
    return 1.0 / (p @ sim @ p), sim


def n_clusters(labels, min_size):
    sizes = np.bincount(labels)
    if sizes[sizes < min_size].sum() > 0.5 * labels.size:
        return labels.size
    return int(np.sum(sizes >= min_size))


def count_at(graph, gamma, min_size, seed):
    runs = [leiden(graph, gamma, seed + t, SEARCH_ITERATIONS) for t in range(SEARCH_TRIALS)]
    return float(np.median([n_clusters(r, min_size) for r in runs])), ic_of(runs)[0]


def scice_reference(
    adjacency,
    cluster_range,
    n_trials=15,
    n_bootstrap=100,
    n_iterations=10,
    max_iterations=150,
    remove_threshold=1.15,
    min_cluster_size=2,
    seed=0,
):
    """Return {k: (gamma, median bootstrap IC, best labels)} for the kept targets."""
    graph = make_graph(adjacency)
    rng = np.random.default_rng(seed)
    n = adjacency.shape[0]
    start = adjacency.sum() / 2 / (n * (n - 1) / 2)
    out = {}
    for k in cluster_range:
        low, high = start, start
        while count_at(graph, low, min_cluster_size, seed)[0] >= k and low > 1e-12:
            low /= 8
        while count_at(graph, high, min_cluster_size, seed)[0] <= k and high < 1e6:
            high *= 8
        # lower end: smallest gamma with count >= k; upper end: largest gamma with count <= k
        a, b = low, high
        while b > a * TOLERANCE:
            mid = np.sqrt(a * b)
            a, b = (mid, b) if count_at(graph, mid, min_cluster_size, seed)[0] < k else (a, mid)
        count_b, prelim = count_at(graph, b, min_cluster_size, seed)
        if count_b != k:
            continue
        c, d = b, high
        while d > c * TOLERANCE:
            mid = np.sqrt(c * d)
            c, d = (mid, d) if count_at(graph, mid, min_cluster_size, seed)[0] <= k else (c, mid)
        prelim = min(prelim, count_at(graph, c, min_cluster_size, seed)[1])
        if prelim >= remove_threshold:
            continue
        gammas = sorted(set(np.geomspace(b, c, N_GAMMA).tolist())) if c > b * (1 + 1e-9) else [b]
        state = {}
        for g in gammas:
            labels = [leiden(graph, g, int(rng.integers(2**31)), n_iterations) for _ in range(n_trials)]
            state[g] = (labels, *ic_of(labels))
        iterations = n_iterations
        while True:
            counts = {g: np.median([n_clusters(x, min_cluster_size) for x in state[g][0]]) for g in state}
            ranked = sorted([g for g in state if counts[g] == k] or list(state), key=lambda g: state[g][1])
            ranked = ranked[: (len(ranked) + 1) // 2]
            best = ranked[0]
            if (counts[best] == k and state[best][1] == 1.0) or iterations + n_iterations > max_iterations:
                break
            new = {}
            for g in ranked:
                labels = [
                    leiden(graph, g, int(rng.integers(2**31)), n_iterations, x.tolist()) for x in state[g][0]
                ]
                new[g] = (labels, *ic_of(labels))
            iterations += n_iterations
            unchanged = all(
                all(ecs(x, y) == 1.0 for x, y in zip(state[g][0], new[g][0], strict=True)) for g in ranked
            )
            state = new
            if unchanged and len(state) == 1:
                break
        counts = {g: np.median([n_clusters(x, min_cluster_size) for x in state[g][0]]) for g in state}
        best = min([g for g in state if counts[g] == k] or list(state), key=lambda g: state[g][1])
        labels, _, sim = state[best]
        boot = []
        for _ in range(n_bootstrap):
            draw = rng.integers(0, n_trials, n_trials)
            boot.append(1.0 / (sim[np.ix_(draw, draw)].mean()))
        representative = labels[int(np.argmax(sim.sum(axis=1)))]
        out[k] = (best, float(np.median(boot)), representative)
    return out
