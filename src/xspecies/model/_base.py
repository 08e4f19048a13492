"""Code shared by :class:`~xspecies.model.ContextModel` and :class:`~xspecies.model.TargetModel`."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scvi
import torch
from anndata import AnnData
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.dataloaders import DataSplitter
from scvi.model.base import BaseModelClass, RNASeqMixin, UnsupervisedTrainingMixin, VAEMixin

from xspecies._io import atomic_dir
from xspecies._validation import check_counts, check_int, layer_names

from ._nn import DEFAULT_LAYER_ORDER, validate_layer_order
from ._training import SpeciesTrainingPlan

#: Files :meth:`SpeciesModelBase.save` writes (after its prefix); a save replaces all of them.
SAVED_FILES = ("model.pt", "adata.h5ad", "mdata.h5mu")

_HIDDEN_KEYS = ("outer_hidden", "inner_hidden", "decoder_hidden", "library_hidden")


#: Values (cells x genes) read at once from an on-disk matrix.
_READ_VALUES = 1 << 22


def row_totals(counts) -> np.ndarray:
    """Total counts of every cell (row), without densifying or loading an on-disk matrix as a whole.

    In-memory matrices (dense or sparse) are summed directly; a backed matrix (h5py dataset or
    anndata's on-disk sparse dataset) is read in blocks of rows of about four million values.

    Parameters
    ----------
    counts
        Cells x genes matrix.

    Returns
    -------
    numpy.ndarray
        ``(n_cells,)`` row sums.

    Examples
    --------
    >>> from scipy import sparse
    >>> row_totals(sparse.csr_matrix(np.array([[1.0, 2.0], [0.0, 3.0]])))
    array([3., 3.])
    """
    if isinstance(counts, np.ndarray) or sparse.issparse(counts):
        return np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    n_obs, n_vars = counts.shape
    step = max(1, _READ_VALUES // max(1, n_vars))
    blocks = [
        np.asarray(counts[start : start + step].sum(axis=1), dtype=np.float64).ravel()
        for start in range(0, n_obs, step)
    ]
    return np.concatenate(blocks) if blocks else np.zeros(0)


def library_log_prior(adata: AnnData, layer: str | None, batch_codes: np.ndarray, n_batch: int):
    """Per-batch mean and variance of the log library sizes (computed without densifying).

    Parameters
    ----------
    adata
        The data.
    layer
        Layer with the counts (``None``: ``X``).
    batch_codes
        Integer batch code of every cell.
    n_batch
        Number of batches.

    Returns
    -------
    tuple of numpy.ndarray
        Means and variances, each of length ``n_batch``.
    """
    counts = adata.X if layer is None else adata.layers[layer]
    log_lib = np.log(np.clip(row_totals(counts), 1.0, None))
    means, variances = np.zeros(n_batch), np.ones(n_batch)
    for b in range(n_batch):
        sel = log_lib[batch_codes == b]
        if sel.size:
            means[b] = sel.mean()
            variances[b] = max(sel.var(), 1e-2)
    return means.astype(np.float32), variances.astype(np.float32)


#: Epochs of the scSpecies recipe: ``max_epochs=None`` trains this many up to ``DECAY_AT_N_OBS`` cells.
EPOCHS_CAP = 40
#: Above this many cells, ``max_epochs=None`` trains ``EPOCHS_CAP * DECAY_AT_N_OBS / n_cells`` epochs.
DECAY_AT_N_OBS = 20_000
#: Epochs of the KL ramp (and of the target's eta ramp) when ``max_epochs`` is given.
RAMP_EPOCHS = 10


def default_max_epochs(n_obs: int) -> int:
    """Epochs of ``train(max_epochs=None)``: scvi-tools' heuristic capped at the scSpecies recipe's 40.

    The rule of scvi-tools' ``get_max_epochs_heuristic`` with ``epochs_cap=40`` and
    ``decay_at_n_obs=20_000``:
    40 epochs up to 20,000 cells, then ``round(40 * 20_000 / n_obs)`` (at least 1), so that training
    takes at most about 800,000 cell passes (6,250 minibatches of 128) at any data size.

    Parameters
    ----------
    n_obs
        Number of cells of the model's AnnData.

    Returns
    -------
    int
        The number of epochs.

    Examples
    --------
    >>> [default_max_epochs(n) for n in (2_000, 20_000, 100_000, 1_000_000)]
    [40, 40, 8, 1]
    """
    return max(1, min(round(DECAY_AT_N_OBS / n_obs * EPOCHS_CAP), EPOCHS_CAP))


def ramp_epochs(value: int | None, max_epochs: int | None, n_epochs: int, share: int, fixed: int) -> int:
    """Length in epochs of a ramp (or a refresh period) left at its default ``None``.

    With ``max_epochs`` given, the default is ``fixed`` epochs (the scSpecies recipe); with
    ``max_epochs=None`` (the epochs follow the data size, :func:`default_max_epochs`), it is
    ``ceil(n_epochs / share)``: the same share of the training at every data size, ``fixed`` at the
    recipe's 40 epochs. A value given is returned unchanged.

    Parameters
    ----------
    value
        The argument as passed (``None``: default).
    max_epochs
        ``max_epochs`` as passed to ``train``.
    n_epochs
        Epochs that will be trained.
    share
        The default covers ``1 / share`` of the epochs when they follow the data size.
    fixed
        The default when ``max_epochs`` is given.

    Returns
    -------
    int
        The number of epochs.

    Examples
    --------
    >>> ramp_epochs(None, None, 8, share=4, fixed=10), ramp_epochs(None, 8, 8, share=4, fixed=10)
    (2, 10)
    """
    if value is not None:
        return value
    return fixed if max_epochs is not None else max(1, math.ceil(n_epochs / share))


class NotTrainedError(RuntimeError, ValueError):
    """Raised when a method needs a trained model and the model has not finished one epoch yet.

    A subclass of :class:`RuntimeError` (what scvi-tools raises for untrained models) and of
    :class:`ValueError` (what xspecies raised before this class existed), so existing handlers keep
    working.

    Examples
    --------
    >>> import xspecies as xs
    >>> mouse = xs.datasets.pancreas("mouse")
    >>> xs.model.ContextModel.setup_anndata(mouse, batch_key="donor")
    >>> context = xs.model.ContextModel(mouse)
    >>> try:
    ...     context.get_latent_representation()
    ... except xs.model.NotTrainedError as err:
    ...     print(err)
    The ContextModel is not trained: call its train() first (training needs at least one epoch).
    """


def require_trained(model, name: str | None = None) -> None:
    """Raise :class:`NotTrainedError` unless ``model`` has been trained for at least one epoch.

    Parameters
    ----------
    model
        A :class:`~xspecies.model.ContextModel` or :class:`~xspecies.model.TargetModel`.
    name
        How the model is called in the message (default: its class name).

    Returns
    -------
    None
        Returns when the model is trained.

    Examples
    --------
    >>> import xspecies as xs
    >>> context, target = xs.datasets.pancreas_models()  # tiny models trained for one epoch
    >>> require_trained(target, "target")  # returns: the model is trained
    """
    if not getattr(model, "is_trained", False):
        what = f"{name} model" if name else type(model).__name__
        call = f"{name}.train()" if name else "its train()"
        raise NotTrainedError(
            f"The {what} is not trained: call {call} first (training needs at least one epoch)."
        )


def check_setup_inputs(
    adata: AnnData, layer: str | None, batch_key: str | None, labels_key: str | None
) -> None:
    """Check what ``setup_anndata`` registers: the columns, the layer and the counts (all of them).

    Raises a KeyError naming a missing column or layer, and a ValueError naming the first cell with a
    missing (NaN) batch or label, or the first cell and gene with a value that is not a count.
    """
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"The AnnData has {adata.n_obs} cells and {adata.n_vars} genes: it needs both.")
    for role, key in (("batch_key", batch_key), ("labels_key", labels_key)):
        if key is None:
            continue
        if key not in adata.obs:
            raise KeyError(
                f"{role}={key!r} is not a column of adata.obs (columns: {list(adata.obs.columns)})."
            )
        missing = adata.obs[key].isna().to_numpy()
        if missing.any():
            raise ValueError(
                f"adata.obs[{key!r}] ({role}) has {int(missing.sum())} missing (NaN) values, e.g. cell "
                f"{adata.obs_names[np.flatnonzero(missing)[0]]!r}: fill them (e.g. with 'unknown') or drop "
                "those cells."
            )
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"{layer!r} is not a layer of adata (layers: {layer_names(adata)}).")
    check_counts(adata, layer)


def check_same_genes(adata: AnnData, genes, owner: str) -> None:
    """Raise unless ``adata.var_names`` are ``genes``, in the same order (the model's input genes)."""
    new = adata.var_names.astype(str).to_numpy()
    genes = np.asarray(genes, dtype=str)
    if len(new) == len(genes) and np.array_equal(new, genes):
        return
    if len(new) == len(genes) and set(new) == set(genes):
        problem = "are the same genes in another order"
    else:
        missing = [g for g in genes if g not in set(new)][:5]
        problem = f"({len(new)}) differ from them (e.g. missing: {missing})"
    raise ValueError(
        f"The {owner} was trained on {len(genes)} genes; the genes of `adata` {problem}. Select and order "
        "them like the training data: adata[:, model.adata.var_names]."
    )


def check_architecture(params: dict) -> None:
    """Raise a ValueError naming the first architecture argument in ``params`` that is not a valid size."""
    if "n_latent" in params:
        check_int("n_latent", params["n_latent"])
    for key in _HIDDEN_KEYS:
        if key not in params:
            continue
        sizes = params[key]
        if isinstance(sizes, str) or not isinstance(sizes, Sequence):
            raise ValueError(f"{key} must be a sequence of layer sizes, e.g. (300,), got {sizes!r}.")
        for size in sizes:
            check_int(f"every size in {key}", size)


def _trained_only(method):
    """Wrap an inherited scvi-tools method so that it raises :class:`NotTrainedError` on an untrained model."""

    @functools.wraps(method)
    def checked(self, *args, **kwargs):
        require_trained(self)
        return method(self, *args, **kwargs)

    return checked


class SpeciesDataSplitter(DataSplitter):
    """scvi-tools' :class:`~scvi.dataloaders.DataSplitter`, with the cells shuffled when it is built.

    scvi-tools draws the training/validation split in ``setup``, which Lightning runs in every process
    of a distributed training: processes started by ``strategy="ddp_spawn"`` (or ``"ddp_fork"``) do
    not share ``scvi.settings.seed``, so each drew another split and the processes trained on
    overlapping cells (missing others). Drawn once in the launching process, with the same random
    state as scvi-tools (``numpy.random.RandomState(scvi.settings.seed)``), the split is identical in
    every process, and in one process identical to scvi-tools'.

    Parameters
    ----------
    adata_manager
        The model's :class:`~scvi.data.AnnDataManager`.
    *args, **kwargs
        Passed to :class:`~scvi.dataloaders.DataSplitter`.

    Examples
    --------
    Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

    >>> import xspecies as xs
    >>> from xspecies.model._base import SpeciesDataSplitter
    >>> context, target = xs.datasets.pancreas_models()
    >>> splitter = SpeciesDataSplitter(context.adata_manager, train_size=0.9)
    >>> splitter.setup()
    >>> len(splitter.train_idx) + len(splitter.val_idx) == context.adata.n_obs
    True
    """

    def __init__(self, adata_manager, *args, **kwargs):
        super().__init__(adata_manager, *args, **kwargs)
        n_obs = adata_manager.adata.n_obs
        shuffle = self.shuffle_set_split and self.external_indexing is None
        self._order = np.random.RandomState(seed=scvi.settings.seed).permutation(n_obs) if shuffle else None

    def setup(self, stage: str | None = None):
        """Split the cells into training, validation and test sets (the order drawn at construction).

        Parameters
        ----------
        stage
            Lightning stage (unused, as in scvi-tools).

        Returns
        -------
        None
            Sets ``train_idx``, ``val_idx`` and ``test_idx``.
        """
        super().setup(stage)
        if self._order is not None:
            n_val, n_train = len(self.val_idx), len(self.train_idx)
            self.val_idx = self._order[:n_val]
            self.train_idx = self._order[n_val : n_val + n_train]
            self.test_idx = self._order[n_val + n_train :]


class SpeciesModelBase(UnsupervisedTrainingMixin, RNASeqMixin, VAEMixin, BaseModelClass):
    """Training defaults, decoding and checked loading shared by the xspecies models."""

    _training_plan_cls = SpeciesTrainingPlan
    _data_splitter_cls = SpeciesDataSplitter

    @classmethod
    def _register_counts(
        cls,
        adata: AnnData,
        layer: str | None,
        batch_key: str | None,
        labels_key: str | None,
        setup_method_args: dict,
        extra_fields: Sequence = (),
        **kwargs,
    ) -> None:
        """Register counts, batch, labels and ``extra_fields`` for ``cls``.

        The inputs must have been checked with :func:`check_setup_inputs`.
        """
        fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
            CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key),
            *extra_fields,
        ]
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    # inherited scvi-tools methods that need a trained model (the others call _check_if_trained)
    get_elbo = _trained_only(VAEMixin.get_elbo)
    get_marginal_ll = _trained_only(VAEMixin.get_marginal_ll)
    get_reconstruction_error = _trained_only(VAEMixin.get_reconstruction_error)
    get_importance_weights = _trained_only(RNASeqMixin.get_importance_weights)
    get_normalized_expression = _trained_only(RNASeqMixin.get_normalized_expression)
    differential_expression = _trained_only(RNASeqMixin.differential_expression)
    posterior_predictive_sample = _trained_only(RNASeqMixin.posterior_predictive_sample)
    get_feature_correlation_matrix = _trained_only(RNASeqMixin.get_feature_correlation_matrix)
    get_likelihood_parameters = _trained_only(RNASeqMixin.get_likelihood_parameters)
    if hasattr(VAEMixin, "differential_abundance"):  # scvi-tools >= 1.4.1
        differential_abundance = _trained_only(VAEMixin.differential_abundance)

    def _check_if_trained(self, warn: bool = True, message: str | None = None) -> None:
        """scvi-tools' check, raising :class:`NotTrainedError` (also where scvi-tools would only warn)."""
        require_trained(self)

    def _validate_anndata(self, adata: AnnData | None = None, copy_if_view: bool = True) -> AnnData:
        """scvi-tools' validation, after checking that ``adata`` has the training genes in their order."""
        if adata is not None and self.adata_manager is not None:
            genes = self.adata_manager.get_state_registry(REGISTRY_KEYS.X_KEY).column_names
            check_same_genes(adata, genes, type(self).__name__)
        return super()._validate_anndata(adata, copy_if_view)

    def _build_module(self, **model_kwargs):
        """The module of ``_module_cls`` for the registered data, with the architecture in ``model_kwargs``.

        The data give the number of genes and batches and the per-batch library prior; ``model_kwargs``
        (checked first) go to the module unchanged, as scvi-tools models pass theirs.
        """
        check_architecture(model_kwargs)
        for key in _HIDDEN_KEYS:
            if key in model_kwargs:
                model_kwargs[key] = tuple(model_kwargs[key])
        if "layer_order" in model_kwargs:
            model_kwargs["layer_order"] = validate_layer_order(
                model_kwargs["layer_order"] or DEFAULT_LAYER_ORDER
            )
        n_batch = self.summary_stats.n_batch
        codes = self.get_from_registry(self.adata, REGISTRY_KEYS.BATCH_KEY).ravel().astype(int)
        layer = self.adata_manager.data_registry[REGISTRY_KEYS.X_KEY].attr_key
        means, variances = library_log_prior(self.adata, layer, codes, n_batch)
        return self._module_cls(
            n_input=self.summary_stats.n_vars,
            n_batch=n_batch,
            library_log_means=torch.as_tensor(means),
            library_log_vars=torch.as_tensor(variances),
            **model_kwargs,
        )

    def train(
        self,
        max_epochs: int | None = None,
        batch_size: int = 128,
        n_epochs_kl_warmup: int | None = None,
        min_kl_weight: float = 0.1,
        max_kl_weight: float = 1.0,
        lr: float = 1e-3,
        plan_kwargs: dict | None = None,
        **kwargs,
    ):
        """Train the model with scvi-tools' Lightning machinery.

        The KL weight ramps linearly from ``min_kl_weight`` to ``max_kl_weight`` over
        ``n_epochs_kl_warmup`` epochs (scSpecies: 0.1 -> 1 over 10 epochs).

        The number of epochs follows the data size as in scvi-tools (a bounded number of gradient
        steps): ``max_epochs=None`` trains 40 epochs up to 20,000 cells (the scSpecies recipe, and what
        the benchmarks use) and ``round(40 * 20,000 / n_cells)`` above (8 at 100,000 cells, 1 from
        800,000), see :func:`~xspecies.model._base.default_max_epochs`; the KL ramp then lasts a quarter
        of those epochs (10 at 40 epochs), so it ends at the same share of the training at every size.

        Parameters
        ----------
        max_epochs
            Number of epochs; ``None``: from the number of cells (above).
        batch_size
            Minibatch size.
        n_epochs_kl_warmup
            Epochs of the KL ramp; ``None``: 10 when ``max_epochs`` is given, a quarter of the epochs
            (rounded up) when they follow the data size; ``0``: no ramp (``max_kl_weight`` throughout).
        min_kl_weight, max_kl_weight
            Start and end of the KL weight ramp.
        lr
            Learning rate of Adam.
        plan_kwargs
            More arguments of the training plan (they override the ones above).
        **kwargs
            Passed to :meth:`scvi.model.base.UnsupervisedTrainingMixin.train`, e.g. ``accelerator``,
            ``devices``, ``strategy``, ``train_size``, ``early_stopping``, ``enable_progress_bar``.

        Returns
        -------
        None
            The training history is in :attr:`history`.

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import xspecies as xs
        >>> context, target = xs.datasets.pancreas_models()
        >>> mouse, human = context.adata, target.adata

        Training continues from the current weights; without ``max_epochs`` the number of epochs follows
        the data size (40 for the demo's 1,886 cells):

        >>> context.train(max_epochs=2, batch_size=128, lr=1e-3, enable_progress_bar=False)
        >>> context.history["elbo_train"].shape  # the first epoch and these two
        (3, 1)
        """
        n_epochs = self._epochs(max_epochs)
        batch_size = check_int("batch_size", batch_size)
        self._check_train_size(kwargs.get("train_size"))
        for name, value in (("min_kl_weight", min_kl_weight), ("max_kl_weight", max_kl_weight)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}.")
        if n_epochs_kl_warmup is not None:
            check_int("n_epochs_kl_warmup", n_epochs_kl_warmup, minimum=0)
        plan = {
            "n_epochs_kl_warmup": ramp_epochs(n_epochs_kl_warmup, max_epochs, n_epochs, 4, RAMP_EPOCHS),
            "min_kl_weight": min_kl_weight,
            "max_kl_weight": max_kl_weight,
            "lr": lr,
            **(plan_kwargs or {}),
        }
        was_trained = self.is_trained_
        result = super().train(max_epochs=n_epochs, batch_size=batch_size, plan_kwargs=plan, **kwargs)
        # scvi-tools marks the model trained even when no epoch ran (max_steps=0, an interrupted fit);
        # the history counts the finished epochs also where they ran in other processes (ddp_spawn)
        finished = len((self.history_ or {}).get("train_loss", ()))
        self.is_trained_ = was_trained or self.trainer.current_epoch >= 1 or finished >= 1
        return result

    def _epochs(self, max_epochs: int | None) -> int:
        """``max_epochs`` checked, or :func:`default_max_epochs` of the model's cells for ``None``."""
        if max_epochs is None:
            return default_max_epochs(self.adata.n_obs)
        return check_int("max_epochs", max_epochs)

    def _check_train_size(self, train_size) -> None:
        """Raise before training on a training set that cannot work (fewer than 3 cells)."""
        share = 0.9 if train_size is None else train_size
        if not (isinstance(share, int | float) and 0 < share <= 1):
            raise ValueError(f"train_size must lie in (0, 1], got {train_size!r}.")
        n_train = math.ceil(share * self.adata.n_obs)
        if n_train < 3:
            raise ValueError(
                f"Training needs at least 3 training cells; the AnnData has {self.adata.n_obs} cells and "
                f"train_size={share} keeps {n_train}."
            )

    # --- representations -------------------------------------------------------------------------
    def _encoded(self, key: str, adata: AnnData | None, indices, batch_size: int | None) -> np.ndarray:
        adata = self._validate_anndata(adata)
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        self.module.eval()
        out = []
        with torch.inference_mode():
            for tensors in loader:
                enc = self.module.encode(
                    tensors[REGISTRY_KEYS.X_KEY].to(self.device),
                    tensors[REGISTRY_KEYS.BATCH_KEY].to(self.device),
                )
                out.append(enc[key].cpu())
        return torch.cat(out).numpy()

    def get_intermediate_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Outer encoder output (input of the shared inner encoder) of every cell, in evaluation mode.

        Parameters
        ----------
        adata
            Data set up like the training data (default: the model's).
        indices
            Cells to encode (default all).
        batch_size
            Minibatch size.

        Returns
        -------
        numpy.ndarray
            ``(n_cells, outer_hidden[-1])``.

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import xspecies as xs
        >>> context, target = xs.datasets.pancreas_models()
        >>> mouse, human = context.adata, target.adata

        >>> inter = context.get_intermediate_representation()
        >>> inter.shape  # (n_cells, outer_hidden[-1])
        (300, 300)
        """
        self._check_if_trained(warn=False)
        return self._encoded("inter", adata, indices, batch_size)

    def _batch_codes(self, batch, n: int) -> np.ndarray:
        mapping = list(self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping)
        values = np.broadcast_to(np.asarray(batch, dtype=object), (n,))
        codes = np.empty(n, dtype=np.int64)
        for i, v in enumerate(values):
            if v in mapping:
                codes[i] = mapping.index(v)
            elif isinstance(v, int | np.integer) and 0 <= int(v) < len(mapping):
                codes[i] = int(v)
            else:
                raise ValueError(f"Unknown batch {v!r}; the model knows {mapping}.")
        return codes

    @torch.inference_mode()
    def decode_expression(
        self, z: np.ndarray, batch, library: float | np.ndarray | None = None, batch_size: int = 1024
    ) -> dict[str, np.ndarray]:
        """Decode latent vectors into normalised expression for the given batches.

        Parameters
        ----------
        z
            Latent vectors ``(n, n_latent)``.
        batch
            Batch of every row (a category of the model's ``batch_key`` or its integer code); a scalar
            applies to all rows.
        library
            Library size(s) multiplying ``rho`` to give ``mu`` (default ``1e4``).
        batch_size
            Rows decoded at once.

        Returns
        -------
        dict
            ``"rho"``: ``(n, n_genes)`` normalised expression (rows sum to 1); ``"mu"``: ``rho * library``;
            ``"dropout"``: the probability of a zero-inflation zero (0 with ``gene_likelihood="nb"``), so
            that the model's expected count is ``(1 - dropout) * mu``.

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import xspecies as xs
        >>> context, target = xs.datasets.pancreas_models()
        >>> mouse, human = context.adata, target.adata

        >>> z = context.get_latent_representation()[:5]
        >>> out = context.decode_expression(z, batch=mouse.obs["donor"].to_numpy()[:5])
        >>> bool(np.allclose(out["rho"].sum(axis=1), 1.0, atol=1e-4))  # normalised: rows sum to 1
        True
        >>> out["mu"].shape  # (5, n_mouse_genes), rho * 1e4
        (5, 4313)

        The same context latents decoded by the target (human) decoder, as one human donor:

        >>> human_mu = target.decode_expression(z, batch=human.obs["donor"].iloc[0], library=5e3)["mu"]
        >>> human_mu.shape  # (5, n_human_genes)
        (5, 4676)
        """
        self._check_if_trained()
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.module.n_latent:
            raise ValueError(f"z must have shape (n, {self.module.n_latent}), got {z.shape}.")
        codes = self._batch_codes(batch, z.shape[0])
        lib = np.broadcast_to(
            np.asarray(1e4 if library is None else library, dtype=np.float32), (z.shape[0],)
        )
        self.module.eval()
        rho = np.zeros((z.shape[0], self.module.n_input), dtype=np.float32)
        dropout = np.zeros_like(rho)
        for start in range(0, z.shape[0], batch_size):
            zt = torch.as_tensor(z[start : start + batch_size], device=self.device)
            bt = torch.as_tensor(codes[start : start + batch_size], device=self.device)
            part, _, zi_logits = self.module.decoder(zt, bt)
            rho[start : start + batch_size] = part.cpu().numpy()
            if zi_logits is not None:
                dropout[start : start + batch_size] = torch.sigmoid(zi_logits).cpu().numpy()
        return {"rho": rho, "mu": rho * lib[:, None], "dropout": dropout}

    # --- saving and loading ----------------------------------------------------------------------
    def save(
        self,
        dir_path: str | Path,
        prefix: str | None = None,
        overwrite: bool = False,
        save_anndata: bool = False,
        **kwargs,
    ) -> None:
        """Save the model (and optionally its AnnData) to a folder, atomically.

        The folder is built beside ``dir_path`` and swapped in when complete: an interrupted save
        leaves a previous folder intact, and a save without the data leaves no older ``adata.h5ad``
        behind (files of other prefixes and other files of the folder are kept).

        Parameters
        ----------
        dir_path
            Folder to write.
        prefix
            File-name prefix (several models in one folder).
        overwrite
            Replace the model files of an existing folder; otherwise an existing folder raises
            :class:`FileExistsError`.
        save_anndata
            Also save the AnnData (needed to load the model without passing data).
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.save`.

        Returns
        -------
        None

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import xspecies as xs
        >>> context, target = xs.datasets.pancreas_models()
        >>> mouse, human = context.adata, target.adata

        >>> context.save("models/context", save_anndata=True, overwrite=True)
        """
        owned = {f"{prefix or ''}{name}" for name in SAVED_FILES}
        with atomic_dir(dir_path, overwrite=overwrite, keep=lambda name: name not in owned) as tmp:
            super().save(str(tmp), prefix=prefix, overwrite=True, save_anndata=save_anndata, **kwargs)

    @classmethod
    def load(cls, dir_path: str, adata: AnnData | None = None, prefix: str | None = None, **kwargs):
        """Load a saved model; refuses an AnnData whose genes differ from the training genes.

        Parameters
        ----------
        dir_path
            Folder written by :meth:`save`.
        adata
            Data to attach (same genes, in the same order, as at training); default: the AnnData
            saved with the model (``save(..., save_anndata=True)``).
        prefix
            File-name prefix used when saving.
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.load` (``accelerator``, ``device``...).

        Returns
        -------
        The loaded model.

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import xspecies as xs
        >>> context, target = xs.datasets.pancreas_models()
        >>> mouse, human = context.adata, target.adata

        >>> context.save("models/context", save_anndata=True, overwrite=True)
        >>> context = xs.model.ContextModel.load("models/context")
        >>> context = xs.model.ContextModel.load("models/context", adata=mouse)  # same genes as at training
        """
        folder = Path(dir_path)
        path = folder / f"{prefix or ''}model.pt"
        if not folder.is_dir():
            aside = sorted(folder.parent.glob(f".{folder.name}.old-*"))
            hint = f" (an interrupted save left the previous folder at {str(aside[0])!r})" if aside else ""
            raise FileNotFoundError(f"No saved model at {str(folder)!r}: the folder does not exist{hint}.")
        if not path.is_file():
            raise FileNotFoundError(f"No saved model in {str(folder)!r}: {path.name} is missing.")
        if adata is None and not (folder / f"{prefix or ''}adata.h5ad").is_file():
            raise FileNotFoundError(
                f"{str(folder)!r} holds no saved data (saved with save_anndata=False): pass the data the "
                f"model was trained on, {cls.__name__}.load(dir_path, adata=...)."
            )
        if isinstance(adata, AnnData):
            saved = torch.load(path, map_location="cpu", weights_only=False)["var_names"]
            new = adata.var_names.astype(str).to_numpy()
            if len(saved) != len(new) or not np.array_equal(np.asarray(saved, dtype=str), new):
                missing = [g for g in saved if g not in set(new)][:5]
                raise ValueError(
                    f"The genes of `adata` ({len(new)}) differ from the {len(saved)} genes the "
                    f"{cls.__name__} was trained on (e.g. missing: {missing}); subset and order "
                    "adata.var_names like the training data."
                )
        return super().load(dir_path, adata=adata, prefix=prefix, **kwargs)
