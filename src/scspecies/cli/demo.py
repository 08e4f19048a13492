"""``scspecies demo``: mouse -> human pancreas alignment on the embedded demo data (CPU, minutes)."""

from __future__ import annotations

import argparse

from .align import add_common_arguments, run_alignment


def _run(args: argparse.Namespace) -> int:
    import scspecies as scs

    mouse = scs.datasets.pancreas("mouse")
    human = scs.datasets.pancreas("human")
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
        The sub-parsers of the ``scspecies`` parser.
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
    parser.set_defaults(func=_run)
