"""``xspecies align``: align a target species to a context species from two h5ad files."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from anndata import AnnData


def _say(verbose: bool, message: str) -> None:
    if verbose:
        print(message, flush=True)


def run_alignment(
    context: AnnData,
    target: AnnData,
    context_species: str,
    target_species: str,
    labels_key: str,
    output: str | Path,
    context_batch_key: str | None = None,
    target_batch_key: str | None = None,
    target_labels_key: str | None = None,
    epochs: int = 40,
    seed: int = 0,
    verbose: bool = True,
) -> dict:
    """Run the whole pipeline and write data, models, figures and a report to ``output``.

    Steps: context model, ortholog translation, data-level neighbour search, target model, label
    transfer (and evaluation when ``target_labels_key`` is given).

    Parameters
    ----------
    context, target
        Raw-count AnnData of the context and target species.
    context_species, target_species
        Species names understood by :func:`xspecies.pp.translate_genes`.
    labels_key
        Label column of the context to transfer.
    output
        Output folder (created).
    context_batch_key, target_batch_key
        Batch columns (``None``: one batch).
    target_labels_key
        Known target labels, to evaluate the transfer.
    epochs
        Training epochs of each model.
    seed
        Random seed.
    verbose
        Print progress.

    Returns
    -------
    dict
        The report also written to ``output/report.json``.
    """
    import scvi

    import xspecies as xs

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    scvi.settings.seed = seed
    out = Path(output)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    if labels_key not in context.obs:
        raise KeyError(f"{labels_key!r} is not a column of the context data's obs.")
    train = {"max_epochs": epochs, "enable_progress_bar": verbose, "accelerator": "auto"}
    timings = {}

    _say(verbose, f"[1/5] context model ({context.n_obs} {context_species} cells, {context.n_vars} genes)")
    xs.model.ContextModel.setup_anndata(context, batch_key=context_batch_key, labels_key=labels_key)
    context_model = xs.model.ContextModel(context)
    start = time.perf_counter()
    context_model.train(**train)
    timings["train_context_s"] = time.perf_counter() - start

    _say(verbose, f"[2/5] orthologs and data-level neighbour search ({target_species} -> {context_species})")
    xs.pp.translate_genes(target, target_species, context_species)
    xs.pp.homology_neighbors(target, context, labels_key=labels_key)

    _say(verbose, f"[3/5] target model ({target.n_obs} {target_species} cells, {target.n_vars} genes)")
    xs.model.TargetModel.setup_anndata(target, batch_key=target_batch_key)
    target_model = xs.model.TargetModel.from_context(context_model, target)
    start = time.perf_counter()
    target_model.train(**train)
    timings["train_target_s"] = time.perf_counter() - start

    _say(verbose, "[4/5] label transfer")
    start = time.perf_counter()
    xs.tl.transfer_labels(target_model, context_model, labels_key, progress_bar=verbose)
    timings["transfer_s"] = time.perf_counter() - start
    pred_key = f"xspecies_{labels_key}"
    context.obsm["X_xspecies"] = context_model.get_latent_representation()
    target.obsm["X_xspecies"] = target_model.get_latent_representation()

    _say(verbose, f"[5/5] writing results to {out}")
    report = {"n_context_cells": context.n_obs, "n_target_cells": target.n_obs, "epochs": epochs, **timings}
    report["n_novel"] = int(target.obs[f"{pred_key}_novel"].sum())
    if target_labels_key is not None:
        evaluation = xs.tl.evaluate_transfer(
            target, pred_key, target_labels_key, context=context, context_labels_key=labels_key
        )
        report.update(evaluation.to_dict())
        evaluation.confusion.to_csv(out / "confusion_matrix.csv")
        xs.pl.confusion_matrix(
            evaluation.confusion,
            normalize=False,
            title=f"balanced accuracy {evaluation.balanced_accuracy:.3f}",
            xlabel=f"transferred ({context_species})",
            ylabel=f"true ({target_species})",
            show=False,
            save=out / "figures" / "confusion_matrix.png",
        )
    xs.pl.history(context_model, show=False, save=out / "figures" / "history_context.png")
    xs.pl.history(target_model, show=False, save=out / "figures" / "history_target.png")
    context_model.save(str(out / "models" / "context"), overwrite=True)
    target_model.save(str(out / "models" / "target"), overwrite=True)
    context.write_h5ad(out / f"{context_species}_context.h5ad")
    target.write_h5ad(out / f"{target_species}_target.h5ad")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _run(args: argparse.Namespace) -> int:
    import anndata as ad

    for path in (args.context, args.target):
        if not Path(path).exists():
            raise SystemExit(f"file not found: {path}")
    report = run_alignment(
        ad.read_h5ad(args.context),
        ad.read_h5ad(args.target),
        args.context_species,
        args.target_species,
        args.labels_key,
        args.output,
        context_batch_key=args.context_batch_key,
        target_batch_key=args.target_batch_key,
        target_labels_key=args.target_labels_key,
        epochs=args.epochs,
        seed=args.seed,
        verbose=not args.quiet,
    )
    if "balanced_accuracy" in report:
        print(f"balanced accuracy: {report['balanced_accuracy']:.3f}")
    print(f"results written to {args.output}")
    return 0


def add_common_arguments(parser: argparse.ArgumentParser, default_epochs: int) -> None:
    """Arguments shared by ``xspecies demo`` and ``xspecies align``.

    Parameters
    ----------
    parser
        The sub-command parser.
    default_epochs
        Default number of epochs per model.
    """
    parser.add_argument("--output", default="xspecies_output", help="output folder (default: %(default)s)")
    parser.add_argument(
        "--epochs", type=int, default=default_epochs, help="epochs per model (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def register(subparsers) -> None:
    """Add the ``align`` sub-command.

    Parameters
    ----------
    subparsers
        The sub-parsers of the ``xspecies`` parser.
    """
    parser = subparsers.add_parser(
        "align",
        help="align a target species to a context species (two h5ad files of raw counts)",
        description="Train a context model, align a target model to it and transfer labels.",
    )
    parser.add_argument("--context", required=True, help="h5ad of the context species (raw counts)")
    parser.add_argument("--target", required=True, help="h5ad of the target species (raw counts)")
    parser.add_argument("--context-species", required=True, help="e.g. mouse")
    parser.add_argument("--target-species", required=True, help="e.g. human")
    parser.add_argument("--labels-key", required=True, help="context obs column with the labels to transfer")
    parser.add_argument("--context-batch-key", default=None, help="context obs column with the batch")
    parser.add_argument("--target-batch-key", default=None, help="target obs column with the batch")
    parser.add_argument(
        "--target-labels-key", default=None, help="target obs column with known labels (evaluation)"
    )
    add_common_arguments(parser, default_epochs=40)
    parser.set_defaults(func=_run)
