"""xspecies: cross-species alignment of single-cell data on scvi-tools, and scICE clustering consistency.

Sub-packages follow the data flow: :mod:`xspecies.pp` (orthologs, preparation, data-level
neighbour search) -> :mod:`xspecies.model` (context and target models) -> :mod:`xspecies.tl`
(analyses, scICE) -> :mod:`xspecies.pl` (figures); :mod:`xspecies.datasets` holds the data loaders.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("xspecies")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"


_SUBPACKAGES = ("datasets", "model", "pl", "pp", "tl")


def __getattr__(name: str):
    # sub-packages import scanpy, torch and scvi-tools: load each on first use only, so that
    # `xspecies --help` and `--version` answer at once
    if name in _SUBPACKAGES:
        return importlib.import_module(f"xspecies.{name}")
    raise AttributeError(f"module 'xspecies' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBPACKAGES])


__all__ = ["datasets", "model", "pl", "pp", "tl", "__version__"]
