"""Scaling of every stage of the pipeline with the number of cells (issue 13).

The Baron pancreas pair (mouse context, human target) is reduced to 4,000 highly variable genes per
species on the original cells and resampled to ``N`` cells per species (``_scale_data.py``: cells
drawn with replacement, counts binomially thinned with p = 0.8, labels and donors kept, sparse CSR).
Every size runs in its own Python process, which times each stage (wall seconds, seconds per 1,000
cells of one species) and samples its peak resident set size (RSS of the process, data included, and
the RSS before the stage), with a matrix-product speed probe before and after.

Stages: ``translate_genes``, ``homology_neighbors`` (target on context, default ``method="auto"``),
``context_epoch`` / ``target_epoch`` (setup and one epoch each; the target's epoch includes its first
partner choice), ``transfer_labels``, ``homologous_lfc``, ``celltype_similarity``, ``similar_cells``
(one target cell against every context cell), ``neighbors`` (the joint latent of both species and its
neighbour graph, :func:`xspecies.pp.latent_neighbors` with ``method="auto"``), ``scice`` (narrow cluster
range, few trials, serial) and ``save_load`` (both models with their AnnData). Whatever compiles with numba (pynndescent, umap) is first called once on a
small input: that first call is reported as ``<stage>_first_call``, so that the stage itself is the
steady state. ``numba_cache`` records whether numba's on-disk cache is in use (pynndescent and umap
compile most functions with ``cache=True``; the first process on a machine pays the compilation, the
next ones load it, unless the cache directory is not writable).

``--dask N`` also measures ``tl.scice`` on the neighbour graph of N resampled human cells (30 principal
components) with 1 and 2 workers of a Dask LocalCluster (``joblib.parallel_config(backend="dask")``).

``--model-cells M`` trains the models (one epoch each) on the first M cells per species and loads them
onto all N cells, so that the analyses run on N cells where training on N cells takes too long.

``--threads N`` gives each worker N torch threads and as many numba and OpenMP threads, idle OpenMP
threads asleep (``OMP_WAIT_POLICY=PASSIVE``); use ``--threads 1`` on a shared machine.

Usage::

    python benchmarks/bench_scale.py --sizes 10000 50000 200000
    python benchmarks/bench_scale.py --sizes 1000000 --stages translate_genes homology_neighbors
    python benchmarks/bench_scale.py --sizes --dask 50000

Results are merged into ``benchmarks/results/scale.json`` (one entry per size; a rerun of a size
replaces its stages).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _scale_data import BATCH, LABELS, resampled_pair  # noqa: E402
from bench_model import PeakMemory, gemm_rate  # noqa: E402

DATA = Path(os.environ.get("XSPECIES_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
RESULTS = HERE / "results" / "scale.json"
STAGES = (
    "translate_genes",
    "homology_neighbors",
    "context_epoch",
    "target_epoch",
    "transfer_labels",
    "homologous_lfc",
    "celltype_similarity",
    "similar_cells",
    "neighbors",
    "scice",
    "save_load",
)
#: what each stage needs from the earlier ones
NEEDS = {
    "homology_neighbors": ("translate_genes",),
    "target_epoch": ("homology_neighbors", "context_epoch"),
    "transfer_labels": ("target_epoch",),
    "homologous_lfc": ("target_epoch",),
    "celltype_similarity": ("target_epoch",),
    "similar_cells": ("target_epoch",),
    "neighbors": ("target_epoch",),
    "scice": ("neighbors",),
    "save_load": ("target_epoch",),
}
SCICE = {"cluster_range": [6], "n_trials": 4, "n_bootstrap": 20, "max_iterations": 20, "progress_bar": False}
TARGETS = {"growth_10k_to_200k_max": 1.3, "rss_200k_max_gib": 8.0}


def numba_cache_state() -> dict:
    """Where numba caches compiled functions across processes, and whether that place is writable."""
    import numba
    import pynndescent

    where = numba.config.CACHE_DIR or str(Path(pynndescent.__file__).parent / "__pycache__")
    return {"numba": numba.__version__, "cache_dir": where, "writable": os.access(where, os.W_OK)}


class Runner:
    """Times the stages of one size in this process; its records are written to ``out`` after each stage."""

    def __init__(self, size: int, stages: list[str], out: Path, header: dict):
        self.size, self.stages, self.records, self.state = size, stages, {}, {}
        self.out, self.header = out, header

    def write(self, **extra) -> None:
        self.out.write_text(json.dumps({**self.header, **extra, "stages": self.records}))

    def timed(self, name: str, func, cells: int | None = None) -> None:
        missing = [need for need in NEEDS.get(name, ()) if need not in self.state]
        if missing:
            self.records[name] = {"status": "skipped", "reason": f"needs {', '.join(missing)}"}
            return
        import psutil

        logging.warning("%d cells: %s ...", self.size, name)
        rss_before = psutil.Process().memory_info().rss / 2**30
        try:
            with PeakMemory() as mem:
                start, cpu = time.perf_counter(), time.process_time()
                extra = func() or {}
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        except Exception as error:  # recorded with its reason: the other stages still run
            logging.exception("stage %s failed", name)
            self.records[name] = {"status": "failed", "reason": f"{type(error).__name__}: {error}"[:500]}
            return
        self.state[name] = True
        cells = cells or self.size
        self.records[name] = {
            "status": "ok",
            "seconds": seconds,
            "seconds_per_1k_cells": 1000 * seconds / cells,
            "cpu_seconds": cpu,
            "cpu_seconds_per_1k_cells": 1000 * cpu / cells,
            "peak_rss_gib": mem.peak,
            "rss_before_gib": rss_before,
            **extra,
        }
        logging.warning("%d cells: %s %.1f s, peak RSS %.2f GiB", self.size, name, seconds, mem.peak)
        self.write()


def first_call_pynndescent() -> None:
    """pynndescent's numba functions compiled (or loaded from the cache) on a small input."""
    import pynndescent

    x = np.random.default_rng(0).normal(size=(3000, 20)).astype(np.float32)
    index = pynndescent.NNDescent(x, n_neighbors=30, random_state=0, low_memory=True)
    index.query(x[:100], k=10)


