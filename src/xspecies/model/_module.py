"""PyTorch modules of the context and target models (scvi-tools ``BaseModuleClass`` subclasses)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn
from torch.distributions import Normal, kl_divergence

from ._nn import DEFAULT_LAYER_ORDER, MLP, GaussianHead

#: Registry keys of the data-level neighbour search results carried by target minibatches.
NEIGHBORS_KEY = "homology_neighbors"
TOP_PERCENT_KEY = "homology_top_percent"

_DISPERSIONS = ("gene", "gene-batch", "gene-cell")
#: Cells scored together against their candidates (bounds the cells x candidates x genes temporaries).
_CELL_CHUNK = 64
_LIKELIHOODS = ("nb", "zinb")


def count_log_likelihood(
    x: torch.Tensor,
    mu: torch.Tensor,
    theta: torch.Tensor,
    zi_logits: torch.Tensor | None = None,
    theta_terms: bool = True,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Per-cell NB/ZINB log-likelihood, summed over genes, up to a term that depends on ``x`` only.

    ``log Gamma(x + 1)`` is left out (it does not depend on the model), and so are the terms that
    depend on ``theta`` only when ``theta_terms`` is False (valid to compare likelihoods that share
    ``theta``). Shapes broadcast; the gene axis is the last one.

    Parameters
    ----------
    x
        Counts.
    mu
        NB means.
    theta
        NB inverse dispersions.
    zi_logits
        Logits of the zero-inflation probability (``None``: plain NB).
    theta_terms
        Include ``log Gamma(x + theta) - log Gamma(theta)``.
    eps
        Numerical stability constant.

    Returns
    -------
    torch.Tensor
        Log-likelihoods with the gene axis summed out.
    """
    log_theta_mu = torch.log(theta + mu + eps)
    log_nb_zero = theta * (torch.log(theta + eps) - log_theta_mu)
    nonzero = x * (torch.log(mu + eps) - log_theta_mu)
    if theta_terms:
        nonzero = nonzero + torch.lgamma(x + theta) - torch.lgamma(theta)
    if zi_logits is None:
        return (log_nb_zero + nonzero).sum(-1)
    # pi = sigmoid(zi_logits) is the zero-inflation probability (scvi-tools' parametrisation):
    # zero count: log(pi + (1 - pi) NB(0)) = softplus(log NB(0) - zi) - softplus(-zi)
    # otherwise:  log(1 - pi) + log NB(x) = (log NB(0) - zi) + nonzero - softplus(-zi)
    shifted = log_nb_zero - zi_logits
    ll = torch.where(x > eps, shifted + nonzero, F.softplus(shifted)) - F.softplus(-zi_logits)
    return ll.sum(-1)


def count_log_likelihood_exact(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, zi_logits: torch.Tensor | None = None
) -> torch.Tensor:
    """Exact per-cell NB/ZINB log-likelihood (as scvi-tools' distributions), for ``(n, genes)`` arrays.

    The log-Gamma terms vanish for zero counts, so they are evaluated on the non-zero entries only,
    which makes this several times cheaper than :meth:`scvi.distributions.ZeroInflatedNegativeBinomial.log_prob`
    on sparse single-cell counts.

    Parameters
    ----------
    x
        Counts ``(n, n_genes)``.
    mu, theta
        NB means and inverse dispersions (``theta`` broadcastable to ``x``).
    zi_logits
        Zero-inflation logits (``None``: NB).

    Returns
    -------
    torch.Tensor
        ``(n,)`` log-likelihoods.
    """
    ll = count_log_likelihood(x, mu, theta, zi_logits, theta_terms=False)
    rows, cols = torch.nonzero(x > 0, as_tuple=True)
    counts = x[rows, cols]
    th = theta.expand_as(x)[rows, cols]
    terms = torch.lgamma(counts + th) - torch.lgamma(th) - torch.lgamma(counts + 1)
    return ll.index_add(0, rows, terms)


