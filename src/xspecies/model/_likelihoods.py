"""Count log-likelihood kernels (ZINB, NB) of the models, and the decoded-candidate table of the target.

Written for the shapes the models score (cells x candidates x genes) with fewer transcendental
functions than :mod:`scvi.distributions`; ``tests/test_model.py`` checks them against scvi-tools.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: Cells scored together against their candidates (bounds the cells x candidates x genes temporaries).
CELL_CHUNK = 64


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
    chunk: int = CELL_CHUNK,
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


class ZeroPart:
    """The zero part of the log-likelihood of table rows, at anchors on the log-library axis.

    For a table row (decoded ``rho``, ``theta``, ``zi``), the sum over all genes of the log-probability
    of a zero count depends on a cell only through its library size. It is evaluated (value and
    derivative in the log library) at anchors spaced at most ``spacing`` apart over the range of the
    cells' log library sizes, and interpolated with cubic Hermite polynomials (error well below 0.1
    nats at the default spacing).

    Parameters
    ----------
    log_library
        Log library sizes of the cells to be scored (the anchors cover their range).
    spacing
        Largest distance between anchors.
    eps
        Numerical stability constant (as in :func:`count_log_likelihood`).
    """

    def __init__(self, log_library: torch.Tensor, spacing: float = 0.5, eps: float = 1e-8):
        low, high = float(log_library.min()), float(log_library.max())
        self.n_anchors = max(2, int(np.ceil((high - low) / spacing)) + 1)
        self.low, self.step = low, max((high - low) / (self.n_anchors - 1), 1e-6)
        self.eps = eps
        self.values = self.slopes = None

    def evaluate(self, rho: torch.Tensor, theta: torch.Tensor, zi: torch.Tensor | None, chunk: int = 512):
        """Values and slopes ``(n_rows, n_anchors)`` of table rows (``theta`` of shape ``rho`` or per gene)."""
        values, slopes = [], []
        for start in range(0, rho.shape[0], chunk):
            rows = slice(start, start + chunk)
            th = theta[rows] if theta.dim() == 2 else theta
            pairs = [
                self._at(rho[rows], th, None if zi is None else zi[rows], self.low + j * self.step)
                for j in range(self.n_anchors)
            ]
            values.append(torch.stack([v for v, _ in pairs], dim=1))
            slopes.append(torch.stack([d for _, d in pairs], dim=1))
        return torch.cat(values), torch.cat(slopes)

    def _at(self, rho, theta, zi, log_lib: float):
        mu = rho * float(np.exp(log_lib))
        log_theta_mu = torch.log(theta + mu + self.eps)
        log_nb0 = theta * (torch.log(theta + self.eps) - log_theta_mu)
        d_nb0 = -theta * mu / (theta + mu + self.eps)
        if zi is None:
            return log_nb0.sum(-1), d_nb0.sum(-1)
        arg = log_nb0 - zi
        return (F.softplus(arg) - F.softplus(-zi)).sum(-1), (torch.sigmoid(arg) * d_nb0).sum(-1)

    def interpolate(self, values, slopes, rows: torch.Tensor, log_lib: torch.Tensor) -> torch.Tensor:
        """The zero part of table rows ``rows`` ``(m, k)`` for cells of log library ``log_lib`` ``(m,)``."""
        pos = (log_lib - self.low) / self.step
        j = torch.clamp(torch.floor(pos), 0, self.n_anchors - 2).long()
        t = (pos - j)[:, None]
        jj = j[:, None].expand_as(rows)
        v0, v1 = values[rows, jj], values[rows, jj + 1]
        d0, d1 = slopes[rows, jj] * self.step, slopes[rows, jj + 1] * self.step
        t2, t3 = t * t, t * t * t
        return (2 * t3 - 3 * t2 + 1) * v0 + (t3 - 2 * t2 + t) * d0 + (3 * t2 - 2 * t3) * v1 + (t3 - t2) * d1


class DecodedTable:
    """Decoder outputs of a table of latents for one batch, prepared for many likelihood evaluations.

    The log-likelihood of a cell's counts under a table row splits into a *zero part*, the sum over all
    genes of the probability of a zero count, which depends on the cell only through its library size
    (:class:`ZeroPart`, interpolated between anchors), and a correction on the cell's non-zero genes,
    which is exact. The cost is thus one pass over (rows x anchors x genes) plus one over (cells x rows x
    non-zero genes), instead of (cells x rows x genes).

    Parameters
    ----------
    rho, theta, zi_logits
        Decoder outputs for the table rows (``theta`` per row only for ``per_row_theta``).
    per_row_theta
        Whether ``theta`` differs between rows (dispersion ``"gene-cell"``).
    log_library
        Log library sizes of the cells to be scored (the anchors cover their range).
    spacing
        Largest distance between the anchors on the log-library axis.
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
        self.anchors = ZeroPart(log_library, spacing, eps)
        self.values, self.slopes = self.anchors.evaluate(rho, self.theta, zi_logits)

    def nonzero(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The non-zero genes of cells ``x`` ``(m, n_genes)``: ``(genes, counts, valid)``, each ``(m, n_nz)``.

        Rows are padded to the most non-zero genes of a cell (``valid`` marks the real ones), so that the
        arrays of a cell can be picked for each of its candidate rows (:meth:`log_likelihood`).
        """
        nz = x > self.eps
        n_nz = int(nz.sum(-1).max()) if x.numel() else 0
        genes = torch.argsort(nz.to(torch.int8), dim=-1, descending=True, stable=True)[:, :n_nz]
        valid = torch.gather(nz, 1, genes)
        return genes, torch.gather(x, 1, genes) * valid, valid

    def log_likelihood(
        self,
        nonzero: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        library: torch.Tensor,
        rows: torch.Tensor,
    ) -> torch.Tensor:
        """:func:`count_log_likelihood` of cells under table rows ``rows`` (per cell).

        Parameters
        ----------
        nonzero
            The cells' non-zero genes (:meth:`nonzero`), ``(m, n_nz)`` each.
        library
            Log library sizes ``(m,)``.
        rows
            Table rows ``(m, k)`` to evaluate for each cell.

        Returns
        -------
        torch.Tensor
            ``(m, k)`` log-likelihoods.
        """
        genes, counts, valid = nonzero
        library = library.reshape(-1)
        total = self.anchors.interpolate(self.values, self.slopes, rows, library)
        if genes.shape[1] == 0:
            return total
        counts, valid = counts[:, None, :], valid[:, None, :]
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
