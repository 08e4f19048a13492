"""``xspecies demo``: mouse -> human pancreas alignment on the embedded demo data (CPU, minutes)."""

from __future__ import annotations

import argparse

from .align import add_common_arguments, check_output_folder, run_alignment, run_options, subsample


def _run(args: argparse.Namespace) -> int:
    import xspecies as xs

    check_output_folder(args.output)
    mouse = subsample(xs.datasets.pancreas("mouse"), args.max_cells, args.seed)
    human = subsample(xs.datasets.pancreas("human"), args.max_cells, args.seed)
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
        **run_options(args),
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
            "Train a mouse context model and a human target model on the embedded pancreas demo data "
            "(already reduced to variable and homologous genes), transfer the cell types, print the "
            "balanced accuracy and write data, models and figures."
        ),
    )
    add_common_arguments(parser, default_epochs=40)
    parser.set_defaults(func=_run)