@torch.no_grad()
def candidate_table_log_likelihood(
    x: torch.Tensor,
    log_library: torch.Tensor,
    rho: torch.Tensor,
    theta: torch.Tensor,
    zi_logits: torch.Tensor | None,
    rows: torch.Tensor,
    eps: float = 1e-8,
    chunk: int = _CELL_CHUNK,
) -> torch.Tensor:
    """:func:`count_log_likelihood` (``theta_terms=False``) of each cell under ``k`` decoded table rows.

    For dispersions that do not depend on the latent (``"gene"``, ``"gene-batch"``): ``theta`` is the
    same for all rows of a cell. The sums over genes that weight a term by the counts, or by the
    zero/non-zero pattern of a cell, are contractions (matrix products) rather than element-wise
    passes, and the terms of a table row alone are summed once per row, so only one logarithm and one
    softplus are evaluated per cell, row and gene (no gradients).

    Parameters
    ----------
    x
        Counts ``(m, n_genes)``.
    log_library
        Log library sizes ``(m,)``.
    rho, zi_logits
        Decoder outputs of the table ``(n_rows, n_genes)`` (``zi_logits`` ``None``: NB).
    theta
        Inverse dispersions of each cell ``(m, n_genes)``.
    rows
        Table rows ``(m, k)`` to score for each cell.
    eps
        Numerical stability constant (as in :func:`count_log_likelihood`).
    chunk
        Cells per pass over (cells x rows x genes): bounds the temporary memory, whatever ``m``.

    Returns
    -------
    torch.Tensor
        ``(m, k)`` log-likelihoods.
    """
    m, k = rows.shape
    # sum_g x log(mu + eps) ~ log(library) * sum_g x + sum_g x log(rho): a (rows x genes) @ (genes x cells) product
    x_log_rho = (torch.log(rho + eps) @ x.T)[rows, torch.arange(m, device=x.device)[:, None]]
    ll = log_library.reshape(m, 1) * x.sum(-1, keepdim=True) + x_log_rho
    if zi_logits is not None:
        ll -= F.softplus(-zi_logits).sum(-1)[rows]
    for start in range(0, m, chunk):
        cells = slice(start, start + chunk)
        ll[cells] += _candidate_chunk(
            x[cells], log_library[cells], rho, theta[cells], zi_logits, rows[cells], eps
        )
    return ll


def _candidate_chunk(x, log_library, rho, theta, zi_logits, rows, eps):
    """The (cells x rows x genes) terms of :func:`candidate_table_log_likelihood` for a chunk of cells."""
    m, k = rows.shape
    flat = rows.reshape(-1)
    library = torch.exp(log_library.reshape(m, 1, 1))
    theta = theta[:, None, :]
    log_theta_mu = (rho[flat].reshape(m, k, -1) * library).add_(theta).log_()
    ll = -torch.bmm(log_theta_mu, x[:, :, None]).squeeze(-1)
    # log NB(0) = theta log(theta) - theta log(theta + mu)
    log_nb_zero = log_theta_mu.mul_(-theta).add_(theta * torch.log(theta + eps))
    if zi_logits is None:
        return ll + log_nb_zero.sum(-1)
    nonzero = (x > eps).to(x.dtype)
    shifted = log_nb_zero.sub_(zi_logits[flat].reshape(m, k, -1))
    ll += torch.bmm(shifted, nonzero[:, :, None]).squeeze(-1)
    return ll + torch.bmm(F.softplus(shifted), (1 - nonzero)[:, :, None]).squeeze(-1)


