"""Sphinx extension: the ``xspecies-cli`` directive renders the help of the command line.

It builds the parser with :func:`xspecies.cli.main.build_parser` and writes one section per
sub-command with its ``--help`` text, so the page never drifts from the code and no extra
dependency (sphinx-argparse) is needed.
"""

from __future__ import annotations

import argparse
import os

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

_WIDTH = "84"


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


def _section(document: nodes.document, command: str, text: str) -> nodes.section:
    section = nodes.section(ids=[nodes.make_id(command)], names=[nodes.fully_normalize_name(command)])
    section += nodes.title("", "", nodes.literal(command, command))
    block = nodes.literal_block(text.rstrip(), text.rstrip())
    block["language"] = "text"
    section += block
    document.note_implicit_target(section, section)
    return section


class CliHelpDirective(SphinxDirective):
    """Insert ``xspecies --help`` and, as sibling sections, the help of each sub-command."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from xspecies.cli.main import build_parser

        parser = build_parser()
        document = self.state.document
        sections = [_section(document, "xspecies", _format_help(parser))]
        sections += [
            _section(document, f"xspecies {name}", _format_help(sub))
            for name, sub in _subparsers(parser).items()
        ]
        return sections


def setup(app):
    """Register the directive."""
    app.add_directive("xspecies-cli", CliHelpDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
