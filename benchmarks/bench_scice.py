"""Benchmark of scspecies.tl.scice against a plain leidenalg reference (bench_scice_baseline.py).

Graphs: Gaussian-mixture kNN graphs (20k and 100k cells) and Baron human pancreas (normalize,
log1p, 2000 HVG, 50 PCs, 15-NN UMAP connectivities). Each run is a fresh subprocess; wall time
and peak resident memory of its whole process tree (workers included, sampled every 0.2 s) are
recorded, with the CPU time of the run (workers included; more robust than wall time on a shared
machine) and the results' agreement (consistent k, ARI of the labels per k).

Usage:
    python benchmarks/bench_scice.py                      # the default plan, -> results/scice.json
    python benchmarks/bench_scice.py --plan gmm20k:ours:2:10 gmm20k:baseline:2:4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("SCICE_BENCH_CACHE", "/tmp/scice_bench"))
BARON = (
    Path(os.environ.get("SCSPECIES_DATA_DIR", HERE.parents[1] / "shared" / "data"))
    / "baron_human_counts.h5ad"
)
N_JOBS = 2
DEFAULT_PLAN = [
    "baron:ours:2:10",
    "baron:baseline:2:10",
    "gmm20k:ours:2:10",
    "gmm20k:baseline:2:10",
    "gmm100k:ours:2:10",
    "gmm20k:per_run:0:0",
    "gmm100k:per_run:0:0",
]


def knn_connectivities(x: np.ndarray, n_neighbors: int = 15) -> sp.csr_matrix:
    """UMAP fuzzy-union connectivities of the exact kNN graph (what scanpy.pp.neighbors computes)."""
    from sklearn.neighbors import NearestNeighbors
    from umap.umap_ import fuzzy_simplicial_set

    dist, idx = NearestNeighbors(n_neighbors=n_neighbors).fit(x).kneighbors(x)
    graph, _, _ = fuzzy_simplicial_set(
        sp.csr_matrix((x.shape[0], 1)),
        n_neighbors,
        None,
        None,
        knn_indices=idx,
        knn_dists=dist.astype(np.float32),
    )
    return sp.csr_matrix(graph)


def gaussian_mixture(n_cells: int, n_components: int = 8, dim: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 1.2, (n_components, dim))
    truth = rng.integers(0, n_components, n_cells)
    return centers[truth] + rng.normal(size=(n_cells, dim)), truth


def baron_pca():
    import anndata as ad
    import scanpy as sc

    adata = ad.read_h5ad(BARON)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=2000, subset=True)
    sc.pp.pca(adata, n_comps=50, random_state=0)
    return adata.obsm["X_pca"], adata.obs["cell_ontology_class"].astype(str).to_numpy()


def load_graph(case: str) -> tuple[sp.csr_matrix, np.ndarray]:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{case}.npz"
    if not path.exists():
        x, truth = baron_pca() if case == "baron" else gaussian_mixture(int(case[3:-1]) * 1000)
        graph = knn_connectivities(np.ascontiguousarray(x, dtype=np.float32))
        np.savez(
            path, data=graph.data, indices=graph.indices, indptr=graph.indptr, shape=graph.shape, truth=truth
        )
    z = np.load(path, allow_pickle=True)
    graph = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
    return graph, z["truth"]


def tree_cpu() -> float:
    """CPU seconds of this process, its reaped children and its live descendants (e.g. loky workers)."""
    me = psutil.Process()
    own = me.cpu_times()
    total = own.user + own.system + own.children_user + own.children_system
    for child in me.children(recursive=True):
        try:
            times = child.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def leiden_per_run(case: str, n_runs: int = 3) -> dict:
    """CPU seconds of one 10-iteration CPM Leiden run: igraph (ours) vs leidenalg (baseline)."""
    from bench_scice_baseline import leiden, make_graph

    from scspecies.tl._scice_leiden import GraphPayload, run_batch

    graph, _ = load_graph(case)
    payload = GraphPayload.from_adjacency(graph)
    gamma = float(4 * graph.sum() / graph.shape[0] ** 2)
    ref = make_graph(graph)
    out = {"case": case, "method": "per_run", "n_cells": graph.shape[0], "gamma": gamma}
    start = time.process_time()
    ours = run_batch(payload, [(gamma, s, 10, None) for s in range(n_runs)], "CPM", 0.1)
    out["igraph_cpu_s"] = round((time.process_time() - start) / n_runs, 3)
    start = time.process_time()
    base = [leiden(ref, gamma, s, 10) for s in range(n_runs)]
    out["leidenalg_cpu_s"] = round((time.process_time() - start) / n_runs, 3)
    out["ratio"] = round(out["leidenalg_cpu_s"] / out["igraph_cpu_s"], 2)
    out["n_clusters"] = [int(x.max()) + 1 for x in ours], [int(x.max()) + 1 for x in base]
    return out


def run_one(case: str, method: str, k_min: int, k_max: int) -> dict:
    if method == "per_run":
        return leiden_per_run(case)
    graph, _ = load_graph(case)
    ks = list(range(k_min, k_max + 1))
    cpu_start = tree_cpu()
    start = time.perf_counter()
    if method == "ours":
        import anndata as ad

        import scspecies as scs

        adata = ad.AnnData(obs={"i": np.arange(graph.shape[0])})
        adata.obsp["connectivities"] = graph
        scs.tl.scice(adata, cluster_range=ks, n_trials=15, n_bootstrap=100, n_jobs=N_JOBS, progress_bar=False)
        res = adata.uns["scice"]
        found = {
            int(k): (float(g), float(ic), lab)
            for k, g, ic, lab in zip(
                res["n_cluster"], res["gamma"], res["ic"], res["best_labels"], strict=True
            )
        }
    else:
        from bench_scice_baseline import scice_reference

        found = scice_reference(graph, ks)
    wall = time.perf_counter() - start
    cpu = tree_cpu() - cpu_start
    np.savez(
        CACHE / f"labels_{case}_{method}_{k_min}_{k_max}.npz", **{str(k): v[2] for k, v in found.items()}
    )
    return {
        "case": case,
        "method": method,
        "cluster_range": [k_min, k_max],
        "n_cells": graph.shape[0],
        "n_edges": int(sp.triu(graph, 1).nnz),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "k": sorted(found),
        "gamma": {k: found[k][0] for k in sorted(found)},
        "ic": {k: round(found[k][1], 5) for k in sorted(found)},
        "consistent_k": [k for k in sorted(found) if found[k][1] <= 1.005],
    }


def measured(spec: str) -> dict:
    """Run one spec in a subprocess, sampling the RSS of its process tree."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", spec], stdout=subprocess.PIPE, text=True, cwd=HERE
    )
    peak = 0
    stop = threading.Event()

    def sample():
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    stop.set()
    thread.join()
    record = json.loads(out.strip().splitlines()[-1])
    record["peak_rss_mb"] = round(peak / 2**20, 1)
    return record


