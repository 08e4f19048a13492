"""Log2 fold changes of homologous genes between species: model-based (Monte Carlo) and data-level."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import chi2
from tqdm.auto import tqdm

from xspecies._docs import doc_key_added_table, doc_model_pair, doc_params, doc_random_state_sampling
from xspecies._validation import check_fraction, check_int, check_number, check_positive_int

if TYPE_CHECKING:  # torch is imported where it runs: importing xspecies.tl stays light
    import torch

from xspecies._results import store_result

from ._pair import (
    batch_codes,
    check_pair,
    context_labels,
    count_matrix,
    homologous_genes,
    shared_types,
    target_labels,
)

_STAT_COLUMNS = [
    "lfc",
    "lfc_specific",
    "p",
    "rho_target",
    "rho_context",
    "mu_target",
    "mu_context",
    "lfc_rand",
    "p_rand",
]


def filter_outliers(data: np.ndarray, *, confidence_level: float = 0.9) -> np.ndarray:
    """Inlier mask of the rows of ``data`` by their Mahalanobis distance to the mean.

    A row is an inlier when its squared Mahalanobis distance (pseudo-inverse of the sample covariance)
    is at most the ``confidence_level`` quantile of a chi-squared distribution with ``n_features``
    degrees of freedom. With fewer rows than ``n_features + 2`` every row is an inlier.

    Parameters
    ----------
    data
        ``(n_samples, n_features)`` points, e.g. latent means of the cells of one type.
    confidence_level
        Chi-squared quantile used as cutoff, in ``(0, 1]`` (1 keeps every row).

    Returns
    -------
    numpy.ndarray
        Boolean mask, True for inliers (the outlier mask is its negation).

    Raises
    ------
    ValueError
        On a ``confidence_level`` outside ``(0, 1]`` (or NaN), data that is not 2D, or NaN / infinite
        values (naming the first such row).

    Examples
    --------
    >>> import numpy as np
    >>> import xspecies as xs
    >>> x = np.r_[np.random.default_rng(0).normal(size=(200, 2)), [[30.0, 30.0]]]
    >>> bool(xs.tl.filter_outliers(x, confidence_level=0.99)[-1])
    False
    """
    check_fraction("confidence_level", confidence_level, open_min=True)
    data = np.asarray(data, dtype=float)
    if data.ndim != 2:
        raise ValueError(f"data must be 2D (n_samples, n_features), got shape {data.shape}")
    bad = ~np.isfinite(data).all(axis=1)
    if bad.any():
        raise ValueError(
            f"data has NaN or infinite values in {int(bad.sum())} rows, e.g. row {int(np.flatnonzero(bad)[0])}."
        )
    n, d = data.shape
    if n < d + 2 or confidence_level == 1:
        return np.ones(n, dtype=bool)
    centred = data - data.mean(axis=0)
    precision = np.linalg.pinv(np.cov(centred, rowvar=False))
    distance2 = np.einsum("ij,jk,ik->i", centred, precision, centred)
    return distance2 <= chi2.ppf(confidence_level, df=d)


def _cell_batches(model) -> np.ndarray:
    """Batch category of every cell of the model's AnnData (as registered with scvi-tools)."""
    from scvi import REGISTRY_KEYS

    mapping = model.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping
    return np.asarray(mapping, dtype=object)[batch_codes(model)]


def _decode(model, z: np.ndarray, batches: np.ndarray, genes: np.ndarray, chunk: int) -> torch.Tensor:
    """Expected normalised expression ``(1 - dropout) * rho`` of ``genes`` decoded from ``z``.

    Each row is decoded with its own batch ``batches``.
    """
    import torch

    out = torch.empty(len(z), len(genes))
    for start in range(0, len(z), chunk):
        stop = start + chunk
        decoded = model.decode_expression(z[start:stop], batches[start:stop], batch_size=chunk)
        expected = decoded["rho"][:, genes] * (1 - decoded["dropout"][:, genes])
        out[start:stop] = torch.from_numpy(np.asarray(expected, dtype=np.float32))
    return out