class DecodedTable:
    """Decoder outputs of a table of latents for one batch, prepared for many likelihood evaluations.

    The log-likelihood of a cell's counts under a table row splits into a *zero part*, the sum over all
    genes of the probability of a zero count, which depends on the cell only through its library size,
    and a correction on the cell's non-zero genes. The zero part of every row is evaluated (value and
    derivative) at anchors spaced ``spacing`` apart on the log-library axis and interpolated with cubic
    Hermite polynomials (error well below 0.1 nats at the default spacing); the correction is exact.
    The cost is thus one pass over (rows x anchors x genes) plus one over (cells x rows x non-zero
    genes), instead of (cells x rows x genes).

    Parameters
    ----------
    rho, theta, zi_logits
        Decoder outputs for the table rows (``theta`` per row only for ``per_row_theta``).
    per_row_theta
        Whether ``theta`` differs between rows (dispersion ``"gene-cell"``).
    log_library
        Log library sizes of the cells to be scored (the anchors cover their range).
    spacing
        Distance of the anchors on the log-library axis.
    eps
        Numerical stability constant (as in :func:`count_log_likelihood`).
    """

    def __init__(
        self,
        rho: torch.Tensor,
        theta: torch.Tensor,
        zi_logits: torch.Tensor | None,
        per_row_theta: bool,
        log_library: torch.Tensor,
        spacing: float = 0.5,
        eps: float = 1e-8,
    ):
        self.rho = rho
        self.per_row_theta = per_row_theta
        self.theta = theta if per_row_theta else theta.reshape(-1, theta.shape[-1])[0]
        self.zi = zi_logits
        self.eps = eps
        low, high = float(log_library.min()), float(log_library.max())
        n_anchors = max(2, int(np.ceil((high - low) / spacing)) + 1)
        self.low, self.step = low, max((high - low) / (n_anchors - 1), 1e-6)
        values, slopes = [], []
        for j in range(n_anchors):
            v, d = self._zero_part(self.low + j * self.step)
            values.append(v)
            slopes.append(d)
        self.values = torch.stack(values, dim=1)  # (n_rows, n_anchors)
        self.slopes = torch.stack(slopes, dim=1)

    def _zero_part(self, log_lib: float, chunk: int = 512):
        """Zero part of every row and its derivative in the log library, at one library size."""
        out_v, out_d = [], []
        for start in range(0, self.rho.shape[0], chunk):
            rho = self.rho[start : start + chunk]
            theta = self.theta[start : start + chunk] if self.per_row_theta else self.theta
            mu = rho * float(np.exp(log_lib))
            log_theta_mu = torch.log(theta + mu + self.eps)
            log_nb0 = theta * (torch.log(theta + self.eps) - log_theta_mu)
            d_nb0 = -theta * mu / (theta + mu + self.eps)
            if self.zi is None:
                out_v.append(log_nb0.sum(-1))
                out_d.append(d_nb0.sum(-1))
            else:
                zi = self.zi[start : start + chunk]
                arg = log_nb0 - zi
                out_v.append((F.softplus(arg) - F.softplus(-zi)).sum(-1))
                out_d.append((torch.sigmoid(arg) * d_nb0).sum(-1))
        return torch.cat(out_v), torch.cat(out_d)

    def _interpolate(self, rows: torch.Tensor, log_lib: torch.Tensor) -> torch.Tensor:
        pos = (log_lib - self.low) / self.step
        j = torch.clamp(torch.floor(pos), 0, self.values.shape[1] - 2).long()
        t = (pos - j)[:, None]
        jj = j[:, None].expand_as(rows)
        v0, v1 = self.values[rows, jj], self.values[rows, jj + 1]
        d0, d1 = self.slopes[rows, jj] * self.step, self.slopes[rows, jj + 1] * self.step
        t2, t3 = t * t, t * t * t
        return (2 * t3 - 3 * t2 + 1) * v0 + (t3 - 2 * t2 + t) * d0 + (3 * t2 - 2 * t3) * v1 + (t3 - t2) * d1

    def log_likelihood(self, x: torch.Tensor, library: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """:func:`count_log_likelihood` of cells ``x`` under table rows ``rows`` (per cell).

        Parameters
        ----------
        x
            Counts ``(m, n_genes)``.
        library
            Log library sizes ``(m,)``.
        rows
            Table rows ``(m, k)`` to evaluate for each cell.

        Returns
        -------
        torch.Tensor
            ``(m, k)`` log-likelihoods.
        """
        library = library.reshape(-1)
        total = self._interpolate(rows, library)
        nz = x > self.eps
        n_nz = int(nz.sum(-1).max()) if x.numel() else 0
        if n_nz == 0:
            return total
        genes = torch.argsort(nz.to(torch.int8), dim=-1, descending=True, stable=True)[:, :n_nz]
        valid = torch.gather(nz, 1, genes)[:, None, :]
        counts = (torch.gather(x, 1, genes) * valid[:, 0])[:, None, :]
        pick = (rows[:, :, None], genes[:, None, :])
        mu = self.rho[pick] * torch.exp(library)[:, None, None]
        theta = self.theta[pick] if self.per_row_theta else self.theta[genes][:, None, :]
        log_theta_mu = torch.log(theta + mu + self.eps)
        corr = counts * (torch.log(mu + self.eps) - log_theta_mu)
        if self.per_row_theta:
            corr = corr + torch.lgamma(counts + theta) - torch.lgamma(theta)
        if self.zi is not None:
            # swap the zero case for the non-zero case on these genes:
            # [log(1 - pi) + log NB(0)] - [softplus(log NB(0) - zi) - softplus(-zi)], log(1 - pi) = -softplus(zi)
            zi = self.zi[pick]
            log_nb0 = theta * (torch.log(theta + self.eps) - log_theta_mu)
            corr = corr + log_nb0 - F.softplus(log_nb0 - zi) - zi
        return total + (corr * valid).sum(-1)


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
        for start in range(0, m, _CELL_CHUNK):  # bounds the (cells x rows x genes) temporaries
            cells = slice(start, start + _CELL_CHUNK)
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
        The training plan calls it on the trusted cells at the start of every ``partner_refresh``-th
        epoch; by hand, for the first 8 human cells:

        >>> tensors = {
        ...     REGISTRY_KEYS.X_KEY: torch.as_tensor(human.X[:8].toarray()),
        ...     REGISTRY_KEYS.BATCH_KEY: torch.as_tensor(human.obs["donor"].cat.codes.to_numpy()[:8, None]),
        ...     REGISTRY_KEYS.INDICES_KEY: torch.arange(8)[:, None],
        ...     "homology_neighbors": torch.as_tensor(human.obsm["homology_neighbors"][:8]),
        ...     "homology_top_percent": torch.as_tensor(human.obs["homology_top_percent"].to_numpy()[:8, None]),
        ... }
        >>> n_trusted = target.module.update_partners(tensors)
        >>> target.module.partner[:8]  # context row of each cell's partner, -1: not aligned
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
        With ``tensors`` as in :meth:`update_partners`:

        >>> inference, generative, loss = target.module(tensors, loss_kwargs={"eta": 25.0})
        >>> loss.extra_metrics["alignment"]
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
