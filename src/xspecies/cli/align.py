"""``xspecies align``: align a target species to a context species from two h5ad files."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from xspecies._io import atomic_entries

from .main import CLIError, add_debug_argument

if TYPE_CHECKING:
    from anndata import AnnData

#: Largest number of data-level neighbours per target cell (scSpecies' default).
MAX_NEIGHBORS = 250
#: Neighbours that vote on the data-level label and guide the alignment (at most ``n_neighbors``).
N_VOTE = 25
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
#: gene rankings of ``--hvg-flavor`` (those of :func:`xspecies.pp.prepare`), for the progress output
FLAVOR_TEXT = {"seurat": "dispersion of the log-normalized counts", "seurat_v3": "variance of the counts"}


def _say(verbose: bool, message: str) -> None:
    if verbose:
        print(message, flush=True)


def _check_obs_keys(adata: AnnData, which: str, keys: dict[str, str | None]) -> None:
    for option, key in keys.items():
        if key is not None and key not in adata.obs:
            raise CLIError(
                f"{option} {key!r} is not a column of the {which} data's obs "
                f"(columns: {', '.join(map(str, adata.obs.columns[:20]))})"
            )


def check_inputs(
    context: AnnData,
    target: AnnData,
    context_species: str,
    target_species: str,
    labels_key: str,
    output: str | Path,
    context_batch_key: str | None = None,
    target_batch_key: str | None = None,
    target_labels_key: str | None = None,
    n_neighbors: int | None = None,
    layer: str | None = None,
) -> int:
    """Check everything :func:`run_alignment` needs before any work starts.

    Parameters
    ----------
    context, target, context_species, target_species, labels_key, output
    context_batch_key, target_batch_key, target_labels_key, n_neighbors, layer
        As in :func:`run_alignment`.

    Returns
    -------
    int
        The number of data-level neighbours to use (``n_neighbors`` or ``min(250, context cells)``).

    Examples
    --------
    >>> import xspecies as xs
    >>> mouse, human = xs.datasets.pancreas("mouse"), xs.datasets.pancreas("human")
    >>> check_inputs(mouse, human, "mouse", "human", "cell_ontology_class", "out")
    250
    >>> check_inputs(mouse, human, "mouse", "human", "cell_type", "out")
    Traceback (most recent call last):
    ...
    xspecies.cli.main.CLIError: --labels-key 'cell_type' is not a column of the context data's obs ...
    """
    from xspecies._validation import check_key_name, layer_names
    from xspecies.pp._species import resolve_species

    species = [resolve_species(name) for name in (context_species, target_species)]
    if species[0].taxon_id == species[1].taxon_id:
        raise CLIError(f"the context and target species are the same ({species[0].name})")
    check_key_name(labels_key, "--labels-key")  # it names the result columns
    _check_obs_keys(
        context, "context", {"--labels-key": labels_key, "--context-batch-key": context_batch_key}
    )
    _check_obs_keys(
        target, "target", {"--target-batch-key": target_batch_key, "--target-labels-key": target_labels_key}
    )
    for which, adata in (("context", context), ("target", target)):
        if layer is not None and layer not in adata.layers:
            raise CLIError(
                f"--layer {layer!r} is not a layer of the {which} data (layers: {layer_names(adata)})"
            )
        if adata.n_obs < 2 or adata.n_vars < 1:
            raise CLIError(f"the {which} data has {adata.n_obs} cells and {adata.n_vars} genes: too few")
    if n_neighbors is None:
        n_neighbors = min(MAX_NEIGHBORS, context.n_obs)
    if not 1 <= n_neighbors <= context.n_obs:
        raise CLIError(
            f"--n-neighbors {n_neighbors} must lie between 1 and the {context.n_obs} context cells"
        )
    if target.n_obs <= min(N_VOTE, n_neighbors):
        raise CLIError(
            f"the target data has {target.n_obs} cells: the label transfer compares each cell with its "
            f"{min(N_VOTE, n_neighbors)} nearest target cells, so it needs more"
        )
    check_output_folder(output)
    return n_neighbors


def check_output_folder(output: str | Path) -> None:
    """Raise when ``output`` cannot become a writable folder.

    Parameters
    ----------
    output
        The output folder (need not exist).

    Examples
    --------
    >>> check_output_folder("xspecies_output")
    >>> _ = Path("notes.txt").write_text("")
    >>> check_output_folder("notes.txt")
    Traceback (most recent call last):
    ...
    xspecies.cli.main.CLIError: --output notes.txt exists and is not a folder
    """
    out = Path(output).resolve()
    if out.exists() and not out.is_dir():
        raise CLIError(f"--output {output} exists and is not a folder")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write the output folder {output}: {existing} is not writable")


def select_genes(adata: AnnData, n_top_genes: int, layer: str | None, flavor: str = "seurat") -> str:
    """Keep the ``n_top_genes`` highly variable genes of ``adata`` (in place), as :func:`xspecies.pp.prepare`.

    Genes are ranked from the counts of all cells of the species together (per-batch ranking fails on
    small batches), by ``flavor`` (see :func:`xspecies.pp.prepare`).

    Parameters
    ----------
    adata
        Raw counts of one species.
    n_top_genes
        Genes to keep; ``0`` keeps all genes.
    layer
        Layer with the counts.
    flavor
        ``"seurat"`` (dispersion of the log-normalized counts) or ``"seurat_v3"`` (variance of the counts).

    Returns
    -------
    str
        What was done, for the progress output.

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> adata = ad.AnnData(np.random.default_rng(0).negative_binomial(2, 0.3, (200, 300)).astype(np.float32))
    >>> select_genes(adata, 100, None)
    'kept the 100 most variable of 300 genes (seurat: dispersion of the log-normalized counts)'
    >>> select_genes(adata, 0, None)
    'all 100 genes kept (--n-top-genes 0)'
    """
    import xspecies as xs

    n_vars = adata.n_vars
    if n_top_genes == 0 or n_top_genes >= n_vars:
        return f"all {n_vars} genes kept" + (" (--n-top-genes 0)" if n_top_genes == 0 else "")
    try:
        xs.pp.prepare(
            adata,
            min_batch_size=1,
            min_genes_fraction=0.0,
            min_celltype_size=1,
            n_top_genes=n_top_genes,
            flavor=flavor,
            layer=layer,
        )
    except ValueError as exc:  # e.g. the loess fit of seurat_v3 fails on degenerate data
        raise CLIError(
            f"selecting {n_top_genes} highly variable genes failed ({exc}); pass --n-top-genes 0 to keep all genes"
        ) from exc
    how = FLAVOR_TEXT[flavor]
    return f"kept the {adata.n_vars} most variable of {n_vars} genes ({flavor}: {how})"


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
    n_neighbors: int | None = None,
    n_top_genes: int = 0,
    hvg_flavor: str = "seurat",
    layer: str | None = None,
    batch_size: int = 128,
    accelerator: str = "auto",
) -> dict:
    """Run the whole pipeline and write data, models, figures and a report to ``output``.

    Steps: (highly variable genes,) ortholog translation, data-level neighbour search, context model,
    target model, label transfer (and evaluation when ``target_labels_key`` is given). Every input is
    checked before the first step; the outputs are written into a staging folder and moved into
    ``output`` only when all are complete.

    Parameters
    ----------
    context, target
        Raw-count AnnData of the context and target species (changed in place: genes selected,
        results added).
    context_species, target_species
        Species names understood by :func:`xspecies.pp.translate_genes`.
    labels_key
        Label column of the context to transfer.
    output
        Output folder (created; files of the same names are replaced, other files are kept).
    context_batch_key, target_batch_key
        Batch columns (``None``: one batch).
    target_labels_key
        Known target labels, to evaluate the transfer.
    epochs
        Training epochs of each model (at least 1).
    seed
        Random seed.
    verbose
        Print progress.
    n_neighbors
        Data-level neighbours per target cell (default ``min(250, context cells)``).
    n_top_genes
        Highly variable genes kept per species (``0``: all genes).
    hvg_flavor
        Their ranking: ``"seurat"`` or ``"seurat_v3"`` (see :func:`xspecies.pp.prepare`).
    layer
        Layer with the counts in both data sets (``None``: ``X``).
    batch_size
        Minibatch size of the training.
    accelerator
        Lightning accelerator (``"auto"``, ``"cpu"``, ``"gpu"``...).

    Returns
    -------
    dict
        The report also written to ``output/report.json``.

    Examples
    --------
    On 300 cells of each species, one epoch per model (``xspecies demo`` trains 40 on all cells):

    >>> import xspecies as xs
    >>> mouse = subsample(xs.datasets.pancreas("mouse"), 300, seed=0)
    >>> human = subsample(xs.datasets.pancreas("human"), 300, seed=0)
    >>> report = run_alignment(
    ...     mouse, human, "mouse", "human", "cell_ontology_class", "out",
    ...     target_labels_key="cell_ontology_class", epochs=1, n_top_genes=1000, n_neighbors=100, verbose=False,
    ... )
    >>> sorted(p.name for p in Path("out").iterdir())
    ['confusion_matrix_percent.csv', 'figures', 'human_target.h5ad', 'models', 'mouse_context.h5ad', 'report.json']
    """
    if epochs < 1:
        raise CLIError(f"--epochs must be at least 1, got {epochs}")
    if hvg_flavor not in FLAVOR_TEXT:
        raise CLIError(f"--hvg-flavor must be one of {', '.join(FLAVOR_TEXT)}, got {hvg_flavor!r}")
    n_neighbors = check_inputs(
        context,
        target,
        context_species,
        target_species,
        labels_key,
        output,
        context_batch_key,
        target_batch_key,
        target_labels_key,
        n_neighbors,
        layer,
    )
    import scvi

    import xspecies as xs

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    scvi.settings.seed = seed
    n_vote = min(N_VOTE, n_neighbors)
    train = {
        "max_epochs": epochs,
        "batch_size": batch_size,
        "enable_progress_bar": verbose,
        "accelerator": accelerator,
    }
    timings = {}

    _say(verbose, "[1/6] genes per species (--n-top-genes; 0 keeps all genes)")
    for name, adata in ((context_species, context), (target_species, target)):
        _say(verbose, f"      {name}: {select_genes(adata, n_top_genes, layer, hvg_flavor)}")

    _say(verbose, f"[2/6] orthologs and data-level neighbour search ({target_species} -> {context_species})")
    xs.pp.translate_genes(target, target_species, context_species)
    xs.pp.homology_neighbors(
        target, context, labels_key=labels_key, n_neighbors=n_neighbors, n_vote=n_vote, layer=layer
    )

    _say(verbose, f"[3/6] context model ({context.n_obs} {context_species} cells, {context.n_vars} genes)")
    xs.model.ContextModel.setup_anndata(
        context, layer=layer, batch_key=context_batch_key, labels_key=labels_key
    )
    context_model = xs.model.ContextModel(context)
    start = time.perf_counter()
    context_model.train(**train)
    timings["train_context_s"] = time.perf_counter() - start

    _say(verbose, f"[4/6] target model ({target.n_obs} {target_species} cells, {target.n_vars} genes)")
    xs.model.TargetModel.setup_anndata(target, layer=layer, batch_key=target_batch_key)
    target_model = xs.model.TargetModel.from_context(context_model, target, n_candidates=n_vote)
    start = time.perf_counter()
    target_model.train(**train)
    timings["train_target_s"] = time.perf_counter() - start

    _say(verbose, "[5/6] label transfer")
    start = time.perf_counter()
    xs.tl.transfer_labels(
        target_model, context_model, labels_key=labels_key, n_candidates=n_neighbors, progress_bar=verbose
    )
    timings["transfer_s"] = time.perf_counter() - start
    pred_key = f"xspecies_{labels_key}"
    context.obsm["X_xspecies"] = context_model.get_latent_representation()
    target.obsm["X_xspecies"] = target_model.get_latent_representation()

    _say(verbose, f"[6/6] writing results to {output}")
    report = {
        "n_context_cells": context.n_obs,
        "n_target_cells": target.n_obs,
        "n_context_genes": context.n_vars,
        "n_target_genes": target.n_vars,
        "n_top_genes": n_top_genes,
        "hvg_flavor": hvg_flavor,
        "n_neighbors": n_neighbors,
        "epochs": epochs,
        **timings,
    }
    report["n_novel"] = int(target.obs[f"{pred_key}_novel"].sum())
    evaluation = None
    if target_labels_key is not None:
        evaluation = xs.tl.evaluate_transfer(
            target, labels_key=target_labels_key, key=pred_key, context=context, context_labels_key=labels_key
        )
        report.update(evaluation.to_dict())
    with atomic_entries(output) as out:
        (out / "figures").mkdir()
        if evaluation is not None:
            # the matrix holds row percentages: the share of each true type given each label
            evaluation.confusion.to_csv(
                out / "confusion_matrix_percent.csv",
                index_label=f"true {target_species} type \\ transferred label (% of the true type's cells)",
            )
            xs.pl.confusion_matrix(
                evaluation.confusion,
                normalize=True,
                title=f"balanced accuracy {evaluation.balanced_accuracy:.3f} (% of each true type)",
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


def read_inputs(*paths: str) -> list[AnnData]:
    """Read h5ad files after checking that each exists and is an HDF5 file.

    Parameters
    ----------
    *paths
        The files.

    Returns
    -------
    list of anndata.AnnData
        The data, in the order of ``paths``.

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> ad.AnnData(np.ones((3, 2), dtype=np.float32)).write_h5ad("small.h5ad")
    >>> [adata.shape for adata in read_inputs("small.h5ad")]
    [(3, 2)]
    >>> read_inputs("small.h5ad", "missing.h5ad")
    Traceback (most recent call last):
    ...
    xspecies.cli.main.CLIError: file not found: missing.h5ad
    """
    import anndata as ad
    import h5py

    for path in paths:
        if not Path(path).is_file():
            raise CLIError(f"file not found: {path}")
        if not h5py.is_hdf5(path):
            raise CLIError(f"{path} is not an h5ad (HDF5) file")
    return [ad.read_h5ad(path) for path in paths]


def subsample(adata: AnnData, n: int | None, seed: int) -> AnnData:
    """A random subset of at most ``n`` cells (``adata`` itself when it is small enough or ``n`` is None).

    Parameters
    ----------
    adata
        The data.
    n
        Largest number of cells.
    seed
        Random seed.

    Returns
    -------
    anndata.AnnData
        The subset (a copy) or ``adata``.

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> adata = ad.AnnData(np.zeros((1000, 2), dtype=np.float32))
    >>> subsample(adata, 500, seed=0).n_obs
    500
    >>> subsample(adata, None, seed=0) is adata
    True
    """
    import numpy as np

    if n is None or adata.n_obs <= n:
        return adata
    keep = np.sort(np.random.default_rng(seed).choice(adata.n_obs, n, replace=False))
    return adata[keep].copy()


def run_options(args: argparse.Namespace) -> dict:
    """Keyword arguments of :func:`run_alignment` from the options of :func:`add_common_arguments`.

    Parameters
    ----------
    args
        The parsed arguments.

    Returns
    -------
    dict
        ``epochs``, ``seed``, ``verbose``, ``n_neighbors``, ``batch_size``, ``accelerator``.

    Examples
    --------
    >>> from xspecies.cli.main import build_parser
    >>> run_options(build_parser().parse_args(["demo", "--epochs", "5", "--quiet"]))
    {'epochs': 5, 'seed': 0, 'verbose': False, 'n_neighbors': None, 'batch_size': 128, 'accelerator': 'auto'}
    """
    return {
        "epochs": args.epochs,
        "seed": args.seed,
        "verbose": not args.quiet,
        "n_neighbors": args.n_neighbors,
        "batch_size": args.batch_size,
        "accelerator": args.accelerator,
    }


def _run(args: argparse.Namespace) -> int:
    check_output_folder(args.output)
    context, target = read_inputs(args.context, args.target)
    context, target = (subsample(a, args.max_cells, args.seed) for a in (context, target))
    report = run_alignment(
        context,
        target,
        args.context_species,
        args.target_species,
        args.labels_key,
        args.output,
        context_batch_key=args.context_batch_key,
        target_batch_key=args.target_batch_key,
        target_labels_key=args.target_labels_key,
        n_top_genes=args.n_top_genes,
        hvg_flavor=args.hvg_flavor,
        layer=args.layer,
        **run_options(args),
    )
    if "balanced_accuracy" in report:
        print(f"balanced accuracy: {report['balanced_accuracy']:.3f}")
    print(f"results written to {args.output}")
    return 0


def int_at_least(minimum: int):
    """``argparse`` type: an integer >= ``minimum``.

    Parameters
    ----------
    minimum
        Smallest accepted value.

    Returns
    -------
    Callable
        A function that parses the option's text, raising :class:`argparse.ArgumentTypeError` when it is
        not an integer >= ``minimum``.

    Examples
    --------
    >>> int_at_least(1)("3")
    3
    >>> int_at_least(0)("-1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be an integer >= 0, got -1
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text}")
        return value

    return parse


