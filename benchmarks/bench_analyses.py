"""Validate the cross-species analyses on the full Baron pancreas pair (mouse context, human target).

Setup: cell types with fewer than 20 cells dropped in each species (as scSpecies' preprocessing),
4000 HVGs per species (seurat_v3 on counts), embedded human -> mouse orthologs, data-level neighbour
search, ContextModel and TargetModel trained 40 + 40 epochs on CPU.

Figures, per seed (models and sampling):
- per shared cell type, the Spearman correlation between the model LFC (tl.homologous_lfc, defaults)
  and the data-level LFC (tl.data_lfc) over the homologous genes, in total and for the type-specific
  parts (each gene's LFC minus its mean over the types), and the same for the permutation null
  (lfc_rand); done when, on every seed, the median total is >= 0.75 and the median type-specific
  correlation is at least 0.15 above that of the null;
- the share of target types whose best context match in tl.celltype_similarity (defaults) is the
  same type; done when >= 6 of the 7 shared types;
- wall time of each analysis function.

Writes benchmarks/results/analyses.json; with --figures DIR, also the figures of xspecies.pl as PNGs.

Usage: python benchmarks/bench_analyses.py [--data /work/shared/data] [--seeds 0 1 2] [--figures /tmp/figs]
       [--models DIR]  (trained models saved to DIR/seed<N>, and loaded from there on the next run)
       python benchmarks/bench_analyses.py --merge a.json b.json  (one file from the runs of several)
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scvi
import torch
from scipy.stats import spearmanr

import xspecies as xs
from xspecies.model import ContextModel, TargetModel

LABELS = "cell_ontology_class"
RESULTS = Path(__file__).resolve().parent / "results" / "analyses.json"


def prepare(path: Path, n_hvg: int, min_type_size: int) -> ad.AnnData:
    adata = ad.read_h5ad(path)
    sizes = adata.obs[LABELS].value_counts()
    adata = adata[adata.obs[LABELS].isin(sizes[sizes >= min_type_size].index)].copy()
    adata.obs[LABELS] = adata.obs[LABELS].astype(str).astype("category")
    sc.pp.filter_genes(adata, min_cells=3)
    sc.pp.highly_variable_genes(adata, n_top_genes=n_hvg, flavor="seurat_v3", subset=True)
    return adata


def write(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "setup"}, indent=2), flush=True)


def timed(store: dict, name: str, func, *args, **kwargs):
    start = time.perf_counter()
    out = func(*args, **kwargs)
    store[name] = round(time.perf_counter() - start, 2)
    print(f"{name}: {store[name]:.1f} s", flush=True)
    return out


def _spearman_per_type(merged: pd.DataFrame, model: str, data: str) -> dict[str, float]:
    return {
        str(t): float(spearmanr(g[model], g[data]).statistic)
        for t, g in merged.groupby("cell_type", observed=True)
    }


def lfc_agreement(lfc: pd.DataFrame, observed: pd.DataFrame) -> dict:
    """Spearman correlations of model and permuted-null LFCs with the data LFC, total and type-specific.

    The type-specific part of a gene's LFC is its LFC minus its mean over the shared types (for model,
    null and data alike, over the types where the data LFC is defined), so that each gene's species-wide
    offset, which even the permuted-label null captures, does not count.
    """
    merged = lfc.merge(
        observed, on=["cell_type", "gene_target", "gene_context"], suffixes=("_model", "_data")
    )
    merged = merged.dropna(subset=["lfc_data"])  # genes detected in neither species for the type
    for column in ("lfc_model", "lfc_rand", "lfc_data"):
        merged[f"{column}_specific"] = merged[column] - merged.groupby(["gene_target", "gene_context"])[
            column
        ].transform("mean")
    figures = {
        "total": _spearman_per_type(merged, "lfc_model", "lfc_data"),
        "total_null": _spearman_per_type(merged, "lfc_rand", "lfc_data"),
        "specific": _spearman_per_type(merged, "lfc_model_specific", "lfc_data_specific"),
        "specific_null": _spearman_per_type(merged, "lfc_rand_specific", "lfc_data_specific"),
    }
    medians = {name: float(np.median(list(values.values()))) for name, values in figures.items()}
    return {
        "lfc_spearman_per_type": figures,
        "lfc_spearman_median": medians,
        "lfc_done": medians["total"] >= 0.75 and medians["specific"] - medians["specific_null"] >= 0.15,
    }


def models_for_seed(args, seed: int, mouse, human, times: dict):
    """The models of ``seed``: loaded from ``args.models/seed<seed>`` when saved there, else trained."""
    folder = None if args.models is None else args.models / f"seed{seed}"
    if folder is not None and (folder / "target" / "model.pt").exists():
        context = ContextModel.load(str(folder / "context"), adata=mouse)
        target = TargetModel.load(str(folder / "target"), adata=human)
        print(f"loaded the trained models from {folder}", flush=True)
        return context, target
    scvi.settings.seed = seed  # seeds torch, numpy and python
    context = ContextModel(mouse)
    timed(times, "train_context", context.train, max_epochs=args.epochs, enable_progress_bar=False)
    target = TargetModel.from_context(context, human)
    timed(times, "train_target", target.train, max_epochs=args.epochs, enable_progress_bar=False)
    if folder is not None:
        context.save(str(folder / "context"), overwrite=True)
        target.save(str(folder / "target"), overwrite=True)
    return context, target


def run_seed(args, seed: int, mouse, human, shared: list[str]) -> tuple[dict, tuple]:
    """Figures of one seed (``seed`` also seeds the sampling of tl.homologous_lfc)."""
    times: dict[str, float] = {}
    context, target = models_for_seed(args, seed, mouse, human, times)
    alignment = (target.history or {}).get("alignment_train")
    results = {
        "seed": seed,
        "alignment_loss_last_epoch": float(alignment.iloc[-1, 0]) if alignment is not None else None,
        "wall_time_s": times,
    }
    similar = timed(
        times, "tl.similar_cells", xs.tl.similar_cells, target, context, index=0, labels_key=LABELS
    )
    results["similar_cells_target_label"] = str(human.obs[LABELS].iloc[0])
    results["similar_cells_top10_labels"] = similar[LABELS].head(10).tolist()

    labels = {"target_labels_key": LABELS, "context_labels_key": LABELS}
    lfc = timed(
        times,
        "tl.homologous_lfc",
        xs.tl.homologous_lfc,
        target,
        context,
        **labels,
        random_state=seed,
        progress_bar=False,
    )
    observed = timed(times, "tl.data_lfc", xs.tl.data_lfc, target, context, **labels)
    results.update(lfc_agreement(lfc, observed))
    print(json.dumps(results["lfc_spearman_median"]), flush=True)

    sim = None
    if not args.skip_celltype:
        sim = timed(
            times,
            "tl.celltype_similarity",
            xs.tl.celltype_similarity,
            target,
            context,
            **labels,
            progress_bar=False,
        )
        best = sim.idxmax(axis=1)
        matches = {t: str(best[t]) for t in shared}
        n_match = sum(matches[t] == t for t in shared)
        results.update(
            celltype_best_match=matches,
            celltype_n_matching=n_match,
            celltype_share_matching=n_match / len(shared),
            celltype_done=n_match >= 6,
        )
    return results, (target, context, sim, lfc, observed, similar)


def summary(runs: list[dict]) -> dict:
    """Per figure, the median over cell types of each seed, and their minimum and mean over seeds."""
    out = {}
    for name in runs[0]["lfc_spearman_median"]:
        values = [run["lfc_spearman_median"][name] for run in runs]
        out[name] = {"per_seed": values, "min": float(np.min(values)), "mean": float(np.mean(values))}
    gaps = [
        run["lfc_spearman_median"]["specific"] - run["lfc_spearman_median"]["specific_null"] for run in runs
    ]
    out["specific_minus_null"] = {"per_seed": gaps, "min": float(np.min(gaps)), "mean": float(np.mean(gaps))}
    out["lfc_done"] = all(run["lfc_done"] for run in runs)
    if "celltype_done" in runs[0]:
        out["celltype_done"] = all(run["celltype_done"] for run in runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--n-hvg", type=int, default=4000)
    parser.add_argument("--figures", type=Path, default=None, help="folder for the PNG figures (first seed)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--skip-celltype", action="store_true", help="leave out tl.celltype_similarity")
    parser.add_argument(
        "--models",
        type=Path,
        default=None,
        help="folder to save the trained models to (one subfolder per seed), or load them from",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="combine the runs of these result files (no training)",
    )
    args = parser.parse_args()
    if args.merge:
        parts = [json.loads(path.read_text()) for path in args.merge]
        results = {**parts[0], "runs": [run for part in parts for run in part["runs"]]}
        results["setup"]["seeds"] = [run["seed"] for run in results["runs"]]
        results["summary"] = summary(results["runs"])
        write(results, args.output)
        return

    times: dict[str, float] = {}
    mouse = prepare(args.data / "baron_mouse_counts.h5ad", args.n_hvg, 20)
    human = prepare(args.data / "baron_human_counts.h5ad", args.n_hvg, 20)
    xs.pp.translate_genes(human, "human", "mouse")
    timed(times, "pp.homology_neighbors", xs.pp.homology_neighbors, human, mouse, labels_key=LABELS)
    ContextModel.setup_anndata(mouse, batch_key="donor", labels_key=LABELS)
    TargetModel.setup_anndata(human, batch_key="donor")
    shared = sorted(set(human.obs[LABELS]) & set(mouse.obs[LABELS]))
    results = {
        "setup": {
            "context": "Baron mouse",
            "target": "Baron human",
            "n_context_cells": int(mouse.n_obs),
            "n_target_cells": int(human.n_obs),
            "n_hvg": args.n_hvg,
            "epochs": args.epochs,
            "seeds": args.seeds,
            "shared_types": shared,
            "device": "cpu",
            "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
        "wall_time_s": times,
        "runs": [],
    }
    for seed in args.seeds:
        run, objects = run_seed(args, seed, mouse, human, shared)
        results["runs"].append(run)
        results["summary"] = summary(results["runs"])
        write(results, args.output)
        if args.figures is not None and seed == args.seeds[0]:
            figures(args.figures, human, mouse, *objects)


def figures(folder: Path, human, mouse, target, context, sim, lfc, observed, similar) -> None:
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    both = ad.concat({"mouse": mouse, "human": human}, label="species", index_unique="-")
    both.obsm["X_xspecies"] = np.r_[context.get_latent_representation(), target.get_latent_representation()]
    sc.pp.neighbors(both, use_rep="X_xspecies")
    sc.tl.umap(both, random_state=0)
    xs.pl.embedding_2d(both, color=LABELS, species_names=("mouse", "human"), save=folder / "embedding.png")
    xs.pl.embedding_2d(both, color=LABELS, layout="joint", save=folder / "embedding_joint.png")
    xs.pl.similar_cells(
        both,
        None,
        similar,
        index=0,
        labels_key=LABELS,
        species_names=("mouse", "human"),
        save=folder / "similarity.png",
    )
    xs.pl.celltype_similarity(
        sim, target_name="human", context_name="mouse", save=folder / "celltype_sim.png"
    )
    xs.pl.homologous_lfc(lfc, species_names=("human", "mouse"), save=folder / "lfc.png")
    xs.pl.lfc_comparison(lfc, observed, save=folder / "lfc_comparison.png")
    xs.pl.history(target, save=folder / "history_target.png")
    xs.pl.history(context, save=folder / "history_context.png")
    xs.tl.transfer_labels(target, context, labels_key=LABELS, progress_bar=False)
    truth = human.obs[LABELS].astype(str)
    reports = {
        "data-level NNS": pd.crosstab(truth, human.obs[f"homology_{LABELS}"].astype(str)),
        "scSpecies": pd.crosstab(truth, human.obs[f"xspecies_{LABELS}"].astype(str)),
    }
    xs.pl.transfer_accuracy(reports, save=folder / "transfer_accuracy.png")
    xs.pl.confusion_matrix(reports["scSpecies"], save=folder / "confusion.png")


if __name__ == "__main__":
    main()
