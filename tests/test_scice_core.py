import numpy as np
import pytest
import scipy.sparse as sp

from xspecies.tl._scice._core import (
    bootstrap_ic,
    canonical_labels,
    effective_cluster_count,
    inconsistency,
    labeling_ic,
    merge_small_clusters,
    partition_similarity,
    representative_labeling,
    similarity_matrix,
)


def brute_force_ecs(a, b):
    """Element-centric similarity from its definition: 1 - L1/2 between per-cell cluster-affinity vectors."""
    n = a.size
    total = 0.0
    for i in range(n):
        pa = (a == a[i]) / np.sum(a == a[i])
        pb = (b == b[i]) / np.sum(b == b[i])
        total += 1.0 - 0.5 * np.abs(pa - pb).sum()
    return total / n


@pytest.mark.parametrize("seed", range(6))
def test_closed_form_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    a = rng.integers(0, rng.integers(1, 10), n)
    b = rng.integers(0, rng.integers(1, 10), n)
    assert partition_similarity(a, b) == pytest.approx(brute_force_ecs(a, b), abs=1e-12)


def test_similarity_sparse_contingency_path():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 60, 100)  # 60 x 60 table > 4 n + 1024 cells: np.unique path
    b = rng.integers(0, 60, 100)
    assert partition_similarity(a, b) == pytest.approx(brute_force_ecs(a, b), abs=1e-12)
    big = rng.integers(0, 3000, 200)
    assert partition_similarity(big, big[::-1]) == pytest.approx(brute_force_ecs(big, big[::-1]), abs=1e-12)


def test_similarity_is_label_invariant_and_symmetric():
    a = np.array([0, 0, 1, 1, 2, 2, 2])
    b = np.array([3, 3, 3, 1, 1, 0, 0])
    assert partition_similarity(a, 5 - a) == 1.0
    assert partition_similarity(a, b) == pytest.approx(partition_similarity(b, a))
    assert 0 < partition_similarity(a, b) < 1
    with pytest.raises(ValueError, match="equal length"):
        partition_similarity(a, b[:3])


def test_ic_is_one_for_identical_labelings_and_above_otherwise():
    base = np.repeat(np.arange(4), 10)
    same = np.stack([base, (base + 1) % 4, base[::-1] * 0 + base])  # relabelled copies
    assert labeling_ic(same)[0] == 1.0
    other = base.copy()
    other[:5] = 3
    ic, unique, inverse, sim = labeling_ic(np.stack([base, base, other]))
    assert ic > 1.0
    assert unique.shape[0] == 2
    assert sorted(np.bincount(inverse).tolist()) == [1, 2]
    # closed form with p = (2/3, 1/3)
    s = partition_similarity(base, other)
    p = np.bincount(inverse) / 3
    assert ic == pytest.approx(1.0 / (p @ np.array([[1, s], [s, 1]]) @ p))


def test_bootstrap_reuses_similarity_and_matches_direct_ic():
    rng = np.random.default_rng(1)
    labelings = np.stack([rng.integers(0, 3, 50) for _ in range(4)] + [np.zeros(50, dtype=int)] * 4)
    ic, unique, inverse, sim = labeling_ic(labelings)
    boot = bootstrap_ic(inverse, sim, 30, np.random.default_rng(0))
    assert boot.shape == (30,)
    draws = np.random.default_rng(0).integers(0, inverse.size, size=(30, inverse.size))
    direct = [labeling_ic(labelings[d])[0] for d in draws]
    np.testing.assert_allclose(boot, direct, rtol=1e-10)
    assert float(inconsistency(np.bincount(inverse), sim)) == pytest.approx(ic)


def test_representative_and_canonical():
    assert canonical_labels(np.array([7, 7, 3, 9, 3])).tolist() == [0, 0, 1, 2, 1]
    unique = np.array([[0, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1]])
    chosen = representative_labeling(unique, np.array([0, 1, 2]), similarity_matrix(unique))
    assert chosen.tolist() == [0, 0, 1, 1]


