"""Sphinx extension: the ``scspecies-cli`` directive renders the help of the command line.

It builds the parser with :func:`scspecies.cli.main.build_parser` and writes one section per
sub-command with its ``--help`` text, so the page never drifts from the code and no extra
dependency (sphinx-argparse) is needed.
"""

from __future__ import annotations

import argparse
import os

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

_WIDTH = "100"


def _format_help(parser: argparse.ArgumentParser) -> str:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = _WIDTH  # argparse reads the terminal width from COLUMNS
    try:
        return parser.format_help()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _block(title: str, text: str, marker: str) -> list[str]:
    lines = [title, marker * len(title), "", ".. code-block:: text", ""]
    lines += [f"   {line}" if line.strip() else "" for line in text.rstrip().splitlines()]
    return [*lines, ""]


class CliHelpDirective(SphinxDirective):
    """Insert ``scspecies --help`` and, as sub-sections, the help of each sub-command."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from scspecies.cli.main import build_parser

        parser = build_parser()
        lines = _block("``scspecies``", _format_help(parser), "-")
        for name, sub in _subparsers(parser).items():
            lines += _block(f"``scspecies {name}``", _format_help(sub), "-")
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source="scspecies --help"), container)
        return container.children


def setup(app):
    """Register the directive."""
    app.add_directive("scspecies-cli", CliHelpDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
