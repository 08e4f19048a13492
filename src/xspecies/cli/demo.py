"""``xspecies demo``: mouse -> human pancreas alignment on the embedded demo data (CPU, minutes)."""

from __future__ import annotations

import argparse

from .align import add_common_arguments, run_alignment


def _subsample(adata, n: int, seed: int):
    import numpy as np

    if adata.n_obs <= n:
        return adata
    keep = np.sort(np.random.default_rng(seed).choice(adata.n_obs, n, replace=False))
    return adata[keep].copy()


def _run(args: argparse.Namespace) -> int:
    import xspecies as xs

    mouse = xs.datasets.pancreas("mouse")
    human = xs.datasets.pancreas("human")
    if args.max_cells is not None:
        mouse, human = (_subsample(a, args.max_cells, args.seed) for a in (mouse, human))
    report = run_alignment(
        mouse,
        human,
        "mouse",
        "human",
        "cell_ontology_class",
        args.output,
        context_batch_key="donor",
        target_batch_key="donor",
        target_labels_key="cell_ontology_class",
        epochs=args.epochs,
        seed=args.seed,
        verbose=not args.quiet,
    )
    print(f"balanced accuracy (mouse -> human, shared cell types): {report['balanced_accuracy']:.3f}")
    print(f"results written to {args.output}")
    return 0


def register(subparsers) -> None:
    """Add the ``demo`` sub-command.

    Parameters
    ----------
    subparsers
        The sub-parsers of the ``xspecies`` parser.
    """
    parser = subparsers.add_parser(
        "demo",
        help="align human to mouse pancreas cells on the embedded demo data",
        description=(
            "Train a mouse context model and a human target model on the embedded pancreas demo data, "
            "transfer the cell types, print the balanced accuracy and write data, models and figures."
        ),
    )
    add_common_arguments(parser, default_epochs=40)
    parser.add_argument(
        "--max-cells",
        type=int,
        default=None,
        help="random subset of at most this many cells per species (quick try)",
    )
    parser.set_defaults(func=_run)
