"""xspecies: cross-species alignment of single-cell data on scvi-tools, and scICE clustering consistency.

Sub-packages follow the data flow: :mod:`xspecies.pp` (orthologs, preparation, data-level
neighbour search) -> :mod:`xspecies.model` (context and target models) -> :mod:`xspecies.tl`
(analyses, scICE) -> :mod:`xspecies.pl` (figures); :mod:`xspecies.datasets` holds the data loaders.
"""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, pl, pp, tl

try:
    __version__ = version("xspecies")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"


def __getattr__(name: str):
    # the model sub-package imports torch and scvi-tools: load it on first use only
    if name == "model":
        import importlib

        return importlib.import_module("xspecies.model")
    raise AttributeError(f"module 'xspecies' has no attribute {name!r}")


__all__ = ["datasets", "model", "pl", "pp", "tl", "__version__"]
