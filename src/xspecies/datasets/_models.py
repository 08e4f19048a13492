"""Tiny models trained on the pancreas demo data, to try the model API (and run its Examples) in seconds."""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xspecies._validation import check_int

from ._pancreas import pancreas

if TYPE_CHECKING:
    from xspecies.model import ContextModel, TargetModel

__all__ = ["pancreas_models"]

#: folders of the models trained in this process, by the arguments of :func:`pancreas_models`
_TRAINED: dict[tuple[int, int, int], Path] = {}


def _saved_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="xspecies_pancreas_models_"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@contextmanager
def _quiet():
    """Silence Lightning's and scvi-tools' info messages and the warning on rare labels of a small sample."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "scvi")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="Category .* has fewer than 3 cells", category=UserWarning
            )
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _train(n_cells: int, max_epochs: int, random_state: int, folder: Path) -> None:
    import scvi

    import xspecies as xs

    rng = np.random.default_rng(random_state)
    mouse, human = pancreas("mouse"), pancreas("human")
    mouse = mouse[np.sort(rng.choice(mouse.n_obs, min(n_cells, mouse.n_obs), replace=False))].copy()
    human = human[np.sort(rng.choice(human.n_obs, min(n_cells, human.n_obs), replace=False))].copy()
    scvi.settings.seed = random_state
    train = {"max_epochs": max_epochs, "accelerator": "cpu", "enable_progress_bar": False}
    with _quiet():
        xs.model.ContextModel.setup_anndata(mouse, batch_key="donor", labels_key="cell_ontology_class")
        context = xs.model.ContextModel(mouse)
        context.train(**train)
        xs.pp.translate_genes(human, "human", "mouse")
        xs.pp.homology_neighbors(
            human, mouse, labels_key="cell_ontology_class", n_neighbors=min(250, mouse.n_obs)
        )
        xs.model.TargetModel.setup_anndata(human, batch_key="donor")
        target = xs.model.TargetModel.from_context(context, human)
        target.train(**train)
    context.save(str(folder / "context"), save_anndata=True)
    target.save(str(folder / "target"), save_anndata=True)


def pancreas_models(
    *, n_cells: int = 300, max_epochs: int = 1, random_state: int = 0
) -> tuple[ContextModel, TargetModel]:
    """A mouse context model and a human target model, trained briefly on the pancreas demo data.

    Both are trained on ``n_cells`` random cells of :func:`pancreas` (all genes) for ``max_epochs``
    epochs on the CPU: enough to try every method of the models and to run the Examples of this
    documentation, far too little for meaningful latents or label transfer (for those, train on all
    cells for 40 epochs as the tutorials do). The first call of a session trains (seconds); later calls
    with the same arguments load new copies of the same models, so changing one leaves the next alone.

    Parameters
    ----------
    n_cells
        Cells of each species (at least 30; at most all of the demo data's).
    max_epochs
        Training epochs of each model (at least 1).
    random_state
        Seed of the cell sample and of the training.

    Returns
    -------
    tuple of ContextModel and TargetModel
        ``(context, target)``. ``context.adata`` holds the mouse cells (set up with
        ``batch_key="donor"``, ``labels_key="cell_ontology_class"``); ``target.adata`` the human cells,
        with the results of :func:`xspecies.pp.translate_genes` and
        :func:`xspecies.pp.homology_neighbors` (``labels_key="cell_ontology_class"``, key
        ``"homology"``), set up with ``batch_key="donor"``.

    Examples
    --------
    >>> import xspecies as xs
    >>> context, target = xs.datasets.pancreas_models()
    >>> mouse, human = context.adata, target.adata
    >>> mouse.n_obs, human.n_obs
    (300, 300)
    >>> context.is_trained and target.is_trained
    True
    >>> target.get_latent_representation().shape
    (300, 10)
    """
    check_int("n_cells", n_cells, minimum=30)
    check_int("max_epochs", max_epochs, minimum=1)
    check_int("random_state", random_state, minimum=0)
    from xspecies.model import ContextModel, TargetModel

    key = (n_cells, max_epochs, random_state)
    if key not in _TRAINED:
        folder = _saved_folder()
        _train(n_cells, max_epochs, random_state, folder)
        _TRAINED[key] = folder
    folder = _TRAINED[key]
    with _quiet():
        context = ContextModel.load(str(folder / "context"), accelerator="cpu")
        target = TargetModel.load(str(folder / "target"), accelerator="cpu")
    return context, target