def compare(results: list[dict]) -> list[dict]:
    from sklearn.metrics import adjusted_rand_score

    rows = []
    for ours in (r for r in results if r["method"] == "ours" and "k" in r):
        for base in (r for r in results if r["method"] == "baseline"):
            if base["case"] != ours["case"] or base["cluster_range"] != ours["cluster_range"]:
                continue
            tag = f"{ours['case']}_{{}}_{ours['cluster_range'][0]}_{ours['cluster_range'][1]}.npz"
            a, b = (
                np.load(CACHE / f"labels_{tag.format('ours')}"),
                np.load(CACHE / f"labels_{tag.format('baseline')}"),
            )
            common = sorted(set(a.files) & set(b.files), key=int)
            rows.append(
                {
                    "case": ours["case"],
                    "cluster_range": ours["cluster_range"],
                    "speedup_wall": round(base["wall_s"] / ours["wall_s"], 2),
                    "speedup_cpu": round(base["cpu_s"] / ours["cpu_s"], 2),
                    "consistent_k_ours": ours["consistent_k"],
                    "consistent_k_baseline": base["consistent_k"],
                    "ari_per_k": {k: round(adjusted_rand_score(a[k], b[k]), 4) for k in common},
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", nargs="+", default=DEFAULT_PLAN, help="case:method:kmin:kmax entries")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(HERE / "results" / "scice.json"))
    args = parser.parse_args()
    if args.child:
        case, method, k_min, k_max = args.child.split(":")
        print(json.dumps(run_one(case, method, int(k_min), int(k_max)), default=float), flush=True)
        return
    path = Path(args.output)
    previous = json.loads(path.read_text())["runs"] if path.exists() else []
    results = [
        r
        for r in previous
        if f"{r['case']}:{r['method']}:{r['cluster_range'][0]}:{r['cluster_range'][1]}" not in args.plan
    ]
    for spec in args.plan:
        record = measured(spec)
        print(json.dumps(record), flush=True)
        results.append(record)
        summary = {
            "description": "scspecies.tl.scice (igraph, n_jobs=2) vs plain leidenalg reference (serial); "
            "n_trials=15, n_bootstrap=100, n_iterations=10, max_iterations=150, beta=0.1",
            "cpu_count": os.cpu_count(),
            "runs": results,
            "comparisons": compare(results),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
