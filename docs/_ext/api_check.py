"""Sphinx extension: warn when a public name of a sub-package is missing from ``api.md``.

Every name in the ``__all__`` of :mod:`scspecies.pp`, :mod:`scspecies.model`, :mod:`scspecies.tl`,
:mod:`scspecies.pl` and :mod:`scspecies.datasets` must be listed in an autosummary table of
``docs/api.md``; with ``sphinx-build -W`` a missing one fails the build.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

SUBPACKAGES = ("pp", "model", "tl", "pl", "datasets")


def missing_from_api(api_text: str) -> list[str]:
    """Qualified public names (``pp.translate_genes``) that ``api_text`` does not list."""
    listed = set(re.findall(r"^\s+((?:pp|model|tl|pl|datasets)\.\w+)\s*$", api_text, flags=re.M))
    missing = []
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"scspecies.{sub}")
        missing += [
            f"{sub}.{name}" for name in getattr(module, "__all__", ()) if f"{sub}.{name}" not in listed
        ]
    return missing


def _check(app) -> None:
    api = Path(app.srcdir) / "api.md"
    for name in missing_from_api(api.read_text()):
        logger.warning(
            "public name scspecies.%s is not listed in %s", name, api, type="scspecies", subtype="api"
        )


def setup(app):
    """Connect the check to the start of the build."""
    app.connect("builder-inited", _check)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
