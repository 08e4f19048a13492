"""Entry point of the ``xspecies`` command: one sub-command per module in :data:`COMMANDS`."""

from __future__ import annotations

import argparse
import importlib
import sys

#: Modules of :mod:`xspecies.cli` that each provide ``register(subparsers)``;
#: ``register`` adds a sub-parser and sets its ``func`` default to a callable taking the parsed args.
COMMANDS: tuple[str, ...] = ("demo", "align", "scice")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every sub-command registered.

    Returns
    -------
    argparse.ArgumentParser
        The top-level ``xspecies`` parser.
    """
    from xspecies import __version__

    parser = argparse.ArgumentParser(
        prog="xspecies",
        description="Cross-species single-cell alignment and clustering-consistency evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"xspecies {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"xspecies.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``xspecies`` command line.

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
