"""Set-up for the Examples of the package's docstrings, which ``python -m pytest`` runs as doctests.

The tests' own fixtures live in ``tests/conftest.py``; this file only gives every doctest an empty
working folder, so that examples which write files (``atomic_path("report.csv")``) leave nothing behind,
and keeps scvi-tools' info messages (``File ... already downloaded`` when a model loads) out of the
printed output the examples compare.
"""

import logging

import pytest

#: modules whose examples train, save or load models through scvi-tools
_SCVI_MODULES = ("xspecies.model", "xspecies.tl", "xspecies.cli", "xspecies.datasets")


@pytest.fixture(autouse=True)
def _doctest_in_tmp_path(request: pytest.FixtureRequest, tmp_path, monkeypatch) -> None:
    """Run each doctest in its own empty working folder, with the download cache inside it."""
    if isinstance(request.node, pytest.DoctestItem):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("XSPECIES_CACHE_DIR", str(tmp_path / "cache"))
        if request.node.name.startswith(_SCVI_MODULES):
            import scvi

            monkeypatch.setattr(scvi.settings, "verbosity", logging.WARNING)
