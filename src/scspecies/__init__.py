"""scspecies: cross-species alignment of single-cell data on scvi-tools, and scICE clustering consistency.

Sub-packages follow the data flow: :mod:`scspecies.pp` (orthologs, preparation, data-level
neighbour search) -> :mod:`scspecies.model` (context and target models) -> :mod:`scspecies.tl`
(analyses, scICE) -> :mod:`scspecies.pl` (figures); :mod:`scspecies.datasets` holds the data loaders.
"""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, pl, pp, tl

try:
    __version__ = version("scspecies")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"


def __getattr__(name: str):
    # the model sub-package imports torch and scvi-tools: load it on first use only
    if name == "model":
        import importlib

        return importlib.import_module("scspecies.model")
    raise AttributeError(f"module 'scspecies' has no attribute {name!r}")


__all__ = ["datasets", "model", "pl", "pp", "tl", "__version__"]