def add_common_arguments(parser: argparse.ArgumentParser, default_epochs: int) -> None:
    """Arguments shared by ``xspecies demo`` and ``xspecies align``.

    Parameters
    ----------
    parser
        The sub-command parser.
    default_epochs
        Default number of epochs per model.
    """
    parser.add_argument(
        "--output",
        default="xspecies_output",
        help="output folder; files of the same names are replaced once all results are complete, "
        "other files are kept (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs",
        type=int_at_least(1),
        default=default_epochs,
        help="epochs per model (default: %(default)s)",
    )
    parser.add_argument(
        "--n-neighbors",
        type=int_at_least(1),
        default=None,
        help=f"data-level neighbours per target cell (default: min({MAX_NEIGHBORS}, context cells))",
    )
    parser.add_argument(
        "--batch-size",
        type=int_at_least(1),
        default=128,
        help="training minibatch size (default: %(default)s)",
    )
    parser.add_argument(
        "--accelerator",
        choices=ACCELERATORS,
        default="auto",
        help="training device (default: %(default)s: a GPU when there is one)",
    )
    parser.add_argument(
        "--max-cells",
        type=int_at_least(1),
        default=None,
        help="random subset of at most this many cells per species (quick try)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    add_debug_argument(parser)


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
        description=(
            "Select highly variable genes per species, translate the target genes, search data-level "
            "neighbours, train a context model, align a target model to it and transfer labels. Every "
            "input is checked before training; the input files are only read."
        ),
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
    parser.add_argument("--layer", default=None, help="layer with the raw counts in both files (default: X)")
    genes = parser.add_mutually_exclusive_group()
    genes.add_argument(
        "--n-top-genes",
        type=int_at_least(0),
        default=4000,
        help="highly variable genes kept per species, ranked from the counts by --hvg-flavor; "
        "0 keeps all genes (default: %(default)s)",
    )
    genes.add_argument(
        "--all-genes", dest="n_top_genes", action="store_const", const=0, help="keep all genes"
    )
    parser.add_argument(
        "--hvg-flavor",
        choices=tuple(FLAVOR_TEXT),
        default="seurat",
        help="gene ranking: seurat, the dispersion of the log-normalized counts, or seurat_v3, the "
        "variance of the counts (on the Baron pancreas files seurat_v3 drops insulin and the markers of "
        "the rarest cell types; default: %(default)s; see xspecies.pp.prepare)",
    )
    add_common_arguments(parser, default_epochs=40)
    parser.set_defaults(func=_run)