def first_call_neighbors() -> None:
    """The latent neighbour graph (pynndescent's graph and umap's connectivities) on a small input."""
    import anndata as ad

    import xspecies as xs

    adata = ad.AnnData(np.zeros((6000, 1), dtype=np.float32))
    adata.obsm["X"] = np.random.default_rng(0).normal(size=(6000, 10)).astype(np.float32)
    xs.pp.latent_neighbors(adata, use_rep="X", method="nndescent")


def run_size(size: int, stages: list[str], model_cells: int | None, out: Path, threads: int | None) -> None:
    """Every requested stage on ``size`` resampled cells per species, in this process."""
    import anndata as ad
    import scvi
    import torch

    import xspecies as xs

    scvi.settings.seed = 0
    torch.set_num_threads(threads or max(1, os.cpu_count() or 1))
    probe_before = gemm_rate()
    info = {
        "n_cells_per_species": size,
        "gflops_before": probe_before,
        "torch_threads": torch.get_num_threads(),
        "numba_threads": int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count() or 1)),
    }
    run = Runner(size, stages, out, info)
    pair = {}

    def load():
        pair["mouse"], pair["human"] = resampled_pair(DATA, size)
        mouse, human = pair["mouse"], pair["human"]
        return {
            "n_vars": [mouse.n_vars, human.n_vars],
            "nnz_per_cell": [m.X.nnz / m.n_obs for m in (mouse, human)],
        }

    run.timed("resample", load)
    run.state["resample"] = True
    mouse, human = pair["mouse"], pair["human"]
    models: dict = {}
    if "translate_genes" in stages:
        run.timed("translate_genes", lambda: xs.pp.translate_genes(human, "human", "mouse"))
    if "homology_neighbors" in stages:
        run.timed("homology_neighbors_first_call", first_call_pynndescent, cells=3000)

        def homology():
            xs.pp.homology_neighbors(human, mouse, labels_key=LABELS)
            return {"method": human.uns["homology"]["params"]["method"]}

        run.timed("homology_neighbors", homology)
    train = {"max_epochs": 1, "enable_progress_bar": False}
    # with model_cells < size, one epoch on the first model_cells cells, then the model is loaded
    # onto all cells (scvi-tools' load with a new AnnData): the analyses still run on every cell
    sub = model_cells is not None and model_cells < size

    def on_all_cells(name: str, model_cls, adata):
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
            models[name].save(tmp, overwrite=True)
            models[name] = model_cls.load(tmp, adata=adata)

    if "context_epoch" in stages:

        def context_epoch():
            data = mouse[:model_cells].copy() if sub else mouse
            xs.model.ContextModel.setup_anndata(data, batch_key=BATCH, labels_key=LABELS)
            models["context"] = xs.model.ContextModel(data)
            models["context"].train(**train)
            if sub:
                on_all_cells("context", xs.model.ContextModel, mouse)
            return {"trained_on_cells": model_cells} if sub else {}

        run.timed("context_epoch", context_epoch, cells=model_cells if sub else None)
    if "target_epoch" in stages:

        def target_epoch():
            data = human[:model_cells].copy() if sub else human
            xs.model.TargetModel.setup_anndata(data, batch_key=BATCH)
            models["target"] = xs.model.TargetModel.from_context(models["context"], data)
            models["target"].train(**train)
            if sub:
                on_all_cells("target", xs.model.TargetModel, human)
            return {"trained_on_cells": model_cells} if sub else {}

        run.timed("target_epoch", target_epoch, cells=model_cells if sub else None)
    target, context = models.get("target"), models.get("context")
    if "transfer_labels" in stages:
        run.timed(
            "transfer_labels",
            lambda: xs.tl.transfer_labels(target, context, labels_key=LABELS, progress_bar=False),
        )
    pair_keys = {"target_labels_key": LABELS, "context_labels_key": LABELS, "progress_bar": False}
    if "homologous_lfc" in stages:
        run.timed(
            "homologous_lfc", lambda: {"n_rows": len(xs.tl.homologous_lfc(target, context, **pair_keys))}
        )
    if "celltype_similarity" in stages:
        run.timed(
            "celltype_similarity",
            lambda: {"shape": list(xs.tl.celltype_similarity(target, context, **pair_keys).shape)},
        )
    if "similar_cells" in stages:
        run.timed(
            "similar_cells",
            lambda: {"n_rows": len(xs.tl.similar_cells(target, context, index=0, labels_key=LABELS))},
        )
    joint = {}
    if "neighbors" in stages or "scice" in stages:
        run.timed("neighbors_first_call", first_call_neighbors, cells=6000)

        def neighbors():
            start = time.process_time()
            z = np.concatenate([context.get_latent_representation(), target.get_latent_representation()])
            joint["adata"] = ad.AnnData(
                obsm={"X_joint": z}, obs={"species": np.repeat(["mouse", "human"], size)}
            )
            latent = time.process_time() - start
            # scanpy's default pynndescent path fails on current releases on large inputs (a csr_array
            # without getnnz) and its transformer="sklearn" is a brute-force search: docs/large_datasets.md
            xs.pp.latent_neighbors(joint["adata"], use_rep="X_joint", n_neighbors=15)
            return {
                "latent_cpu_seconds": latent,
                "graph_cpu_seconds": time.process_time() - start - latent,
                "search": joint["adata"].uns["neighbors"]["params"]["search"],
            }

        run.timed("neighbors", neighbors, cells=size)
    if "scice" in stages:

        def scice():
            xs.tl.scice(joint["adata"], random_state=0, **SCICE)
            info = joint["adata"].uns["scice"]
            return {"params": SCICE, "n_cluster": np.asarray(info["n_cluster"]).tolist()}

        run.timed("scice", scice)
    if "save_load" in stages:

        def save_load():
            with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
                for name, model in models.items():
                    model.save(f"{tmp}/{name}", save_anndata=True)
                loaded = xs.model.ContextModel.load(f"{tmp}/context")
                xs.model.TargetModel.load(f"{tmp}/target")
                return {"loaded_n_obs": loaded.adata.n_obs}

        run.timed("save_load", save_load)
    run.write(gflops_after=gemm_rate())


