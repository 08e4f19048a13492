"""Sphinx extension: warn when a public name of a sub-package is missing from ``api.md``.

Every name in the ``__all__`` of :mod:`xspecies.pp`, :mod:`xspecies.model`, :mod:`xspecies.tl`,
:mod:`xspecies.pl` and :mod:`xspecies.datasets` must be an entry of an autosummary table of
``docs/api.md`` under the ``.. module::`` (or ``.. currentmodule::``) directive of its sub-package;
with ``sphinx-build -W`` a missing one fails the build.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

SUBPACKAGES = ("pp", "model", "tl", "pl", "datasets")
_MODULE = re.compile(r"^\.\. (?:current)?module:: (\S+)\s*$")
_ENTRY = re.compile(r"^ {3}~?([A-Za-z_][\w.]*)\s*$")


def listed_names(api_text: str) -> set[str]:
    """Fully qualified names of the autosummary entries of ``api_text``."""
    module, names = "", set()
    for line in api_text.splitlines():
        if match := _MODULE.match(line):
            module = match.group(1)
        elif (match := _ENTRY.match(line)) and module:
            names.add(f"{module}.{match.group(1)}")
    return names


def missing_from_api(api_text: str) -> list[str]:
    """Public names (``xspecies.pp.translate_genes``) that ``api_text`` does not list."""
    listed = listed_names(api_text)
    missing = []
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"xspecies.{sub}")
        qualified = (f"xspecies.{sub}.{name}" for name in getattr(module, "__all__", ()))
        missing += [name for name in qualified if name not in listed]
    return missing


def _check(app) -> None:
    api = Path(app.srcdir) / "api.md"
    for name in missing_from_api(api.read_text()):
        logger.warning("public name %s is not listed in %s", name, api, type="xspecies", subtype="api")


def setup(app):
    """Connect the check to the start of the build."""
    app.connect("builder-inited", _check)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