def test_effective_count_and_merge_small_clusters():
    # path 0-1-2-3-4-5 plus isolated vertex 6
    edges = [(0, 1, 1.0), (1, 2, 1.0), (2, 3, 0.2), (3, 4, 1.0), (4, 5, 1.0)]
    rows, cols, w = zip(*edges, strict=True)
    adj = sp.coo_matrix((w, (rows, cols)), shape=(7, 7))
    adj = (adj + adj.T).tocsr()
    labels = np.array([0, 0, 1, 2, 2, 2, 3])  # cluster 1 (vertex 2) and 3 (isolated vertex 6) are small
    assert effective_cluster_count(labels, 2) == 2
    merged = merge_small_clusters(labels, adj, 2)
    assert merged[2] == merged[0]  # joined the neighbour with most edge weight (1.0 vs 0.2)
    assert merged[6] not in merged[:6]  # no edges: stays on its own
    assert merged.tolist() == [0, 0, 0, 1, 1, 1, 2]  # numbered by decreasing size (ties: first seen)


def test_graph_payload_keeps_each_undirected_edge_once_and_seeds_reproduce():
    from xspecies.tl._scice._leiden import GraphPayload, LeidenRunner

    rng = np.random.default_rng(0)
    upper = sp.triu(sp.random(60, 60, density=0.2, random_state=0), k=1)
    adj = (upper + upper.T).tocsr()
    payload = GraphPayload.from_adjacency(adj)
    assert payload.edges.shape[0] == upper.nnz
    assert np.all(payload.edges[:, 0] <= payload.edges[:, 1])
    assert payload.weights.sum() == pytest.approx(adj.sum() / 2)
    graph = payload.graph()
    assert graph.ecount() == upper.nnz and not graph.is_directed()
    runner = LeidenRunner(payload, "CPM", 0.1, 1)
    seeds = rng.integers(0, 2**31, 3).tolist()
    jobs = [(0.05, s, 3, None) for s in seeds]
    first, again = runner.run(jobs), runner.run(jobs)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


def test_refinement_stops_once_every_survivor_reproduces_its_labels():
    from xspecies.tl._scice._leiden import GraphPayload, LeidenRunner
    from xspecies.tl._scice._search import TargetOptimizer

    # two 6-cliques and a vertex tied to both: cold runs disagree on it, warm starts keep it
    adj = np.zeros((13, 13))
    adj[:6, :6] = adj[6:12, 6:12] = 1
    adj[12, [0, 6]] = adj[[0, 6], 12] = 1
    np.fill_diagonal(adj, 0)
    runner = LeidenRunner(GraphPayload.from_adjacency(sp.csr_matrix(adj)), "CPM", 0.01, 1)
    optimizer = TargetOptimizer(runner, 0, 30, 5, 50, 1.15, 1)
    result = optimizer.optimize(2, (0.05, 0.12), 1.0)
    assert result.status == "kept"
    assert result.best.ic > 1.0  # not stopped by a perfect IC
    assert result.n_iterations == 10  # grid + one refinement round, far below max_iterations


def test_refinement_stops_when_the_ic_stops_improving():
    from xspecies.tl._scice._search import TargetOptimizer

    # two 2-cluster labelings of 12 cells: every round gives 1 in 3 trials the first one, on other
    # trials each time, so the labels change from round to round while the IC stays the same
    first, second = np.repeat([0, 1], 6), np.repeat([0, 1, 0], 4)

    class Rotating:
        calls = 0

        def run(self, jobs):
            Rotating.calls += 1
            return [first if (i + Rotating.calls) % 3 == 0 else second for i in range(len(jobs))]

    optimizer = TargetOptimizer(Rotating(), 0, 15, 10, 150, 1.15, 1)
    result = optimizer.optimize(2, (0.1, 0.2), 1.0)
    assert result.status == "kept" and result.best.ic > 1.0
    assert result.n_iterations == 30  # grid + two rounds that did not lower the IC, not 150
    assert Rotating.calls == 3
    assert sorted({row[0] for row in result.rounds}) == [0, 1, 2]  # every evaluated round is reported