def _log2_ratio_stats(rho_t: torch.Tensor, rho_c: torch.Tensor, eps: float, delta: float):
    """LFC of the mean expression and P(|LFC| > delta) of paired samples per gene; the two means.

    Each sample's expression is renormalised to sum to 1 first.
    """
    import torch

    norm_t = rho_t / rho_t.sum(dim=1, keepdim=True)
    norm_c = rho_c / rho_c.sum(dim=1, keepdim=True)
    mean_t, mean_c = norm_t.mean(dim=0), norm_c.mean(dim=0)
    paired = torch.log2(norm_t + eps) - torch.log2(norm_c + eps)
    lfc = torch.log2(mean_t + eps) - torch.log2(mean_c + eps)
    return lfc, (paired.abs() > delta).float().mean(dim=0), mean_t, mean_c


def _library_sizes(model) -> np.ndarray:
    return np.asarray(count_matrix(model).sum(axis=1), dtype=np.float32).ravel()


class _Sampler:
    """Latent samples of a model's cells: posterior draws ``mean + sd * noise`` of randomly picked cells."""

    def __init__(self, model, rng: np.random.Generator, generator: torch.Generator):
        self.mean, self.var = model.get_latent_representation(return_dist=True)
        self.rng, self.generator = rng, generator

    def inliers(self, cells: np.ndarray, confidence_level: float) -> np.ndarray:
        return cells[filter_outliers(self.mean[cells], confidence_level=confidence_level)]

    def draw(self, cells: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        pick = self.rng.choice(cells, n)
        noise = torch.randn(n, self.mean.shape[1], generator=self.generator).numpy()
        return pick, (self.mean[pick] + np.sqrt(self.var[pick]) * noise).astype(np.float32)


@doc_params(model_pair=doc_model_pair, key_added=doc_key_added_table, random_state=doc_random_state_sampling)
def homologous_lfc(
    target,
    context,
    *,
    target_labels_key: str,
    context_labels_key: str,
    cell_types: Sequence[str] | str | None = None,
    n_samples: int = 4000,
    confidence_level: float = 0.9,
    lfc_delta: float = 1.0,
    eps: float = 1e-6,
    key_added: str = "homologous_lfc",
    random_state: int = 0,
    batch_size: int = 1024,
    progress_bar: bool = True,
) -> pd.DataFrame:
    """Log2 fold changes of homologous genes between target and context, per shared cell type.

    For each cell type present in both species, each species is represented by its own cells of the
    type, in the shared latent space:

    1. the cells of the type whose latent means are Mahalanobis outliers (:func:`filter_outliers` at
       ``confidence_level``) are left out, in each species;
    2. ``n_samples`` latent vectors are drawn from the posteriors of the remaining target cells and
       ``n_samples`` from those of the remaining context cells;
    3. the target vectors are decoded by the target decoder and the context vectors by the context
       decoder, each with the batch of the cell it was drawn from (as scvi-tools' differential
       expression with observed batches: the type's expression pooled over its batches in proportion to
       their cells, as the data holds them), into the expected normalised expression
       ``(1 - dropout) * rho``: the mean of the count distribution the model fits, over the library
       size (``dropout`` is the zero-inflation probability, 0 for ``gene_likelihood="nb"``). Droplet
       data are not zero-inflated beyond the negative binomial (Svensson 2020, Nat. Biotechnol. 38:147),
       so a fitted zero-inflation carries expression differences between cell states that ``rho`` alone
       drops;
    4. the expected expression of the homologous genes is renormalised to sum to 1 in each sample, and
       ``lfc = log2(mean e_target + eps) - log2(mean e_context + eps)`` with ``e`` the renormalised
       expression and the means over the samples: the fold change of the type's mean expression, the
       quantity that :func:`data_lfc` estimates from the counts (the mean over the type's cells of their
       counts over their totals; the median of per-sample ratios of ``rho``, used before, agreed less
       with it on the Baron pair: :doc:`/benchmarks`). The i-th target sample is also compared with the
       i-th context sample (a random pairing, as the ``"change"`` mode of scvi-tools' differential
       expression) for ``p = P(|log2(e_target + eps) - log2(e_context + eps)| > lfc_delta)``.

    Per gene the table reports ``lfc``, its type-specific part ``lfc_specific`` (``lfc``
    minus the gene's mean ``lfc`` over the evaluated cell types: the part of the difference that belongs
    to the cell type rather than to the species; NaN when only one type is evaluated), ``p``, the mean
    renormalised expected expression ``e`` (``rho_target``, ``rho_context``) and the mean expected count
    (``mu_target``, ``mu_context``: ``(1 - dropout) * rho`` as decoded times the library sizes of the
    sampled cells) of each species, and a permutation null: ``lfc_rand`` and
    ``p_rand``, the same statistics when the context side is drawn from context cells whose cell-type
    labels were permuted (random cells of the evaluated types), i.e. a comparison with a random cell
    type. Everything is vectorised over genes and samples (torch), decoding in minibatches.

    :doc:`/benchmarks` compares both parts with :func:`data_lfc` and with the permutation null.

    Target cells without annotation can use transferred labels (``obs["xspecies_<key>"]``, see
    :func:`celltype_similarity`).

    Parameters
    ----------
    {model_pair}
    target_labels_key
        Target ``obs`` column with cell types.
    context_labels_key
        Context ``obs`` column with cell types.
    cell_types
        Cell types to evaluate (must exist in both species); default all shared types.
    n_samples
        Monte Carlo samples per cell type.
    confidence_level
        Outlier cutoff of :func:`filter_outliers` (1 keeps all cells).
    lfc_delta
        Threshold of ``p = P(|LFC| > lfc_delta)``.
    eps
        Added to the renormalised expression before the logarithm (damps LFCs of barely expressed
        genes).
    {key_added}
    {random_state}
    batch_size
        Latent vectors decoded at once.
    progress_bar
        Show progress over cell types.

    Returns
    -------
    pandas.DataFrame
        One row per (cell type, homologous gene): ``cell_type``, ``gene_target``, ``gene_context``,
        ``lfc``, ``lfc_specific``, ``p``, ``rho_target``, ``rho_context``, ``mu_target``, ``mu_context``,
        ``lfc_rand``, ``p_rand``. Also stored in ``target.adata.uns[key_added]`` as
        ``{"params": {...}, "table": df}`` (read by :func:`xspecies.pl.homologous_lfc`).

    Examples
    --------
    Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch;
    train as in :doc:`/getting_started` for meaningful results):

    >>> import xspecies as xs
    >>> context, target = xs.datasets.pancreas_models()

    >>> lfc = xs.tl.homologous_lfc(
    ...     target,
    ...     context,
    ...     target_labels_key="cell_ontology_class",
    ...     context_labels_key="cell_ontology_class",
    ...     cell_types=["type B pancreatic cell", "pancreatic A cell"],
    ...     n_samples=500,  # the default 4000 for results
    ...     progress_bar=False,
    ... )
    >>> beta = lfc.query("cell_type == 'type B pancreatic cell' and p > 0.9").nlargest(10, "lfc")
    >>> list(beta.columns[:4])
    ['cell_type', 'gene_target', 'gene_context', 'lfc']
    >>> axes = xs.pl.homologous_lfc(target.adata, cell_types="type B pancreatic cell")
    """
    import torch

    check_pair(target, context)
    check_positive_int("n_samples", n_samples)
    check_positive_int("batch_size", batch_size)
    check_fraction("confidence_level", confidence_level, open_min=True)
    check_number("lfc_delta", lfc_delta, minimum=0)
    check_number("eps", eps, minimum=0, open_min=True)
    check_int("random_state", random_state, minimum=0)
    t_genes, c_genes = homologous_genes(target, context)
    t_labels, t_column = target_labels(target.adata, target_labels_key)
    c_labels = context_labels(context.adata, context_labels_key)
    types = shared_types(t_labels, c_labels, cell_types, t_column, context_labels_key)

    rng = np.random.default_rng(random_state)
    generator = torch.Generator().manual_seed(random_state)
    t_sampler, c_sampler = _Sampler(target, rng, generator), _Sampler(context, rng, generator)
    t_batches, c_batches = _cell_batches(target), _cell_batches(context)
    t_library, c_library = _library_sizes(target), _library_sizes(context)

    t_inliers, c_inliers = {}, {}
    for cell_type in types:
        t_inliers[cell_type] = t_sampler.inliers(np.flatnonzero(t_labels == cell_type), confidence_level)
        c_inliers[cell_type] = c_sampler.inliers(np.flatnonzero(c_labels == cell_type), confidence_level)
    c_pooled = np.concatenate(list(c_inliers.values()))

    frames = []
    for cell_type in tqdm(types, desc="homologous LFC", disable=not progress_bar):
        t_pick, z_t = t_sampler.draw(t_inliers[cell_type], n_samples)
        c_pick, z_c = c_sampler.draw(c_inliers[cell_type], n_samples)
        rho_t = _decode(target, z_t, t_batches[t_pick], t_genes, batch_size)
        rho_c = _decode(context, z_c, c_batches[c_pick], c_genes, batch_size)
        lfc, p, mean_t, mean_c = _log2_ratio_stats(rho_t, rho_c, eps, lfc_delta)
        stats = {
            "lfc": lfc,
            "p": p,
            "rho_target": mean_t,
            "rho_context": mean_c,
            "mu_target": (rho_t * torch.from_numpy(t_library[t_pick])[:, None]).mean(dim=0),
            "mu_context": (rho_c * torch.from_numpy(c_library[c_pick])[:, None]).mean(dim=0),
        }
        del rho_c
        r_pick, z_rand = c_sampler.draw(c_pooled, n_samples)  # context cells with permuted cell-type labels
        rho_rand = _decode(context, z_rand, c_batches[r_pick], c_genes, batch_size)
        stats["lfc_rand"], stats["p_rand"], _, _ = _log2_ratio_stats(rho_t, rho_rand, eps, lfc_delta)
        frame = pd.DataFrame({k: v.numpy() for k, v in stats.items()})
        frame.insert(0, "gene_context", context.adata.var_names[c_genes].astype(str))
        frame.insert(0, "gene_target", target.adata.var_names[t_genes].astype(str))
        frame.insert(0, "cell_type", cell_type)
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    df["lfc_specific"] = (
        df["lfc"] - df.groupby(["gene_target", "gene_context"])["lfc"].transform("mean")
        if len(types) > 1
        else np.nan
    )
    df = df[["cell_type", "gene_target", "gene_context", *_STAT_COLUMNS]]
    params = {
        "target_labels_key": t_column,
        "context_labels_key": context_labels_key,
        "cell_types": list(types),
        "n_samples": int(n_samples),
        "confidence_level": float(confidence_level),
        "lfc_delta": float(lfc_delta),
        "eps": float(eps),
        "random_state": int(random_state),
    }
    store_result(target.adata, key_added, params, table=df)
    return df


def _mean_normalised(counts, cells: np.ndarray, genes: np.ndarray) -> np.ndarray:
    """Mean over ``cells`` of the counts of ``genes`` divided by each cell's total over ``genes``."""
    sub = counts[cells][:, genes]
    sub = sparse.csr_matrix(sub, dtype=np.float64)
    totals = np.asarray(sub.sum(axis=1)).ravel()
    keep = totals > 0
    if not keep.any():
        return np.full(len(genes), np.nan)
    scaled = sparse.diags(1.0 / totals[keep]) @ sub[keep]
    return np.asarray(scaled.mean(axis=0)).ravel()


@doc_params(key_added=doc_key_added_table)
def data_lfc(
    target,
    context,
    *,
    target_labels_key: str,
    context_labels_key: str,
    cell_types: Sequence[str] | str | None = None,
    eps: float = 1e-6,
    key_added: str = "data_lfc",
) -> pd.DataFrame:
    """Data-level log2 fold changes of homologous genes between target and context, per shared type.

    For each cell type, the counts of the homologous genes of every cell are divided by the cell's
    total over these genes and averaged over the cells of the type;
    ``lfc = log2(mean_target + eps) - log2(mean_context + eps)``, and NaN for a gene detected in neither
    species for that type (no observation, so no observed fold change; the model can still estimate
    one). This is the observed counterpart of :func:`homologous_lfc` (compare with
    :func:`xspecies.pl.lfc_comparison`).

    Parameters
    ----------
    target
        :class:`~xspecies.model.TargetModel` built from ``context`` (for its data and homologous genes).
    context
        :class:`~xspecies.model.ContextModel` with its AnnData.
    target_labels_key
        Target ``obs`` column with cell types (or transferred labels ``xspecies_<key>``).
    context_labels_key
        Context ``obs`` column with cell types.
    cell_types
        Cell types to evaluate; default all shared types.
    eps
        Added to the mean expression before the logarithm.
    {key_added}

    Returns
    -------
    pandas.DataFrame
        One row per (cell type, homologous gene): ``cell_type``, ``gene_target``, ``gene_context``,
        ``lfc``, ``mean_target``, ``mean_context``. Also stored in ``target.adata.uns[key_added]`` as
        ``{"params": {...}, "table": df}`` (read by :func:`xspecies.pl.lfc_comparison`).

    Examples
    --------
    Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch;
    train as in :doc:`/getting_started` for meaningful results):

    >>> import xspecies as xs
    >>> context, target = xs.datasets.pancreas_models()

    >>> labels = {"target_labels_key": "cell_ontology_class", "context_labels_key": "cell_ontology_class"}
    >>> types = ["type B pancreatic cell", "pancreatic A cell"]
    >>> _ = xs.tl.homologous_lfc(target, context, **labels, cell_types=types, n_samples=500, progress_bar=False)
    >>> observed = xs.tl.data_lfc(target, context, **labels, cell_types=types)
    >>> sorted(target.adata.uns["data_lfc"])
    ['params', 'table']
    >>> axes = xs.pl.lfc_comparison(target.adata)
    """
    check_pair(target, context)
    check_number("eps", eps, minimum=0, open_min=True)
    t_genes, c_genes = homologous_genes(target, context)
    t_labels, t_column = target_labels(target.adata, target_labels_key)
    c_labels = context_labels(context.adata, context_labels_key)
    types = shared_types(t_labels, c_labels, cell_types, t_column, context_labels_key)
    t_counts, c_counts = count_matrix(target), count_matrix(context)
    frames = []
    for cell_type in types:
        mean_t = _mean_normalised(t_counts, np.flatnonzero(t_labels == cell_type), t_genes)
        mean_c = _mean_normalised(c_counts, np.flatnonzero(c_labels == cell_type), c_genes)
        frames.append(
            pd.DataFrame(
                {
                    "cell_type": cell_type,
                    "gene_target": target.adata.var_names[t_genes].astype(str),
                    "gene_context": context.adata.var_names[c_genes].astype(str),
                    "lfc": np.where(
                        (mean_t > 0) | (mean_c > 0), np.log2(mean_t + eps) - np.log2(mean_c + eps), np.nan
                    ),
                    "mean_target": mean_t,
                    "mean_context": mean_c,
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    params = {
        "target_labels_key": t_column,
        "context_labels_key": context_labels_key,
        "cell_types": list(types),
        "eps": float(eps),
    }
    store_result(target.adata, key_added, params, table=df)
    return df
