"""The context model: an scVI-like model of the reference species whose inner encoder targets reuse."""

from __future__ import annotations

from collections.abc import Sequence

from anndata import AnnData

from xspecies._docs import doc_layer, doc_params

from ._base import SpeciesModelBase, check_setup_inputs
from ._module import SpeciesVAE
from ._nn import DEFAULT_LAYER_ORDER


class ContextModel(SpeciesModelBase):
    """Variational autoencoder of the context (reference) species.

    Counts (``log1p``-transformed) and the batch go through a species-specific *outer encoder*, a
    shared *inner encoder* (Gaussian latent, 10 dimensions by default), an optional library encoder
    with a per-batch log-normal prior, and a decoder of a ZINB (or NB) distribution. Target species
    models are built from it with :meth:`xspecies.model.TargetModel.from_context`.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata` (raw counts).
    n_latent
        Latent dimension.
    outer_hidden
        Hidden sizes of the outer encoder (its last size is the intermediate representation).
    inner_hidden
        Hidden sizes of the inner encoder.
    decoder_hidden
        Hidden sizes of the decoder.
    library_hidden
        Hidden sizes of the library encoder.
    layer_order
        Operations of each hidden layer, in order: ``"linear"``, ``"layer_norm"``, ``"batch_norm"``,
        ``("act", name_or_module[, (min, max)])`` (activation, optionally clipped), ``("dropout", rate)``.
        Default: linear, layer norm, ReLU, dropout 0.1.
    gene_likelihood
        ``"zinb"`` or ``"nb"``.
    dispersion
        ``"gene"``, ``"gene-batch"`` (default) or ``"gene-cell"``.
    use_library_encoder
        Infer library sizes (True) or use the observed totals.

    Examples
    --------
    >>> import xspecies as xs
    >>> mouse = xs.datasets.pancreas("mouse")
    >>> xs.model.ContextModel.setup_anndata(mouse, batch_key="donor", labels_key="cell_ontology_class")
    >>> context = xs.model.ContextModel(mouse)

    Training takes minutes on the demo (use ``max_epochs=40``); one epoch shows the calls:

    >>> context.train(max_epochs=1, enable_progress_bar=False)
    >>> mouse.obsm["X_xspecies"] = context.get_latent_representation()
    >>> mouse.obsm["X_xspecies"].shape
    (1886, 10)
    """

    _module_cls = SpeciesVAE

    def __init__(
        self,
        adata: AnnData,
        n_latent: int = 10,
        outer_hidden: Sequence[int] = (300,),
        inner_hidden: Sequence[int] = (200,),
        decoder_hidden: Sequence[int] = (200, 300),
        library_hidden: Sequence[int] = (200,),
        layer_order: Sequence = DEFAULT_LAYER_ORDER,
        gene_likelihood: str = "zinb",
        dispersion: str = "gene-batch",
        use_library_encoder: bool = True,
    ):
        super().__init__(adata)
        self.module = self._build_module(
            n_latent=n_latent,
            outer_hidden=outer_hidden,
            inner_hidden=inner_hidden,
            decoder_hidden=decoder_hidden,
            library_hidden=library_hidden,
            layer_order=layer_order,
            gene_likelihood=gene_likelihood,
            dispersion=dispersion,
            use_library_encoder=use_library_encoder,
        )
        self._model_summary_string = (
            f"xspecies ContextModel: n_latent={n_latent}, outer={tuple(outer_hidden)}, "
            f"inner={tuple(inner_hidden)}, decoder={tuple(decoder_hidden)}, likelihood={gene_likelihood}, "
            f"dispersion={dispersion}"
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
        **kwargs,
    ):
        """Register an AnnData with raw counts for the context model.

        Every stored value is checked before anything is registered: NaN, infinite, negative or
        non-integer counts, and missing (NaN) batches or labels, raise a ValueError naming the first
        offending cell (and gene).

        Parameters
        ----------
        adata
            AnnData with raw counts (``X`` or ``layers[layer]``); sparse matrices stay sparse.
        {layer}
        batch_key
            ``obs`` column with the batch (donor, sample...); ``None``: one batch.
        labels_key
            ``obs`` column with cell-type labels (used for label transfer and evaluation, not in
            training).
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.

        Returns
        -------
        None
            Registers the fields in the AnnData's scvi-tools manager.

        Examples
        --------
        >>> import xspecies as xs
        >>> mouse = xs.datasets.pancreas("mouse")
        >>> xs.model.ContextModel.setup_anndata(mouse, batch_key="donor", labels_key="cell_ontology_class")
        >>> context = xs.model.ContextModel(mouse)
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        check_setup_inputs(adata, layer, batch_key, labels_key)
        cls._register_counts(adata, layer, batch_key, labels_key, setup_method_args, **kwargs)
