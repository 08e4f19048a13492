"""Cross-species models on scvi-tools: :class:`ContextModel` and :class:`TargetModel`."""

from ._base import NotTrainedError
from ._context import ContextModel
from ._hub import load_hub_dir, save_to_hub_dir
from ._module import SpeciesVAE, TargetVAE
from ._target import TargetModel
from ._training import AlignmentTrainingPlan, SpeciesTrainingPlan

__all__ = [
    "AlignmentTrainingPlan",
    "ContextModel",
    "NotTrainedError",
    "SpeciesTrainingPlan",
    "SpeciesVAE",
    "TargetModel",
    "TargetVAE",
    "load_hub_dir",
    "save_to_hub_dir",
]