def run_dask(size: int) -> dict:
    """tl.scice with 1 and 2 workers of a Dask LocalCluster on the graph of ``size`` resampled human cells.

    The graph: log1p of the normalised counts, 30 principal components, scanpy's 15-neighbour graph
    (exact search and Gaussian kernel: no numba compilation in this measurement).
    """
    import joblib
    import scanpy as sc
    from dask.distributed import Client, LocalCluster

    import xspecies as xs

    _, adata = resampled_pair(DATA, size)
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=30, random_state=0)
    sc.pp.neighbors(adata, n_neighbors=15, method="gauss", transformer="sklearn", random_state=0)
    # manual mode: a fixed number of Leiden runs (8 trials of one resolution), no search
    params = {"resolution": [1.0], "objective_function": "modularity", "n_trials": 8, "n_bootstrap": 20}
    params["progress_bar"] = False
    record = {"n_cells_graph": adata.n_obs, "params": params, "gflops_before": gemm_rate(), "seconds": {}}
    labels = {}
    for workers in (1, 2):
        with (
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) as cluster,
            Client(cluster),
        ):
            with joblib.parallel_config(backend="dask"):
                start = time.perf_counter()
                xs.tl.scice(adata, random_state=0, n_jobs=workers, **params)
                record["seconds"][str(workers)] = time.perf_counter() - start
        labels[workers] = adata.obs["scice"].to_numpy().copy()
        logging.warning("scice on %d Dask workers: %.1f s", workers, record["seconds"][str(workers)])
    record["same_labels"] = bool(np.array_equal(labels[1], labels[2]))
    record["speedup_1_to_2_workers"] = record["seconds"]["1"] / record["seconds"]["2"]
    record["gflops_after"] = gemm_rate()
    return record


