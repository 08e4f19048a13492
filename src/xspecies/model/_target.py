"""The target model: a new species aligned to a trained context model through the shared inner encoder."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data.fields import NumericalObsField, ObsmField
from tqdm.auto import tqdm

from xspecies._docs import doc_layer, doc_params
from xspecies._results import stored_params
from xspecies._validation import check_int, context_fingerprint

from ._base import (
    RAMP_EPOCHS,
    SpeciesModelBase,
    check_architecture,
    check_setup_inputs,
    ramp_epochs,
    require_trained,
)
from ._blocks import candidate_order, pair_segments, row_chunks
from ._context import ContextModel
from ._likelihoods import DecodedTable
from ._module import NEIGHBORS_KEY, TOP_PERCENT_KEY, TargetVAE
from ._training import AlignmentTrainingPlan, PartnerLoaders

#: Largest piece of a table (rows x genes) of candidates decoded at once by the similarity.
_TABLE_LIMIT = 60_000_000
#: Candidates of one cell evaluated together against a decoded piece of a table.
_PAIR_WIDTH = 32
#: Elements (cells x candidates x genes) evaluated at once when comparing likelihoods.
_CHUNK_ELEMENTS = 1 << 21
#: Epochs between two choices of the alignment partners when ``max_epochs`` is given.
PARTNER_REFRESH = 5
#: Cells per minibatch of the partner refresh.
PARTNER_BATCH_SIZE = 256
#: Former name of ``n_candidates`` (xspecies < 0.2), still found in the saves of that time.
_FORMER_NAME = "k_neigh"
#: Architecture arguments a target may set differently from its context (the others feed or are the
#: shared inner encoder).
TARGET_ARCHITECTURE = (
    "outer_hidden",
    "decoder_hidden",
    "library_hidden",
    "gene_likelihood",
    "dispersion",
    "use_library_encoder",
)


def _decode_rows(module, z: torch.Tensor, code: int, chunk: int = 4096):
    """Decoder outputs ``(rho, theta, zi)`` of the latents ``z`` for batch ``code``, ``chunk`` rows at a time.

    The outputs are filled in place, so that the decoder's temporaries never exceed one chunk. ``theta``
    has a row per latent for ``dispersion="gene-cell"``; otherwise it is the same for every row (one
    batch) and is returned once, per gene.
    """
    per_row = module.dispersion == "gene-cell"
    rho = theta = zi = None
    for start in range(0, z.shape[0], chunk):
        part = z[start : start + chunk]
        r, t, p = module.decoder(part, torch.full((part.shape[0],), code, device=z.device))
        if rho is None:
            rho = r.new_empty((z.shape[0], r.shape[1]))
            zi = None if p is None else r.new_empty(rho.shape)
            theta = r.new_empty(rho.shape) if per_row else t.reshape(-1, t.shape[-1])[0]
        rows = slice(start, start + part.shape[0])
        rho[rows] = r
        if zi is not None:
            zi[rows] = p
        if per_row:
            theta[rows] = t
    return rho, theta, zi


def _label_consistent(
    adata: AnnData, context_adata: AnnData, homology_key: str, n_candidates: int
) -> np.ndarray:
    """``(n_target, n_candidates)`` mask: which data-level neighbours carry the target cell's voted label.

    All True when the neighbour search voted no labels (or the context lacks them).
    """
    neighbors = np.asarray(adata.obsm[f"{homology_key}_neighbors"])[:, :n_candidates]
    labels_key = stored_params(adata.uns[homology_key]).get("labels_key") or ""
    voted_key = f"{homology_key}_{labels_key}"
    if not labels_key or voted_key not in adata.obs or labels_key not in context_adata.obs:
        return np.ones(neighbors.shape, dtype=bool)
    context_labels = context_adata.obs[labels_key].astype(str).to_numpy()
    voted = adata.obs[voted_key].astype(str).to_numpy()
    return context_labels[neighbors] == voted[:, None]


def check_context_search(info: dict, context_adata: AnnData, homology_key: str = "homology") -> None:
    """Raise unless the neighbour search recorded in ``info`` (``uns[homology_key]``) ran on ``context_adata``.

    The search records :func:`~xspecies._validation.context_fingerprint` of its context (cell and gene
    names, in order); the same cells in another order, or other cells of the same count, are refused.
    Results of an older search without a fingerprint are checked by their cell count only, with a
    warning.
    """
    n_ctx = context_adata.n_obs
    if int(info.get("context_n_obs", n_ctx)) != n_ctx:
        raise ValueError(
            f"The neighbour search used a context with {info.get('context_n_obs')} cells but the context "
            f"model has {n_ctx}: run homology_neighbors with the context model's AnnData."
        )
    recorded = info.get("context_fingerprint")
    if recorded is None:
        warnings.warn(
            f"uns[{homology_key!r}] holds no context fingerprint (a search by an older xspecies): only the "
            "context's cell count was checked. Run xspecies.pp.homology_neighbors(target, context.adata) "
            "again so that the cells and genes are checked.",
            UserWarning,
            stacklevel=3,
        )
    elif str(recorded) != context_fingerprint(context_adata):
        raise ValueError(
            f"The neighbour search in uns[{homology_key!r}] ran on another context than the context model's "
            f"AnnData: same number of cells ({n_ctx}) but other cells or genes, or another order. Run "
            "xspecies.pp.homology_neighbors(target, context.adata) again, or use the context model "
            "trained on the AnnData that was searched."
        )


def check_built_from(target: TargetModel, context: ContextModel) -> None:
    """Raise unless ``target`` was built by :meth:`TargetModel.from_context` from ``context``'s data.

    Compares the context fingerprint recorded at :meth:`TargetModel.from_context` with the context
    model's AnnData now (cells and genes, in order); a target saved before fingerprints existed is
    checked by the context's genes and cell count.
    """
    recorded = getattr(target, "context_fingerprint_", None)
    if recorded is not None:
        same = recorded == context_fingerprint(context.adata)
    else:
        saved = target.context_var_names_
        same_genes = saved is None or np.array_equal(saved, context.adata.var_names.astype(str).to_numpy())
        same = same_genes and context.adata.n_obs == target.module.context_qz_mean.shape[0]
    if not same:
        raise ValueError(
            "The target model was not built from this context model: its cells or genes (or their order) "
            "differ from the context TargetModel.from_context was given."
        )


class TargetModel(SpeciesModelBase):
    """Variational autoencoder of a target species aligned to a :class:`ContextModel`.

    Build it with :meth:`from_context`: the target gets its own outer encoder, library encoder and
    decoder, and the context's inner encoder (frozen for ``alignment="inter"``, a trainable copy for
    ``"latent"``). During training, target cells whose data-level neighbour search is trusted
    (``obs["homology_top_percent"] <= top_percent``) are pulled towards the context cell that, among
    their ``n_candidates`` data-level neighbours, best explains their counts under the target decoder. When
    the neighbour search voted labels, only the neighbours of the cell's voted label are candidates (so
    a trusted T cell is pulled towards a context T cell even when most of its 25 neighbours are
    macrophages).
    Everything needed from the context is stored in the module's buffers, so a saved target model is
    self-contained.

    Parameters
    ----------
    adata
        Target AnnData registered with :meth:`setup_anndata`.
    n_context_obs
        Number of context cells (size of the stored context buffers).
    alignment
        ``"inter"``: align outer encoder outputs, inner encoder frozen; ``"latent"``: align latent means,
        inner encoder trainable.
    n_candidates
        Data-level neighbours considered as alignment candidates per aligned cell (formerly ``k_neigh``;
        models saved with that name load unchanged).
    top_percent
        Percentage of most trusted target cells that are aligned.
    candidate_z
        ``"mean"`` (decode the candidates' latent means, default) or ``"sample"`` (a posterior draw, as
        scSpecies).
    **model_kwargs
        Architecture, passed to :class:`~xspecies.model.TargetVAE` (``n_latent``, ``outer_hidden``,
        ``inner_hidden``, ``decoder_hidden``, ``library_hidden``, ``layer_order``, ``gene_likelihood``,
        ``dispersion``, ``use_library_encoder``; see :class:`ContextModel`). :meth:`from_context` passes
        the context's; the inner encoder and ``outer_hidden[-1]`` must match it.

    Examples
    --------
    A target model for 300 human cells of the pancreas demo, on a tiny mouse context model
    (:func:`xspecies.datasets.pancreas_models`):

    >>> import xspecies as xs
    >>> context, _ = xs.datasets.pancreas_models()
    >>> mouse, human = context.adata, xs.datasets.pancreas("human")[:300].copy()
    >>> xs.pp.translate_genes(human, "human", "mouse")
    >>> xs.pp.homology_neighbors(human, mouse, labels_key="cell_ontology_class")
    >>> xs.model.TargetModel.setup_anndata(human, batch_key="donor")
    >>> target = xs.model.TargetModel.from_context(context, human)
    >>> target.train(max_epochs=1, enable_progress_bar=False)  # 40 or more on real data
    >>> target.get_latent_representation().shape
    (300, 10)
    """

    _module_cls = TargetVAE
    _training_plan_cls = AlignmentTrainingPlan

    def __init__(
        self,
        adata: AnnData,
        n_context_obs: int,
        *,
        alignment: Literal["inter", "latent"] = "inter",
        n_candidates: int = 25,
        top_percent: float = 20.0,
        candidate_z: Literal["mean", "sample"] = "mean",
        **model_kwargs,
    ):
        super().__init__(adata)
        # saves of xspecies < 0.2 recorded n_candidates under its former name
        n_candidates = model_kwargs.pop(_FORMER_NAME, n_candidates)
        check_int("n_context_obs", n_context_obs)
        check_int("n_candidates", n_candidates)
        if not (math.isfinite(top_percent) and 0 < top_percent <= 100):
            raise ValueError(f"top_percent must lie in (0, 100], got {top_percent!r}.")
        self.module = self._build_module(
            n_context_obs=int(n_context_obs),
            n_obs=self.summary_stats.n_cells,
            alignment=alignment,
            freeze_inner=alignment == "inter",
            n_candidates=int(n_candidates),
            top_percent=float(top_percent),
            candidate_z=candidate_z,
            **model_kwargs,
        )
        self.homologous_genes_: tuple[np.ndarray, np.ndarray] | None = None
        self.context_var_names_: np.ndarray | None = None
        self.context_fingerprint_: str | None = None
        self._model_summary_string = (
            f"xspecies TargetModel: alignment={alignment}, n_candidates={n_candidates}, "
            f"top_percent={top_percent}, n_context_obs={n_context_obs}, "
            f"likelihood={self.module.gene_likelihood}, dispersion={self.module.dispersion}"
        )
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    @doc_params(layer=doc_layer)
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        batch_key: str | None = None,
        labels_key: str | None = None,
        homology_key: str | None = "homology",
        **kwargs,
    ):
        """Register a target AnnData (raw counts plus the data-level neighbour search results).

        Parameters
        ----------
        adata
            Target AnnData with raw counts, processed by :func:`xspecies.pp.homology_neighbors`.
        {layer}
        batch_key
            ``obs`` column with the batch; ``None``: one batch.
        labels_key
            Optional ``obs`` column with known target labels (not used in training).
        homology_key
            ``key_added`` of :func:`xspecies.pp.homology_neighbors`: registers
            ``obsm["<key>_neighbors"]`` and ``obs["<key>_top_percent"]`` so that minibatches carry them.
            ``None`` registers no neighbours (the model can then be trained without alignment only).
            Otherwise ``obs["_indices"]`` (the cell positions, as in scvi-tools' DestVI and MrVI) is
            added and registered, so that training can remember each cell's alignment partner.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.

        Returns
        -------
        None
            Registers the fields in the AnnData's scvi-tools manager.

        Examples
        --------
        >>> import xspecies as xs
        >>> mouse, human = xs.datasets.pancreas("mouse"), xs.datasets.pancreas("human")
        >>> xs.pp.translate_genes(human, "human", "mouse")
        >>> xs.pp.homology_neighbors(human, mouse, labels_key="cell_ontology_class")
        >>> xs.model.TargetModel.setup_anndata(human, batch_key="donor", labels_key="cell_ontology_class")
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        check_setup_inputs(adata, layer, batch_key, labels_key)
        if homology_key is not None:
            needed = [f"obsm[{homology_key + '_neighbors'!r}]", f"obs[{homology_key + '_top_percent'!r}]"]
            present = [f"{homology_key}_neighbors" in adata.obsm, f"{homology_key}_top_percent" in adata.obs]
            if not all(present):
                raise KeyError(
                    f"The target AnnData lacks {', '.join(n for n, p in zip(needed, present, strict=True) if not p)}: "
                    "run xspecies.pp.translate_genes and xspecies.pp.homology_neighbors(target, context) "
                    "first (or pass homology_key=None to train without alignment)."
                )
        extra = []
        if homology_key is not None:
            adata.obs["_indices"] = np.arange(adata.n_obs)
            extra = [
                ObsmField(NEIGHBORS_KEY, f"{homology_key}_neighbors"),
                NumericalObsField(TOP_PERCENT_KEY, f"{homology_key}_top_percent"),
                NumericalObsField(REGISTRY_KEYS.INDICES_KEY, "_indices"),
            ]
        cls._register_counts(adata, layer, batch_key, labels_key, setup_method_args, extra, **kwargs)

    @classmethod
    def from_context(
        cls,
        context: ContextModel,
        adata: AnnData,
        *,
        alignment: Literal["inter", "latent"] = "inter",
        n_candidates: int = 25,
        top_percent: float = 20.0,
        candidate_z: Literal["mean", "sample"] = "mean",
        **model_kwargs,
    ) -> TargetModel:
        """Create a target model that shares the inner encoder of a trained context model.

        As scvi-tools' :meth:`scvi.model.SCANVI.from_scvi_model`, the new model gets the context's
        architecture (its ``__init__`` arguments) updated with ``model_kwargs``.

        Parameters
        ----------
        context
            A trained :class:`ContextModel` (with its AnnData: the one passed to
            :func:`xspecies.pp.homology_neighbors`).
        adata
            Target AnnData registered with :meth:`setup_anndata`.
        alignment
            ``"inter"`` (default; inner encoder frozen: no gradients, evaluation mode) or ``"latent"``
            (a trainable copy; latent means are aligned).
        n_candidates
            Data-level neighbours considered as alignment candidates per cell (formerly ``k_neigh``).
        top_percent
            Align the cells with ``obs["<homology_key>_top_percent"] <= top_percent``.
        candidate_z
            ``"mean"`` or ``"sample"``, see :class:`TargetModel`.
        **model_kwargs
            Target architecture where it differs from the context's: ``outer_hidden``,
            ``decoder_hidden``, ``library_hidden``, ``gene_likelihood``, ``dispersion``,
            ``use_library_encoder``. ``outer_hidden[-1]`` must equal the context's.

        Returns
        -------
        TargetModel
            The untrained target model, holding copies of everything it needs from the context.

        Raises
        ------
        NotTrainedError
            When the context model is not trained.
        TypeError
            On an architecture argument the target cannot set (``n_latent``, ``inner_hidden`` and
            ``layer_order`` are the shared inner encoder's) or an unknown argument.
        ValueError
            When the neighbour search in ``adata.uns`` ran on another context than ``context.adata``
            (other cells or genes, or another order; checked by the fingerprint that
            :func:`xspecies.pp.homology_neighbors` records), or on a bad ``n_candidates``/``top_percent``.

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import xspecies as xs
        >>> context, target = xs.datasets.pancreas_models()
        >>> mouse, human = context.adata, target.adata

        >>> target = xs.model.TargetModel.from_context(context, human, alignment="inter", n_candidates=25)
        >>> len(target.homologous_genes_[0])  # target genes shared with the context through orthologs
        3840

        ``alignment="latent"`` trains a copy of the inner encoder and aligns latent means:

        >>> latent_target = xs.model.TargetModel.from_context(context, human, alignment="latent")
        """
        homology_key, target_idx, context_idx = cls._check_context(context, adata, n_candidates, model_kwargs)
        model = cls(
            adata,
            n_context_obs=context.adata.n_obs,
            alignment=alignment,
            n_candidates=n_candidates,
            top_percent=top_percent,
            candidate_z=candidate_z,
            **{**context.init_params_["non_kwargs"], **model_kwargs},
        )
        if model.module.outer_encoder.n_out != context.module.outer_encoder.n_out:
            raise ValueError(
                f"outer_hidden[-1] must equal the context's ({context.module.outer_encoder.n_out}) to feed "
                "the shared inner encoder."
            )
        model._copy_context(context, homology_key, target_idx, context_idx)
        return model

    def _copy_context(
        self, context: ContextModel, homology_key: str, target_idx: np.ndarray, context_idx: np.ndarray
    ) -> None:
        """Fill the module's context buffers and the model's context records from a checked ``context``."""
        module = self.module
        module.inner_encoder.load_state_dict(context.module.inner_encoder.state_dict())
        qz_mean, qz_var = context.get_latent_representation(return_dist=True)
        rep = context.get_intermediate_representation() if module.alignment == "inter" else qz_mean
        with torch.no_grad():
            module.context_qz_mean.copy_(torch.as_tensor(qz_mean))
            module.context_qz_var.copy_(torch.as_tensor(qz_var))
            module.context_rep.copy_(torch.as_tensor(rep))
        allowed = _label_consistent(self.adata, context.adata, homology_key, module.n_candidates)
        module.allowed.copy_(torch.as_tensor(allowed))
        self.homologous_genes_ = (target_idx, context_idx)
        self.context_var_names_ = context.adata.var_names.astype(str).to_numpy()
        self.context_fingerprint_ = context_fingerprint(context.adata)

    @classmethod
    def _check_context(
        cls, context: ContextModel, adata: AnnData, n_candidates: int, model_kwargs: dict
    ) -> tuple[str, np.ndarray, np.ndarray]:
        """Check what :meth:`from_context` needs, before any work: arguments, models, registration, search.

        The neighbour search must have run against ``context.adata`` itself (same cells and genes, in the
        same order: :func:`~xspecies._validation.context_fingerprint` recorded by
        :func:`xspecies.pp.homology_neighbors`).

        Returns the registered homology key and the target and context indices of the homologous genes.
        """
        for key in model_kwargs:
            if key == _FORMER_NAME:
                raise TypeError(
                    f"{_FORMER_NAME} was renamed n_candidates in xspecies 0.2: pass n_candidates=."
                )
            if key not in TARGET_ARCHITECTURE:
                shared = key in ("n_latent", "inner_hidden", "layer_order")
                raise TypeError(
                    f"from_context() got the argument {key!r}, which "
                    + (
                        "the target takes from the context's shared inner encoder"
                        if shared
                        else "it does not take"
                    )
                    + f"; the target architecture arguments are {list(TARGET_ARCHITECTURE)}."
                )
        check_architecture(model_kwargs)
        if not isinstance(context, ContextModel):
            raise TypeError(f"context must be a ContextModel, got {type(context).__name__}.")
        require_trained(context, "context")
        if context.adata is None:
            raise ValueError("The context model has no AnnData attached; load it with its data.")
        manager = cls._get_most_recent_anndata_manager(adata, required=False)
        if manager is None:
            raise ValueError("Register the target AnnData first: TargetModel.setup_anndata(adata, ...).")
        homology_key = manager.registry["setup_args"].get("homology_key")
        if homology_key is None:
            raise ValueError(
                "from_context needs the neighbour search: setup_anndata(..., homology_key='homology')."
            )
        info = adata.uns.get(homology_key)
        if not isinstance(info, dict):
            raise KeyError(
                f"adata.uns[{homology_key!r}] is missing: run xspecies.pp.homology_neighbors first."
            )
        check_context_search(info, context.adata, homology_key)
        check_int("n_candidates", n_candidates)
        n_found = adata.obsm[f"{homology_key}_neighbors"].shape[1]
        if n_found < n_candidates:
            raise ValueError(
                f"n_candidates={n_candidates} exceeds the {n_found} neighbours found by homology_neighbors."
            )
        target_idx = adata.var_names.get_indexer(list(info.get("target_genes", [])))
        context_idx = context.adata.var_names.get_indexer(list(info.get("context_genes", [])))
        keep = (target_idx >= 0) & (context_idx >= 0) if len(target_idx) == len(context_idx) else []
        if not np.any(keep):
            raise ValueError(
                "The context and target share no homologous genes (uns[homology]['target_genes'] is empty "
                "or absent from the data): check translate_genes and the species."
            )
        return homology_key, target_idx[keep].astype(np.int64), context_idx[keep].astype(np.int64)

    def train(
        self,
        max_epochs: int | None = None,
        eta_start: float = 10.0,
        eta_max: float = 25.0,
        n_epochs_eta_warmup: int | None = None,
        partner_refresh: int | None = None,
        train_size: float = 1.0,
        plan_kwargs: dict | None = None,
        **kwargs,
    ):
        """Train the target model; the alignment weight ``eta`` ramps from ``eta_start`` to ``eta_max``.

        Each trusted target cell (``top_percent`` of :meth:`from_context`) is pulled towards its
        *partner*: the one of its ``n_candidates`` data-level neighbours whose latent, decoded by the target
        decoder, best explains its counts. Partners are chosen at the first epoch and anew every
        ``partner_refresh`` epochs as the decoder improves (scSpecies chooses at every step, which costs
        more than the rest of the training step; the choice changes little from one epoch to the next).

        As :meth:`ContextModel.train`, ``max_epochs=None`` follows the number of target cells (40
        epochs up to 20,000 cells, ``round(40 * 20,000 / n_cells)`` above); the eta ramp then lasts a
        quarter of the epochs and partners are chosen every eighth of them (10 and 5 at 40 epochs).

        Parameters
        ----------
        max_epochs
            Number of epochs; ``None``: from the number of target cells.
        eta_start, eta_max
            Start and end of the linear ramp of the alignment weight (scSpecies: 10 -> 25 over 10
            epochs); ``eta_max=0`` trains without alignment.
        n_epochs_eta_warmup
            Epochs of the eta ramp; ``None``: 10 when ``max_epochs`` is given, a quarter of the epochs
            (rounded up) when they follow the data size; ``0``: ``eta_max`` throughout.
        partner_refresh
            Epochs between two choices of the alignment partners; ``None``: 5 when ``max_epochs`` is
            given, an eighth of the epochs (rounded up) when they follow the data size.
        train_size
            Share of the cells trained on; all by default, so that every trusted cell is aligned
            (scvi-tools' usual 0.9 would hold out a tenth of the anchors, e.g. the only anchor of a rare
            type).
        plan_kwargs
            More training-plan arguments.
        **kwargs
            Passed to :meth:`ContextModel.train` (``batch_size``, KL ramp, ``accelerator``...).

        Returns
        -------
        None
            The training history (with ``alignment_train``) is in :attr:`history`.

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import xspecies as xs
        >>> context, target = xs.datasets.pancreas_models()
        >>> mouse, human = context.adata, target.adata

        On real data train for 40 epochs or more:

        >>> target.train(max_epochs=2, eta_start=10.0, eta_max=25.0, partner_refresh=1, enable_progress_bar=False)
        >>> target.history["alignment_train"].shape  # the first epoch and these two
        (3, 1)

        Without alignment, for comparison:

        >>> baseline = xs.model.TargetModel.from_context(context, human)
        >>> baseline.train(max_epochs=1, eta_max=0, enable_progress_bar=False)
        """
        for name, value in (("eta_start", eta_start), ("eta_max", eta_max)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
        n_epochs = self._epochs(max_epochs)
        if n_epochs_eta_warmup is not None:
            check_int("n_epochs_eta_warmup", n_epochs_eta_warmup, minimum=0)
        if partner_refresh is not None:
            check_int("partner_refresh", partner_refresh)
        if eta_max > 0 and self.homologous_genes_ is None:
            raise ValueError(
                "The target model holds no context data: create it with TargetModel.from_context."
            )
        if eta_max > 0 and NEIGHBORS_KEY not in self.adata_manager.data_registry:
            raise ValueError(
                "Alignment needs the neighbour search: setup_anndata(..., homology_key='homology')."
            )
        plan = {
            "eta_start": eta_start,
            "eta_max": eta_max,
            "n_epochs_eta_warmup": ramp_epochs(n_epochs_eta_warmup, max_epochs, n_epochs, 4, RAMP_EPOCHS),
            "partner_refresh": ramp_epochs(partner_refresh, max_epochs, n_epochs, 8, PARTNER_REFRESH),
            "partner_loader": self._partner_loader() if eta_max > 0 else None,
            **(plan_kwargs or {}),
        }
        return super().train(max_epochs=max_epochs, plan_kwargs=plan, train_size=train_size, **kwargs)

    def _partner_loader(self) -> PartnerLoaders:
        """Data loaders over the target cells that are aligned (``top_percent`` below the threshold).

        Each training process reads its share of them (:class:`~xspecies.model._training.PartnerLoaders`).
        """
        top = np.asarray(self.get_from_registry(self.adata, TOP_PERCENT_KEY)).ravel()
        aligned = np.flatnonzero(top <= self.module.top_percent)
        if len(aligned) == 0:
            raise ValueError(
                f"No target cell has homology_top_percent <= top_percent={self.module.top_percent}: "
                "nothing to align."
            )
        # cells of one batch whose candidates lie close together share most of them: a minibatch of
        # such cells decodes each distinct (candidate, batch) pair once, at any number of cells
        batch = self.get_from_registry(self.adata, REGISTRY_KEYS.BATCH_KEY).ravel()[aligned]
        neighbors = np.asarray(self.get_from_registry(self.adata, NEIGHBORS_KEY))[aligned].astype(np.int64)
        z_context = self.module.context_qz_mean.cpu().numpy()
        aligned = np.concatenate(
            [
                aligned[rows][candidate_order(z_context, neighbors[rows])]
                for rows in (np.flatnonzero(batch == code) for code in np.unique(batch))
            ]
        )
        return PartnerLoaders(self.adata_manager, aligned, batch_size=PARTNER_BATCH_SIZE)

    # --- likelihood-based similarity ---------------------------------------------------------------
    @torch.inference_mode()
    def _similarity(
        self,
        z_table: np.ndarray,
        candidates: np.ndarray,
        indices: np.ndarray,
        batch_size: int | None,
        use_table: bool,
        progress_bar: bool = False,
    ) -> np.ndarray:
        """Similarity of target cells ``indices`` to rows ``candidates`` (per cell) of ``z_table``.

        Cells are processed one batch (of the data) at a time: the own fit of every cell, then its
        candidates (:meth:`_table_pairs` with ``use_table``, else :meth:`_latent_pairs`).
        """
        module = self.module
        module.eval()
        table = torch.as_tensor(np.asarray(z_table, dtype=np.float32), device=self.device)
        codes = self.get_from_registry(self.adata, REGISTRY_KEYS.BATCH_KEY).ravel()[indices].astype(np.int64)
        result = np.empty(candidates.shape, dtype=np.float32)
        bar = tqdm(total=result.size, desc="likelihood similarity", unit="pair", disable=not progress_bar)
        for code in np.unique(codes):
            rows = np.flatnonzero(codes == code)
            own, libs = [], []  # own latent, library and log-likelihood of every cell of this batch
            for x, batch in self._count_batches(indices[rows], int(code), batch_size):
                enc = module.encode(x, batch)
                lib = enc["library_mean"].reshape(-1)
                own.append(module.candidate_log_likelihood(x, enc["qz"].loc[:, None, :], batch, lib)[:, 0])
                libs.append(lib)
            own, libs = torch.cat(own), torch.cat(libs)
            pairs = self._table_pairs if use_table else self._latent_pairs
            result[rows] = pairs(table, candidates[rows], indices[rows], int(code), libs, batch_size, bar)
            result[rows] -= own.cpu().numpy()[:, None]
        bar.close()
        return result

    def _count_batches(self, indices: np.ndarray, code: int, batch_size: int | None):
        """Counts of the cells ``indices`` (in order) on the model's device, with their batch ``code``."""
        for tensors in self._make_data_loader(
            adata=self.adata, indices=indices, batch_size=batch_size or 256
        ):
            x = tensors[REGISTRY_KEYS.X_KEY].to(self.device)
            yield x, torch.full((x.shape[0],), code, device=self.device)

    def _latent_pairs(self, table, candidates, indices, code, libs, batch_size, bar) -> np.ndarray:
        """Log-likelihoods of cells of one batch under their own candidate latents (rows of ``table``)."""
        module, k = self.module, candidates.shape[1]
        step = max(1, _CHUNK_ELEMENTS // max(1, k * module.n_input))
        out, pos = np.empty(candidates.shape, dtype=np.float32), 0
        for x_all, batch in self._count_batches(indices, code, batch_size):
            for s in range(0, x_all.shape[0], step):
                x, cells = x_all[s : s + step], slice(pos + s, pos + s + min(step, x_all.shape[0] - s))
                idx = torch.as_tensor(candidates[cells], dtype=torch.int64, device=self.device)
                out[cells] = (
                    module.candidate_log_likelihood(x, table[idx], batch[: x.shape[0]], libs[cells])
                    .cpu()
                    .numpy()
                )
            pos += x_all.shape[0]
            bar.update(x_all.shape[0] * k)
        return out

    def _table_pairs(self, table, candidates, indices, code, libs, batch_size, bar) -> np.ndarray:
        """Log-likelihoods of cells of one batch under rows of ``table`` shared by many cells.

        The table rows the cells name are decoded once, in pieces of at most ``_TABLE_LIMIT`` values
        (rows x genes) of rows close together in the latent space
        (:func:`~xspecies.model._blocks.row_chunks`; one piece when they fit). Against a decoded piece
        (:class:`~xspecies.model._likelihoods.DecodedTable`), each cell that names rows of it is read
        and scored on them, up to ``_PAIR_WIDTH`` rows at a time
        (:func:`~xspecies.model._blocks.pair_segments`): the decoding work is that of the rows used,
        the memory bounded, and the work linear in the cells, however large the table.
        """
        module, device = self.module, self.device
        used, local = np.unique(candidates, return_inverse=True)
        local = local.reshape(candidates.shape)
        chunks = row_chunks(
            table[torch.as_tensor(used)].cpu().numpy(), max(1, _TABLE_LIMIT // module.n_input)
        )
        chunk_of = np.empty(len(used), dtype=np.int32)
        place = np.empty(len(used), dtype=np.int64)
        for c, members in enumerate(chunks):
            chunk_of[members], place[members] = c, np.arange(len(members))
        pair_chunk = chunk_of[local]
        width = min(_PAIR_WIDTH, candidates.shape[1])
        out = np.empty(candidates.shape, dtype=np.float32)
        for c, members in enumerate(chunks):
            rho, theta, zi = _decode_rows(module, table[torch.as_tensor(used[members])], code)
            decoded = DecodedTable(rho, theta, zi, module.dispersion == "gene-cell", libs)
            cells, slots = np.nonzero(pair_chunk == c)  # sorted by cell
            seg, col = pair_segments(cells, width)
            seg_rows = np.zeros((seg[-1] + 1, width), dtype=np.int64)
            seg_slot = np.full(seg_rows.shape, -1, dtype=np.int64)
            seg_cell = np.empty(len(seg_rows), dtype=np.int64)
            seg_rows[seg, col], seg_slot[seg, col], seg_cell[seg] = place[local[cells, slots]], slots, cells
            visited, start = np.unique(cells), 0
            for x, _ in self._count_batches(indices[visited], code, batch_size):
                loaded = visited[start : start + x.shape[0]]
                start += x.shape[0]
                nonzero = decoded.nonzero(x)
                n_nz = nonzero[2].sum(-1)
                lo, hi = np.searchsorted(seg_cell, [loaded[0], loaded[-1] + 1])
                step = max(1, _CHUNK_ELEMENTS // (width * max(1, int(n_nz.float().mean()))))
                for s in range(lo, hi, step):
                    part = slice(s, min(s + step, hi))
                    of_cell = torch.as_tensor(np.searchsorted(loaded, seg_cell[part]), device=device)
                    widest = int(n_nz[of_cell].max())  # the genes of a cell come non-zero first
                    ll = (
                        decoded.log_likelihood(
                            tuple(a[of_cell, :widest] for a in nonzero),
                            libs[torch.as_tensor(seg_cell[part], device=device)],
                            torch.as_tensor(seg_rows[part], device=device),
                        )
                        .cpu()
                        .numpy()
                    )
                    filled = seg_slot[part] >= 0
                    out[
                        np.broadcast_to(seg_cell[part, None], filled.shape)[filled], seg_slot[part][filled]
                    ] = ll[filled]
                    bar.update(int(filled.sum()))
        return out

    def likelihood_similarity(
        self,
        candidate_z: np.ndarray,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Likelihood-based similarity of target cells to candidate latents (e.g. of context cells).

        For target cell ``i`` and candidate ``j``: ``NLL(x_i | own z_i) - NLL(x_i | z_ij)``, both under
        the target decoder with the cell's batch and inferred library size (``own z`` is the posterior
        mean). Higher is more similar; ``~0`` means the candidate explains the counts as well as the
        cell's own latent.

        Parameters
        ----------
        candidate_z
            ``(n_cells, k, n_latent)`` candidate latents for the cells ``indices``.
        indices
            Target cells (default all, in order).
        batch_size
            Cells processed at once.

        Returns
        -------
        numpy.ndarray
            ``(n_cells, k)`` similarities.

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import xspecies as xs
        >>> context, target = xs.datasets.pancreas_models()
        >>> mouse, human = context.adata, target.adata

        Score the 25 closest data-level neighbours of every human cell and keep the best one:

        >>> neighbors = human.obsm["homology_neighbors"][:, :25]
        >>> z_mouse = context.get_latent_representation()
        >>> similarity = target.likelihood_similarity(z_mouse[neighbors])
        >>> similarity.shape
        (300, 25)
        >>> best = neighbors[np.arange(len(neighbors)), similarity.argmax(axis=1)]
        >>> best_type = mouse.obs["cell_ontology_class"].to_numpy()[best]  # a mouse type per human cell
        >>> best_type.shape
        (300,)
        """
        self._check_if_trained(warn=False)
        indices = np.arange(self.adata.n_obs) if indices is None else np.asarray(indices)
        candidate_z = np.asarray(candidate_z, dtype=np.float32)
        if (
            candidate_z.ndim != 3
            or candidate_z.shape[0] != len(indices)
            or candidate_z.shape[2] != self.module.n_latent
        ):
            raise ValueError(
                f"candidate_z must have shape ({len(indices)}, k, {self.module.n_latent}), got {candidate_z.shape}."
            )
        n, k, n_lat = candidate_z.shape
        table = candidate_z.reshape(n * k, n_lat)
        return self._similarity(table, np.arange(n * k).reshape(n, k), indices, batch_size, use_table=False)

    def similarity_to_table(
        self,
        z_table: np.ndarray,
        candidates: np.ndarray,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        progress_bar: bool = False,
    ) -> np.ndarray:
        """:meth:`likelihood_similarity` for candidates given as rows of a latent table.

        Faster when many cells share candidates (e.g. context cells): each table row that a cell names
        is decoded once per target batch, in pieces of at most ``6e7`` values (rows x genes) of rows
        close together in the latent space, so that the memory stays bounded and the work linear in
        the number of cells however large the table.

        Parameters
        ----------
        z_table
            ``(n_table, n_latent)`` latents (e.g. context latent means).
        candidates
            ``(n_cells, k)`` row indices into ``z_table`` for each target cell.
        indices
            Target cells (default all).
        batch_size
            Cells processed at once.
        progress_bar
            Show progress.

        Returns
        -------
        numpy.ndarray
            ``(n_cells, k)`` similarities.

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import xspecies as xs
        >>> context, target = xs.datasets.pancreas_models()
        >>> mouse, human = context.adata, target.adata

        All neighbours found by :func:`xspecies.pp.homology_neighbors`, each context latent decoded once:

        >>> z_mouse = context.get_latent_representation()
        >>> similarity = target.similarity_to_table(z_mouse, human.obsm["homology_neighbors"])
        >>> similarity.shape  # (n_human, n_neighbors)
        (300, 250)
        """
        self._check_if_trained(warn=False)
        indices = np.arange(self.adata.n_obs) if indices is None else np.asarray(indices)
        candidates = np.asarray(candidates)
        if candidates.ndim != 2 or candidates.shape[0] != len(indices):
            raise ValueError(f"candidates must have shape ({len(indices)}, k), got {candidates.shape}.")
        return self._similarity(
            z_table, candidates, indices, batch_size, use_table=True, progress_bar=progress_bar
        )
