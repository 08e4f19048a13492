"""PyTorch modules of the context and target models (scvi-tools ``BaseModuleClass`` subclasses)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn
from torch.distributions import Normal, kl_divergence

from ._likelihoods import (
    CELL_CHUNK,
    candidate_table_log_likelihood,
    count_log_likelihood,
    count_log_likelihood_exact,
)
from ._nn import DEFAULT_LAYER_ORDER, MLP, GaussianHead

#: Registry keys of the data-level neighbour search results carried by target minibatches.
NEIGHBORS_KEY = "homology_neighbors"
TOP_PERCENT_KEY = "homology_top_percent"

_DISPERSIONS = ("gene", "gene-batch", "gene-cell")
_LIKELIHOODS = ("nb", "zinb")


class CountDecoder(nn.Module):
    """Decoder ``(z, batch) -> (rho, theta, zi_logits)`` of a NB or ZINB observation model.

    Parameters
    ----------
    n_latent
        Latent dimension.
    n_output
        Number of genes.
    hidden
        Hidden layer sizes.
    layer_order
        Layer specification of the hidden layers.
    n_batch
        Number of batches (one-hot concatenated to ``z``).
    gene_likelihood
        ``"zinb"`` or ``"nb"``.
    dispersion
        ``"gene"`` (one per gene), ``"gene-batch"`` (one per gene and batch) or ``"gene-cell"``
        (decoded per cell); scSpecies calls these ``"dataset"``, ``"batch"`` and ``"cell"``.
    """

    def __init__(
        self,
        n_latent: int,
        n_output: int,
        hidden: Sequence[int],
        layer_order: Sequence,
        n_batch: int,
        gene_likelihood: str,
        dispersion: str,
    ):
        super().__init__()
        self.n_batch = n_batch
        self.dispersion = dispersion
        self.net = MLP(n_latent, hidden, layer_order, n_cat=n_batch)
        self.rho_logits = nn.Linear(self.net.n_out, n_output)
        self.zi_logits = nn.Linear(self.net.n_out, n_output) if gene_likelihood == "zinb" else None
        if dispersion == "gene":
            self.log_theta = nn.Parameter(torch.randn(n_output))
        elif dispersion == "gene-batch":
            self.log_theta = nn.Parameter(torch.randn(n_output, n_batch))
        else:
            self.log_theta = nn.Linear(self.net.n_out, n_output)

    def forward(self, z: torch.Tensor, batch_index: torch.Tensor):
        """Decode; returns normalised expression ``rho``, ``theta`` and zero-inflation logits (or None)."""
        h = self.net(z, batch_index)
        rho = torch.softmax(self.rho_logits(h), dim=-1)
        zi = self.zi_logits(h) if self.zi_logits is not None else None
        log_theta = self.log_theta(h) if self.dispersion == "gene-cell" else self.log_theta
        theta = torch.exp(torch.clamp(log_theta, max=15.0))
        if self.dispersion == "gene-batch":
            # one-hot rows pick each cell's batch column of the (genes x batches) table
            onehot = F.one_hot(batch_index.reshape(-1).long(), self.n_batch).to(z.dtype)
            theta = F.linear(onehot, theta).expand(rho.shape)
        return rho, theta, zi


class SpeciesVAE(BaseModuleClass):
    """Variational autoencoder of one species: outer encoder -> inner encoder -> decoder.

    The outer encoder maps ``log1p`` counts and the batch to an intermediate representation, the inner
    encoder maps it to a Gaussian latent posterior (the part shared between species), the optional
    library encoder infers the log library size with a per-batch log-normal prior (as scVI), and the
    decoder maps ``z`` and the batch to a NB or ZINB distribution.

    Parameters
    ----------
    n_input
        Number of genes.
    n_batch
        Number of batches.
    n_latent
        Latent dimension.
    outer_hidden, inner_hidden, decoder_hidden, library_hidden
        Hidden layer sizes of the outer encoder, inner encoder, decoder and library encoder.
    layer_order
        Operations of each hidden layer, see :func:`xspecies.model._nn.validate_layer_order`.
    gene_likelihood
        ``"zinb"`` or ``"nb"``.
    dispersion
        ``"gene"``, ``"gene-batch"`` or ``"gene-cell"``.
    use_library_encoder
        Infer the library size (True) or use the observed total counts (False).
    library_log_means, library_log_vars
        Per-batch mean and variance of the log library sizes (prior of the library encoder).

    Examples
    --------
    The module of a context model is ``context.module``; built directly:

    >>> import torch
    >>> import xspecies as xs
    >>> vae = xs.model.SpeciesVAE(n_input=2000, n_batch=2, n_latent=10)
    >>> x = torch.poisson(torch.full((8, 2000), 0.5))
    >>> vae.inference(x, torch.zeros(8, 1))["z"].shape
    torch.Size([8, 10])
    """

    def __init__(
        self,
        n_input: int,
        n_batch: int = 1,
        n_latent: int = 10,
        outer_hidden: Sequence[int] = (300,),
        inner_hidden: Sequence[int] = (200,),
        decoder_hidden: Sequence[int] = (200, 300),
        library_hidden: Sequence[int] = (200,),
        layer_order: Sequence = DEFAULT_LAYER_ORDER,
        gene_likelihood: str = "zinb",
        dispersion: str = "gene-batch",
        use_library_encoder: bool = True,
        library_log_means: torch.Tensor | None = None,
        library_log_vars: torch.Tensor | None = None,
    ):
        super().__init__()
        if gene_likelihood not in _LIKELIHOODS:
            raise ValueError(f"gene_likelihood must be one of {_LIKELIHOODS}, got {gene_likelihood!r}.")
        if dispersion not in _DISPERSIONS:
            raise ValueError(f"dispersion must be one of {_DISPERSIONS}, got {dispersion!r}.")
        self.n_input = n_input
        self.n_batch = n_batch
        self.n_latent = n_latent
        self.gene_likelihood = gene_likelihood
        self.dispersion = dispersion
        self.outer_encoder = MLP(n_input, outer_hidden, layer_order, n_cat=n_batch)
        self.inner_encoder = GaussianHead(self.outer_encoder.n_out, inner_hidden, n_latent, layer_order)
        self.library_encoder = (
            GaussianHead(n_input, library_hidden, 1, layer_order, n_cat=n_batch)
            if use_library_encoder
            else None
        )
        self.decoder = CountDecoder(
            n_latent, n_input, decoder_hidden, layer_order, n_batch, gene_likelihood, dispersion
        )
        means = torch.zeros(n_batch) if library_log_means is None else torch.as_tensor(library_log_means)
        variances = torch.ones(n_batch) if library_log_vars is None else torch.as_tensor(library_log_vars)
        self.register_buffer("library_log_means", means.float().reshape(-1))
        self.register_buffer("library_log_vars", variances.float().reshape(-1))

    # --- scvi-tools module interface -------------------------------------------------------------
    def _get_inference_input(self, tensors, **kwargs):
        return {"x": tensors[REGISTRY_KEYS.X_KEY], "batch_index": tensors[REGISTRY_KEYS.BATCH_KEY]}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs):
        return {
            "z": inference_outputs["z"],
            "library": inference_outputs["library"],
            "batch_index": tensors[REGISTRY_KEYS.BATCH_KEY],
        }

    def _library_prior(self, batch_index: torch.Tensor) -> Normal:
        b = batch_index.reshape(-1).long()
        return Normal(self.library_log_means[b][:, None], self.library_log_vars[b][:, None].sqrt())

    def encode(self, x: torch.Tensor, batch_index: torch.Tensor) -> dict:
        """Deterministic part of the inference: intermediate representation and posteriors.

        Parameters
        ----------
        x
            Counts ``(n_cells, n_genes)``.
        batch_index
            Batch codes ``(n_cells, 1)``.

        Returns
        -------
        dict
            ``"inter"``: outer encoder output ``(n_cells, outer_hidden[-1])``; ``"qz"``: Gaussian
            posterior of the latent; ``"ql"``: Gaussian posterior of the log library size (``None``
            without library encoder); ``"library_mean"``: its mean, or the observed log total counts
            without library encoder, ``(n_cells, 1)``.

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import torch
        >>> import xspecies as xs
        >>> context, _ = xs.datasets.pancreas_models()
        >>> mouse = context.adata
        >>> x = torch.as_tensor(mouse.X[:8].toarray())
        >>> batch_index = torch.as_tensor(mouse.obs["donor"].cat.codes.to_numpy()[:8, None])
        >>> out = context.module.encode(x, batch_index)
        >>> out["qz"].loc.shape, out["inter"].shape
        (torch.Size([8, 10]), torch.Size([8, 300]))
        """
        x_log = torch.log1p(x)
        inter = self.outer_encoder(x_log, batch_index)
        qz = self.inner_encoder(inter)
        if self.library_encoder is not None:
            ql = self.library_encoder(x_log, batch_index)
            ql = Normal(ql.loc + self._library_prior(batch_index).loc, ql.scale)
            library_mean = ql.loc
        else:
            ql = None
            library_mean = torch.log(x.sum(-1, keepdim=True).clamp(min=1.0))
        return {"inter": inter, "qz": qz, "ql": ql, "library_mean": library_mean}

    @auto_move_data
    def inference(self, x: torch.Tensor, batch_index: torch.Tensor, n_samples: int = 1) -> dict:
        """Encode counts: ``inter`` (outer encoder output), ``qz``, ``z``, ``ql`` and log ``library``.

        Parameters
        ----------
        x
            Counts ``(n_cells, n_genes)``.
        batch_index
            Batch codes ``(n_cells, 1)``.
        n_samples
            Number of posterior draws of ``z`` and ``library`` (a leading axis when above 1).

        Returns
        -------
        dict
            The outputs of :meth:`encode` plus ``"z"``, a draw from ``qz`` (``(n_cells, n_latent)``, or
            ``(n_samples, n_cells, n_latent)``), and ``"library"``, the log library size (a draw from
            ``ql``, or the observed log total counts).

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import torch
        >>> import xspecies as xs
        >>> context, _ = xs.datasets.pancreas_models()
        >>> mouse = context.adata
        >>> x = torch.as_tensor(mouse.X[:8].toarray())
        >>> batch_index = torch.as_tensor(mouse.obs["donor"].cat.codes.to_numpy()[:8, None])
        >>> out = context.module.inference(x, batch_index, n_samples=3)
        >>> out["z"].shape
        torch.Size([3, 8, 10])
        """
        out = self.encode(x, batch_index)
        shape = () if n_samples == 1 else (n_samples,)
        out["z"] = out["qz"].rsample(shape)
        if out["ql"] is not None:
            out["library"] = out["ql"].rsample(shape)
        else:
            lib = out["library_mean"]
            out["library"] = lib if n_samples == 1 else lib.expand(n_samples, *lib.shape)
        return out

    @auto_move_data
    def generative(
        self,
        z: torch.Tensor,
        library: torch.Tensor,
        batch_index: torch.Tensor,
        transform_batch: int | None = None,
    ) -> dict:
        """Decode ``z`` into the count distribution ``px`` (scale = normalised expression).

        Parameters
        ----------
        z
            Latents ``(n_cells, n_latent)``.
        library
            Log library sizes ``(n_cells, 1)``.
        batch_index
            Batch codes ``(n_cells, 1)``.
        transform_batch
            Decode every cell as if it came from this batch (code) instead of its own.

        Returns
        -------
        dict
            ``"px"``: zero-inflated negative binomial (negative binomial for ``gene_likelihood="nb"``)
            distribution with mean ``exp(library) * rho``; ``"rho"``: normalised expression (sums to 1
            per cell); ``"theta"``: inverse dispersions; ``"zi_logits"``: zero-inflation logits
            (``None`` for NB).

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import torch
        >>> import xspecies as xs
        >>> context, _ = xs.datasets.pancreas_models()
        >>> mouse = context.adata
        >>> x = torch.as_tensor(mouse.X[:8].toarray())
        >>> batch_index = torch.as_tensor(mouse.obs["donor"].cat.codes.to_numpy()[:8, None])
        >>> inference = context.module.inference(x, batch_index)
        >>> out = context.module.generative(inference["z"], inference["library"], batch_index, transform_batch=0)
        >>> out["px"].mean.shape
        torch.Size([8, 4313])
        """
        if transform_batch is not None:
            batch_index = torch.full_like(batch_index, int(transform_batch))
        rho, theta, zi = self.decoder(z, batch_index)
        mu = torch.exp(library) * rho
        if zi is None:
            px = NegativeBinomial(mu=mu, theta=theta, scale=rho)
        else:
            px = ZeroInflatedNegativeBinomial(mu=mu, theta=theta, zi_logits=zi, scale=rho)
        return {"px": px, "rho": rho, "theta": theta, "zi_logits": zi}

    def loss(self, tensors, inference_outputs, generative_outputs, kl_weight: float = 1.0) -> LossOutput:
        """Negative ELBO: reconstruction NLL + ``kl_weight`` x (KL of z + KL of the library).

        Parameters
        ----------
        tensors
            Minibatch with the counts (``REGISTRY_KEYS.X_KEY``) and batch codes
            (``REGISTRY_KEYS.BATCH_KEY``).
        inference_outputs
            Output of :meth:`inference`.
        generative_outputs
            Output of :meth:`generative`.
        kl_weight
            Weight of the KL terms (ramped up by the training plan).

        Returns
        -------
        scvi.module.base.LossOutput
            The mean loss over the cells, the per-cell reconstruction loss and the per-cell KL terms
            (``kl_local["kl_divergence_z"]``, ``kl_local["kl_divergence_l"]``).

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import torch
        >>> import xspecies as xs
        >>> context, _ = xs.datasets.pancreas_models()
        >>> mouse = context.adata
        >>> x = torch.as_tensor(mouse.X[:8].toarray())
        >>> batch_index = torch.as_tensor(mouse.obs["donor"].cat.codes.to_numpy()[:8, None])

        Calling the module runs :meth:`inference`, :meth:`generative` and this loss:

        >>> tensors = {REGISTRY_KEYS.X_KEY: x, REGISTRY_KEYS.BATCH_KEY: batch_index}
        >>> inference, generative, loss = context.module(tensors, loss_kwargs={"kl_weight": 1.0})
        >>> loss.reconstruction_loss["reconstruction_loss"].shape
        torch.Size([8])
        """
        x = tensors[REGISTRY_KEYS.X_KEY]
        px = generative_outputs["px"]
        rec = -count_log_likelihood_exact(x, px.mu, px.theta, getattr(px, "zi_logits", None))
        qz = inference_outputs["qz"]
        kl_z = kl_divergence(qz, Normal(torch.zeros_like(qz.loc), torch.ones_like(qz.scale))).sum(-1)
        ql = inference_outputs["ql"]
        if ql is not None:
            kl_l = kl_divergence(ql, self._library_prior(tensors[REGISTRY_KEYS.BATCH_KEY])).sum(-1)
        else:
            kl_l = torch.zeros_like(kl_z)
        loss = torch.mean(rec + kl_weight * (kl_z + kl_l))
        return LossOutput(
            loss=loss,
            reconstruction_loss=rec,
            kl_local={"kl_divergence_z": kl_z, "kl_divergence_l": kl_l},
        )

    @torch.inference_mode()
    def sample(self, tensors, n_samples: int = 1) -> torch.Tensor:
        """Draw counts from the posterior predictive distribution.

        Parameters
        ----------
        tensors
            Minibatch with the counts and batch codes (as for :meth:`loss`).
        n_samples
            Number of posterior draws (a leading axis when above 1).

        Returns
        -------
        torch.Tensor
            Sampled counts ``(n_cells, n_genes)``, or ``(n_samples, n_cells, n_genes)``, on the CPU.

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import torch
        >>> import xspecies as xs
        >>> context, _ = xs.datasets.pancreas_models()
        >>> mouse = context.adata
        >>> x = torch.as_tensor(mouse.X[:8].toarray())
        >>> batch_index = torch.as_tensor(mouse.obs["donor"].cat.codes.to_numpy()[:8, None])
        >>> counts = context.module.sample({REGISTRY_KEYS.X_KEY: x, REGISTRY_KEYS.BATCH_KEY: batch_index})
        >>> counts.shape
        torch.Size([8, 4313])
        """
        _, gen = self.forward(tensors, inference_kwargs={"n_samples": n_samples}, compute_loss=False)
        return gen["px"].sample().cpu()

    # --- helpers for likelihood comparisons -------------------------------------------------------
    def candidate_log_likelihood(
        self, x: torch.Tensor, z: torch.Tensor, batch_index: torch.Tensor, library: torch.Tensor
    ) -> torch.Tensor:
        """Log-likelihood of each cell's counts under ``k`` candidate latents (decoded with its batch).

        Parameters
        ----------
        x
            Counts ``(m, n_genes)``.
        z
            Candidate latents ``(m, k, n_latent)``.
        batch_index
            Batch codes ``(m,)`` or ``(m, 1)``.
        library
            Log library sizes ``(m,)`` or ``(m, 1)``.

        Returns
        -------
        torch.Tensor
            ``(m, k)`` log-likelihoods up to a per-cell constant.

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import xspecies as xs
        >>> context, target = xs.datasets.pancreas_models()
        >>> mouse, human = context.adata, target.adata
        >>> import torch

        Score the 25 closest data-level neighbours (context latents) of 8 human cells under the target
        decoder:

        >>> x = torch.as_tensor(human.X[:8].toarray())
        >>> batch_index = torch.as_tensor(human.obs["donor"].cat.codes.to_numpy()[:8, None])
        >>> library = target.module.encode(x, batch_index)["library_mean"]
        >>> neighbors = human.obsm["homology_neighbors"][:8, :25]
        >>> z = torch.as_tensor(context.get_latent_representation()[neighbors])
        >>> target.module.candidate_log_likelihood(x, z, batch_index, library).shape
        torch.Size([8, 25])
        """
        m, k, n_lat = z.shape
        batch_rep = batch_index.reshape(-1).repeat_interleave(k).to(z.dtype)
        # decode each distinct (latent, batch) pair once: cells of one type share many candidates
        pairs, inverse = torch.unique(
            torch.cat([z.reshape(m * k, n_lat), batch_rep[:, None]], 1), dim=0, return_inverse=True
        )
        return self._score_rows(x, pairs[:, :n_lat], pairs[:, n_lat], library, inverse.reshape(m, k))

    def _score_rows(
        self,
        x: torch.Tensor,
        z_rows: torch.Tensor,
        batch_rows: torch.Tensor,
        library: torch.Tensor,
        rows: torch.Tensor,
    ) -> torch.Tensor:
        """Decode the table ``(z_rows, batch_rows)`` and score each cell under its ``rows`` (``(m, k)``)."""
        rho, theta, zi = self.decoder(z_rows, batch_rows)
        m = x.shape[0]
        if self.dispersion != "gene-cell":
            theta = theta.expand(m, -1) if theta.dim() == 1 else theta[rows[:, 0]]
            return candidate_table_log_likelihood(x, library.reshape(-1), rho, theta, zi, rows)
        out = []
        for start in range(0, m, CELL_CHUNK):  # bounds the (cells x rows x genes) temporaries
            cells = slice(start, start + CELL_CHUNK)
            r = rows[cells]
            mu = torch.exp(library.reshape(m, 1, 1)[cells]) * rho[r]
            out.append(count_log_likelihood(x[cells, None, :], mu, theta[r], None if zi is None else zi[r]))
        return torch.cat(out)


class TargetVAE(SpeciesVAE):
    """:class:`SpeciesVAE` of a target species aligned to a context model.

    Holds, as buffers, everything it needs from the context: the context latent means and variances
    and the context representations the target is pulled towards (outer encoder output for
    ``alignment="inter"``, latent mean for ``"latent"``). The inner encoder is loaded from the context;
    with ``freeze_inner`` it gets no gradients and stays in evaluation mode (no dropout, frozen norms).

    Parameters
    ----------
    n_input
        Number of target genes.
    n_context_obs
        Number of context cells (rows of the context buffers).
    n_obs
        Number of target cells (size of the ``partner`` buffer, see :meth:`update_partners`).
    alignment
        ``"inter"`` (align outer encoder outputs) or ``"latent"`` (align latent means).
    freeze_inner
        Freeze the inner encoder.
    n_candidates
        Data-level neighbour candidates considered per aligned target cell.
    top_percent
        Align the target cells with ``homology_top_percent <= top_percent``.
    candidate_z
        ``"mean"``: decode each candidate's latent mean; ``"sample"``: a draw from its posterior.
    **kwargs
        Architecture arguments of :class:`SpeciesVAE`.

    Examples
    --------
    The module of a target model is ``target.module``; built directly (the context buffers are
    filled by ``TargetModel.from_context``):

    >>> import xspecies as xs
    >>> vae = xs.model.TargetVAE(n_input=2000, n_context_obs=1886, n_obs=2142, n_batch=4)
    >>> vae.context_rep.shape  # outer encoder outputs of the context cells (alignment="inter")
    torch.Size([1886, 300])
    """

    def __init__(
        self,
        n_input: int,
        n_context_obs: int,
        n_obs: int = 0,
        alignment: str = "inter",
        freeze_inner: bool = True,
        n_candidates: int = 25,
        top_percent: float = 20.0,
        candidate_z: str = "mean",
        **kwargs,
    ):
        super().__init__(n_input, **kwargs)
        if alignment not in ("inter", "latent"):
            raise ValueError(f"alignment must be 'inter' or 'latent', got {alignment!r}.")
        if candidate_z not in ("mean", "sample"):
            raise ValueError(f"candidate_z must be 'mean' or 'sample', got {candidate_z!r}.")
        self.alignment = alignment
        self.freeze_inner = freeze_inner
        self.n_candidates = n_candidates
        self.top_percent = top_percent
        self.candidate_z = candidate_z
        rep_dim = self.outer_encoder.n_out if alignment == "inter" else self.n_latent
        self.register_buffer("context_qz_mean", torch.zeros(n_context_obs, self.n_latent))
        self.register_buffer("context_qz_var", torch.ones(n_context_obs, self.n_latent))
        self.register_buffer("context_rep", torch.zeros(n_context_obs, rep_dim))
        # alignment partner (context row) of each target cell, chosen during training; not saved
        self.register_buffer("partner", torch.full((n_obs,), -1, dtype=torch.long), persistent=False)
        # which of its first n_candidates neighbours may be a cell's partner (set by TargetModel.from_context)
        self.register_buffer("allowed", torch.ones(n_obs, n_candidates, dtype=torch.bool), persistent=False)
        if freeze_inner:
            self.inner_encoder.requires_grad_(False)

    def train(self, mode: bool = True):
        """Set the training mode; a frozen inner encoder always stays in evaluation mode.

        Parameters
        ----------
        mode
            Training (True) or evaluation (False) mode, as :meth:`torch.nn.Module.train`.

        Returns
        -------
        TargetVAE
            The module itself.

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import xspecies as xs
        >>> context, target = xs.datasets.pancreas_models()
        >>> module = target.module.train()  # alignment="inter": the inner encoder is frozen
        >>> module.training, module.inner_encoder.training
        (True, False)
        """
        super().train(mode)
        if self.freeze_inner:
            self.inner_encoder.eval()
        return self

    @torch.no_grad()
    def update_partners(self, tensors: dict) -> int:
        """Choose the alignment partner of the trusted target cells of a minibatch.

        The candidates of a cell are its first ``n_candidates`` data-level neighbours (those allowed by the
        ``allowed`` buffer: by default all; :meth:`~xspecies.model.TargetModel.from_context` keeps the
        neighbours of the cell's voted label); its partner is the candidate whose latent, decoded by this
        (target) decoder, explains the cell's counts best. The choice is stored in the ``partner`` buffer
        (context row per target cell, ``-1``: not aligned).

        Parameters
        ----------
        tensors
            Minibatch with the counts, batch, cell indices, neighbours and ``top_percent`` of the cells.

        Returns
        -------
        int
            Number of cells whose partner was chosen.

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import xspecies as xs
        >>> context, target = xs.datasets.pancreas_models()

        The training plan calls it on the trusted cells at the start of every ``partner_refresh``-th
        epoch; by hand, for the first 8 human cells:

        >>> import torch
        >>> from scvi import REGISTRY_KEYS
        >>> human = target.adata
        >>> tensors = {
        ...     REGISTRY_KEYS.X_KEY: torch.as_tensor(human.X[:8].toarray()),
        ...     REGISTRY_KEYS.BATCH_KEY: torch.as_tensor(human.obs["donor"].cat.codes.to_numpy()[:8, None]),
        ...     REGISTRY_KEYS.INDICES_KEY: torch.arange(8)[:, None],
        ...     "homology_neighbors": torch.as_tensor(human.obsm["homology_neighbors"][:8]),
        ...     "homology_top_percent": torch.as_tensor(human.obs["homology_top_percent"].to_numpy()[:8, None]),
        ... }
        >>> n_trusted = target.module.update_partners(tensors)
        >>> target.module.partner[:8].shape  # context row of each cell's partner, -1: not aligned
        torch.Size([8])
        """
        mask = tensors[TOP_PERCENT_KEY].reshape(-1) <= self.top_percent
        if not bool(mask.any()):
            return 0
        x = tensors[REGISTRY_KEYS.X_KEY][mask]
        batch_index = tensors[REGISTRY_KEYS.BATCH_KEY][mask]
        idx = tensors[NEIGHBORS_KEY][mask][:, : self.n_candidates].long()
        # decode each distinct (candidate, batch) pair once
        keys = idx * self.n_batch + batch_index.reshape(-1, 1).long()
        pairs, inverse = torch.unique(keys, return_inverse=True)
        context_rows = pairs // self.n_batch
        z = self.context_qz_mean[context_rows]
        if self.candidate_z == "sample":
            z = z + self.context_qz_var[context_rows].sqrt() * torch.randn_like(z)
        library = self.encode(x, batch_index)["library_mean"]
        cells = tensors[REGISTRY_KEYS.INDICES_KEY].reshape(-1).long()[mask]
        allowed = self.allowed[cells, : idx.shape[1]]
        ll = self._score_rows(x, z, pairs % self.n_batch, library, inverse)
        ll = ll.masked_fill(~allowed, float("-inf"))
        best = idx.gather(1, ll.argmax(dim=1, keepdim=True)).squeeze(1)
        has = allowed.any(dim=1)
        self.partner[cells[has]] = best[has]
        return int(has.sum())

    def alignment_distance(self, tensors: dict, inference_outputs: dict) -> torch.Tensor:
        """Squared distance of each aligned target cell to its partner's representation (0 elsewhere).

        Parameters
        ----------
        tensors
            Minibatch with the cell indices.
        inference_outputs
            Output of :meth:`inference` for the minibatch.

        Returns
        -------
        torch.Tensor
            ``(n_cells,)`` squared distances (zero for cells without partner, see :meth:`update_partners`).

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import torch
        >>> from scvi import REGISTRY_KEYS
        >>> import xspecies as xs
        >>> context, target = xs.datasets.pancreas_models()
        >>> human = target.adata
        >>> tensors = {
        ...     REGISTRY_KEYS.X_KEY: torch.as_tensor(human.X[:8].toarray()),
        ...     REGISTRY_KEYS.BATCH_KEY: torch.as_tensor(human.obs["donor"].cat.codes.to_numpy()[:8, None]),
        ...     REGISTRY_KEYS.INDICES_KEY: torch.arange(8)[:, None],
        ...     "homology_neighbors": torch.as_tensor(human.obsm["homology_neighbors"][:8]),
        ...     "homology_top_percent": torch.as_tensor(human.obs["homology_top_percent"].to_numpy()[:8, None]),
        ... }
        >>> n_trusted = target.module.update_partners(tensors)

        With ``tensors`` as in :meth:`update_partners` (partners chosen):

        >>> inference = target.module.inference(tensors[REGISTRY_KEYS.X_KEY], tensors[REGISTRY_KEYS.BATCH_KEY])
        >>> target.module.alignment_distance(tensors, inference).shape
        torch.Size([8])
        """
        rep = inference_outputs["inter"] if self.alignment == "inter" else inference_outputs["qz"].loc
        partner = self.partner[tensors[REGISTRY_KEYS.INDICES_KEY].reshape(-1).long()]
        mask = partner >= 0
        dist = torch.zeros(rep.shape[0], device=rep.device, dtype=rep.dtype)
        dist[mask] = ((rep[mask] - self.context_rep[partner[mask]]) ** 2).sum(-1)
        return dist

    def loss(
        self, tensors, inference_outputs, generative_outputs, kl_weight: float = 1.0, eta: float = 0.0
    ) -> LossOutput:
        """Negative ELBO plus ``eta`` x the mean alignment distance of the minibatch.

        Parameters
        ----------
        tensors
            Minibatch with the counts and batch codes and, for the alignment term, the cell indices
            (``REGISTRY_KEYS.INDICES_KEY``) and data-level neighbours.
        inference_outputs, generative_outputs
            Outputs of :meth:`inference` and :meth:`generative`.
        kl_weight
            Weight of the KL terms.
        eta
            Weight of the alignment term; ``0``, or a minibatch without neighbours, gives the ELBO of
            :meth:`SpeciesVAE.loss`.

        Returns
        -------
        scvi.module.base.LossOutput
            As :meth:`SpeciesVAE.loss`, with the mean alignment distance in
            ``extra_metrics["alignment"]`` (in the history as ``alignment_train``).

        Examples
        --------
        Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

        >>> import torch
        >>> from scvi import REGISTRY_KEYS
        >>> import xspecies as xs
        >>> context, target = xs.datasets.pancreas_models()
        >>> human = target.adata
        >>> tensors = {
        ...     REGISTRY_KEYS.X_KEY: torch.as_tensor(human.X[:8].toarray()),
        ...     REGISTRY_KEYS.BATCH_KEY: torch.as_tensor(human.obs["donor"].cat.codes.to_numpy()[:8, None]),
        ...     REGISTRY_KEYS.INDICES_KEY: torch.arange(8)[:, None],
        ...     "homology_neighbors": torch.as_tensor(human.obsm["homology_neighbors"][:8]),
        ...     "homology_top_percent": torch.as_tensor(human.obs["homology_top_percent"].to_numpy()[:8, None]),
        ... }
        >>> n_trusted = target.module.update_partners(tensors)

        With ``tensors`` as in :meth:`update_partners`:

        >>> inference, generative, loss = target.module(tensors, loss_kwargs={"eta": 25.0})
        >>> loss.extra_metrics["alignment"].shape  # mean alignment distance of the batch's aligned cells
        torch.Size([])
        """
        out = super().loss(tensors, inference_outputs, generative_outputs, kl_weight=kl_weight)
        if eta <= 0 or NEIGHBORS_KEY not in tensors:
            return out
        dist = self.alignment_distance(tensors, inference_outputs)
        align = dist.mean()
        return LossOutput(
            loss=out.loss + eta * align,
            reconstruction_loss=out.reconstruction_loss,
            kl_local=out.kl_local,
            extra_metrics={"alignment": align.detach()},
        )
