"""Entry point of the ``scspecies`` command: one sub-command per module in :data:`COMMANDS`."""

from __future__ import annotations

import argparse
import importlib
import sys

#: Modules of :mod:`scspecies.cli` that each provide ``register(subparsers)``;
#: ``register`` adds a sub-parser and sets its ``func`` default to a callable taking the parsed args.
COMMANDS: tuple[str, ...] = ("demo", "align", "scice")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every sub-command registered.

    Returns
    -------
    argparse.ArgumentParser
        The top-level ``scspecies`` parser.
    """
    from scspecies import __version__

    parser = argparse.ArgumentParser(
        prog="scspecies",
        description="Cross-species single-cell alignment and clustering-consistency evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"scspecies {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"scspecies.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``scspecies`` command line.

    Parameters
    ----------
    argv
        Arguments without the program name; defaults to :data:`sys.argv`.

    Returns
    -------
    int
        The process exit code.
    """
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 1
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