def growth(sizes: dict) -> dict:
    """Seconds (wall and CPU) per cell at 200k over 10k, per stage (the target is at most 1.3)."""
    small, large = sizes.get("10000", {}).get("stages", {}), sizes.get("200000", {}).get("stages", {})
    ratios = {}
    for name, record in small.items():
        other = large.get(name, {})
        if record.get("status") != "ok" or other.get("status") != "ok":
            continue
        ratios[name] = {
            kind: other[f"{kind}_per_1k_cells"] / record[f"{kind}_per_1k_cells"]
            for kind in ("seconds", "cpu_seconds")
            if f"{kind}_per_1k_cells" in record and f"{kind}_per_1k_cells" in other
        }
    return ratios


def worker_environment(threads: int | None) -> dict:
    """Environment of a worker process: with ``threads``, numba and OpenMP get as many threads, idle ones asleep.

    numba (pynndescent, umap) otherwise starts a thread per core, and an OpenMP worker that waits for
    work spins: on a machine shared with other processes such a thread took a core of its own and made
    the training of the same process several times slower in CPU seconds.
    """
    env = dict(os.environ)
    if threads is not None:
        env.update(NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 50_000, 200_000, 1_000_000])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--dask", type=int, default=None, help="cells of the graph of the Dask measurement")
    parser.add_argument(
        "--model-cells",
        type=int,
        default=None,
        help="train the models (one epoch) on this many cells per species and load them onto all cells",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch, numba and OpenMP threads of each worker (default: all cores; 1 on a shared machine)",
    )
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--note", default=None, help="note stored with the sizes run")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON file the results are merged into")
    args = parser.parse_args()
    logging.basicConfig(format="%(asctime)s %(message)s")
    warnings.filterwarnings("ignore")
    if args.worker is not None:
        run_size(args.worker, args.stages, args.model_cells, Path(args.out), args.threads)
        return

    for size in args.sizes:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", str(size), "--stages", *args.stages, "--out", out.name]
                + ([] if args.model_cells is None else ["--model-cells", str(args.model_cells)])
                + ([] if args.threads is None else ["--threads", str(args.threads)]),
                env=worker_environment(args.threads),
            )
            text = Path(out.name).read_text()
        results = json.loads(args.results.read_text()) if args.results.exists() else {"sizes": {}}
        if proc.returncode or not text:
            entry = results["sizes"].setdefault(str(size), {"stages": {}})
            for name in args.stages:
                entry["stages"][name] = {
                    "status": "failed",
                    "reason": f"worker process exited with {proc.returncode}",
                }
        else:
            result = json.loads(text)
            entry = results["sizes"].setdefault(str(size), {"stages": {}})
            entry["stages"].update(result.pop("stages"))
            entry.update(result)
            if args.note:
                entry["note"] = args.note
        results["growth_10k_to_200k"] = growth(results["sizes"])
        args.results.write_text(json.dumps(results, indent=1))
    results = json.loads(args.results.read_text()) if args.results.exists() else {"sizes": {}}
    if args.dask:
        results["dask_scice"] = run_dask(args.dask)
    results.update(
        {
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
            "numba_cache": numba_cache_state(),
            "targets": TARGETS,
        }
    )
    args.results.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
