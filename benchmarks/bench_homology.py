"""Benchmark of the data-level homology neighbour search (xspecies.pp.homology_neighbors).

1. Label transfer on the full Baron et al. pancreas pair (mouse -> human and human -> mouse): balanced
   accuracy of the majority vote over the cell types shared by both species, for several preparations.
2. Wall time and peak memory of homology_neighbors at 2k, 20k and 100k cells per side: synthetic scale-up
   of the Baron cells (cells drawn with replacement, counts binomially thinned with p = 0.8).

Run: ``python benchmarks/bench_homology.py [--data-dir /work/shared/data] [--sizes 2000 20000 100000]``.
Writes ``benchmarks/results/homology.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time
import tracemalloc
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
from scipy import sparse
from sklearn.metrics import balanced_accuracy_score

import xspecies as xs

LABELS = "cell_ontology_class"
OUT = Path(__file__).resolve().parent / "results" / "homology.json"
SPECIES = {"human": "baron_human_counts.h5ad", "mouse": "baron_mouse_counts.h5ad"}


def load(data_dir: Path) -> dict[str, ad.AnnData]:
    return {s: ad.read_h5ad(data_dir / f) for s, f in SPECIES.items()}


def balanced_accuracy(target: ad.AnnData, context: ad.AnnData) -> float:
    shared = target.obs[LABELS].isin(context.obs[LABELS].unique())
    truth = target.obs.loc[shared, LABELS].astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(balanced_accuracy_score(truth, target.obs.loc[shared, f"homology_{LABELS}"].astype(str)))


def accuracy(data: dict[str, ad.AnnData]) -> list[dict]:
    settings = [
        ("all genes", {}, "one2one", "exact"),
        ("prepared (rare types removed)", {"n_top_genes": None}, "one2one", "exact"),
        ("prepared + 2000 HVG", {"n_top_genes": 2000}, "one2one", "exact"),
        ("prepared + 2000 HVG", {"n_top_genes": 2000}, "best", "exact"),
        ("prepared + 4000 HVG", {"n_top_genes": 4000}, "one2one", "exact"),
        ("all genes", {}, "one2one", "pynndescent"),
    ]
    rows = []
    for name, prep, policy, method in settings:
        ready = {s: a.copy() for s, a in data.items()}
        if prep:
            for a in ready.values():
                xs.pp.prepare(a, batch_key="donor", labels_key=LABELS, **prep)
        for target_sp, context_sp in (("human", "mouse"), ("mouse", "human")):
            target, context = ready[target_sp], ready[context_sp]
            xs.pp.translate_genes(target, target_sp, context_sp, policy=policy)
            start = time.perf_counter()
            xs.pp.homology_neighbors(
                target, context, labels_key=LABELS, n_neighbors=250, n_vote=25, method=method
            )
            row = {
                "setting": name,
                "policy": policy,
                "method": method,
                "context": context_sp,
                "target": target_sp,
                "n_target": target.n_obs,
                "n_context": context.n_obs,
                "n_genes": len(target.uns["homology"]["target_genes"]),
                "balanced_accuracy": round(balanced_accuracy(target, context), 4),
                "seconds": round(time.perf_counter() - start, 2),
            }
            print(row, flush=True)
            rows.append(row)
    return rows


def scale_up(adata: ad.AnnData, n: int, seed: int) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, adata.n_obs, size=n)
    X = sparse.csr_matrix(adata.X[rows])
    X.data = rng.binomial(X.data.astype(np.int64), 0.8).astype(np.float32)
    X.eliminate_zeros()
    out = ad.AnnData(X, obs=adata.obs.iloc[rows][[LABELS]].reset_index(drop=True), var=adata.var[[]])
    out.obs_names = [f"cell{i}" for i in range(n)]
    return out


def _timed_run(data_dir: str, n: int, method: str, queue) -> None:
    data = load(Path(data_dir))
    target, context = scale_up(data["human"], n, 1), scale_up(data["mouse"], n, 2)
    xs.pp.translate_genes(target, "human", "mouse", policy="one2one")
    if method == "pynndescent":  # compile pynndescent's numba code before timing
        start = time.perf_counter()
        xs.pp.homology_neighbors(target[:300].copy(), context[:300], n_neighbors=50, method=method)
        compile_s = time.perf_counter() - start
    else:
        compile_s = 0.0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    start = time.perf_counter()
    xs.pp.homology_neighbors(target, context, labels_key=LABELS, n_neighbors=250, n_vote=25, method=method)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    queue.put(
        {
            "n_target": n,
            "n_context": n,
            "method": method,
            "n_genes": len(target.uns["homology"]["target_genes"]),
            "seconds": round(seconds, 1),
            "warmup_compile_seconds": round(compile_s, 1),
            "peak_traced_mb": round(peak / 2**20, 1),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "max_rss_before_mb": round(rss_before, 1),
            "label_agreement_with_source_label": round(
                float(
                    (target.obs[f"homology_{LABELS}"].astype(str) == target.obs[LABELS].astype(str)).mean()
                ),
                4,
            ),
        }
    )


def timing(data_dir: Path, sizes: list[int], methods: list[str]) -> list[dict]:
    ctx = mp.get_context("spawn")
    rows = []
    for n in sizes:
        for method in methods:
            if method == "exact" and n > 20_000:
                continue  # quadratic in cells: hours at 100k x 100k cells on all genes
            queue = ctx.Queue()
            proc = ctx.Process(target=_timed_run, args=(str(data_dir), n, method, queue))
            proc.start()
            row = queue.get()
            proc.join()
            print(row, flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000])
    parser.add_argument("--methods", nargs="+", default=["exact", "pynndescent"])
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    result = {
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor(),
            "cpus": mp.cpu_count(),
        },
        "params": {"n_neighbors": 250, "n_vote": 25, "metric": "cosine", "counts": "log1p"},
    }
    if not args.skip_accuracy:
        result["label_transfer"] = accuracy(load(args.data_dir))
    result["timing"] = timing(args.data_dir, args.sizes, args.methods)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(OUT.read_text()) if OUT.exists() else {}
    if args.skip_accuracy and "label_transfer" in previous:
        result["label_transfer"] = previous["label_transfer"]
    done = {(r["n_target"], r["method"]) for r in result["timing"]}
    kept = [r for r in previous.get("timing", []) if (r["n_target"], r["method"]) not in done]
    result["timing"] = sorted(kept + result["timing"], key=lambda r: (r["n_target"], r["method"]))
    OUT.write_text(json.dumps(result, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
