"""xspecies: cross-species alignment of single-cell data on scvi-tools, and scICE clustering consistency.

Sub-packages follow the data flow: :mod:`xspecies.pp` (orthologs, preparation, data-level
neighbour search) -> :mod:`xspecies.model` (context and target models) -> :mod:`xspecies.tl`
(analyses, scICE) -> :mod:`xspecies.pl` (figures); :mod:`xspecies.datasets` holds the data loaders.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from ._lazy import attach

if TYPE_CHECKING:
    from . import datasets, model, pl, pp, tl

try:
    __version__ = version("xspecies")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

# sub-packages load on first use (xs.pp, xs.model, ...): import xspecies imports none of scanpy, anndata,
# torch, scvi-tools or matplotlib
__getattr__, __dir__ = attach(__name__, __file__)


__all__ = ["datasets", "model", "pl", "pp", "tl", "__version__"]
