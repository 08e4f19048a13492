"""scICE clustering-consistency evaluation (Kim et al., Nat Commun 16, 6031, 2025) on an AnnData graph."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scipy.sparse.csgraph import connected_components
from tqdm.auto import tqdm

from ._core import bootstrap_ic, merge_small_clusters, representative_labeling
from ._graph import graph_key, scice_graph
from ._leiden import GraphPayload, LeidenRunner
from ._search import ResolutionSearch, TargetOptimizer, TargetResult

_OBJECTIVES = ("CPM", "modularity")
_DEFAULT_RANGE = tuple(range(2, 11))
_BOOTSTRAP_PHASE = 9


def _check_parameters(
    n_cells: int,
    cluster_range: Sequence[int] | None,
    resolution: Sequence[float] | None,
    n_trials: int,
    n_bootstrap: int,
    n_iterations: int,
    max_iterations: int,
    min_cluster_size: int,
    objective_function: Literal["CPM", "modularity"],
    beta: float,
    remove_threshold: float,
    ic_threshold: float,
    n_jobs: int | None,
) -> tuple[list[int], list[float]]:
    if cluster_range is not None and resolution is not None:
        raise ValueError("give either cluster_range or resolution, not both")
    if objective_function not in _OBJECTIVES:
        raise ValueError(f"objective_function must be one of {_OBJECTIVES}, got {objective_function!r}")
    for name, value, low in (
        ("n_trials", n_trials, 2),
        ("n_bootstrap", n_bootstrap, 1),
        ("n_iterations", n_iterations, 1),
        ("max_iterations", max_iterations, 1),
        ("min_cluster_size", min_cluster_size, 1),
    ):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not (np.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    for name, value in (("remove_threshold", remove_threshold), ("ic_threshold", ic_threshold)):
        if not value >= 1:  # also refuses NaN; the IC is at least 1, so a smaller threshold selects nothing
            raise ValueError(
                f"{name} must be a number >= 1 (the IC's minimum; np.inf: no limit), got {value!r}"
            )
    if n_jobs is not None and (
        isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer) or n_jobs == 0
    ):
        raise ValueError(
            f"n_jobs must be None or a non-zero integer (negative: joblib's convention), got {n_jobs!r}"
        )
    if resolution is not None:
        gammas = np.atleast_1d(np.asarray(resolution, dtype=np.float64))
        if gammas.size == 0:
            raise ValueError("resolution is empty")
        bad = gammas[~np.isfinite(gammas) | (gammas < 0)]
        if bad.size:
            raise ValueError(f"resolution values must be finite and >= 0, got {bad.tolist()}")
        return [], sorted({float(g) for g in gammas})
    targets = list(_DEFAULT_RANGE if cluster_range is None else np.atleast_1d(cluster_range).tolist())
    if not targets:
        raise ValueError("cluster_range is empty")
    for k in targets:
        if int(k) != k or k < 1:
            raise ValueError(f"cluster_range values must be positive integers, got {k!r}")
        if k > n_cells:
            raise ValueError(f"cluster_range value {k} is larger than the number of cells ({n_cells})")
    return sorted({int(k) for k in targets}), []


def _start_resolution(payload: GraphPayload, objective_function: str) -> float:
    """Graph density for CPM (edge weight per vertex pair), 1 for modularity."""
    if objective_function == "modularity" or payload.n_nodes < 2:
        return 1.0
    density = payload.weights.sum() / (payload.n_nodes * (payload.n_nodes - 1) / 2)
    return float(density) if density > 0 else 1.0


def _component_floor(graph: sp.csr_matrix, min_cluster_size: int) -> int:
    """Number of connected components with at least ``min_cluster_size`` vertices."""
    _, component = connected_components(graph, directed=False)
    return max(1, int(np.count_nonzero(np.bincount(component) >= min_cluster_size)))


def _finalize(
    results: list[TargetResult],
    graph: sp.csr_matrix,
    entropy: int,
    n_bootstrap: int,
    min_cluster_size: int,
) -> tuple[pd.DataFrame, dict[int, int]]:
    """Bootstrap IC, representative merged labels and final cluster counts of the kept results."""
    rows = []
    for index, result in enumerate(results):
        best = result.best
        if best is None:
            continue
        rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(_BOOTSTRAP_PHASE, index)))
        ic_vec = bootstrap_ic(best.inverse, best.similarity, n_bootstrap, rng)
        labels = representative_labeling(best.unique, best.inverse, best.similarity)
        labels = merge_small_clusters(labels, graph, min_cluster_size)
        rows.append(
            {
                "index": index,
                "n_cluster": int(labels.max()) + 1,
                "source_target_cluster": result.target,
                "gamma": best.gamma,
                "ic": float(np.median(ic_vec)),
                "ic_vec": ic_vec,
                "labels": labels,
                "n_iterations": result.n_iterations,
                "exact": result.target in (-1, int(labels.max()) + 1),
                "interval_width": float(np.log(result.interval[1] / result.interval[0]))
                if best.gamma
                else 0.0,
            }
        )
    columns = [
        "index",
        "n_cluster",
        "source_target_cluster",
        "gamma",
        "ic",
        "ic_vec",
        "labels",
        "n_iterations",
        "exact",
        "interval_width",
    ]
    table = pd.DataFrame(rows, columns=columns)
    table = table.sort_values(["n_cluster", "ic", "exact", "gamma"], ascending=[True, True, False, True])
    winners = table.drop_duplicates("n_cluster", keep="first")
    final = dict(zip(table["index"], table["n_cluster"], strict=True))
    return winners.reset_index(drop=True), final


def _best_result(winners: pd.DataFrame, consistent: np.ndarray) -> int:
    """Row of the recommended result (-1 if none).

    Lowest IC among the consistent results (all if none is), then the widest resolution
    interval (the most stable count), then the most clusters.
    """
    if winners.empty:
        return -1
    pool = winners[consistent] if consistent.any() else winners
    order = pool.sort_values(["ic", "interval_width", "n_cluster"], ascending=[True, False, False])
    return int(winners.index.get_loc(order.index[0]))


def _diagnostics(
    results: list[TargetResult], winners: pd.DataFrame, final: dict[int, int], mode: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    kept = set(winners["index"].tolist())
    targets = pd.DataFrame(
        {
            "target": [r.target for r in results],
            "status": [
                r.status if r.status != "kept" or i in kept else "duplicate" for i, r in enumerate(results)
            ],
            "gamma_low": [r.interval[0] for r in results],
            "gamma_high": [r.interval[1] for r in results],
            "preliminary_ic": [r.preliminary_ic for r in results],
            "gamma": [np.nan if r.best is None else r.best.gamma for r in results],
            "n_cluster": [final.get(i, -1) for i in range(len(results))],
            "n_iterations": [r.n_iterations for r in results],
        }
    )
    if mode == "resolution":
        targets = targets.drop(columns=["target", "gamma_low", "gamma_high"])
    rounds = pd.DataFrame(
        [(r.target, *row) for r in results for row in r.rounds],
        columns=["target", "round", "gamma", "ic", "median_cluster_count", "kept"],
    )
    return targets, rounds.astype({"kept": bool, "target": np.int64, "round": np.int64})


def _concrete_seed(random_state: int | None) -> int:
    """The seed of the run: ``random_state``, or a fresh one drawn (and recorded) when it is None."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer) or random_state < 0:
        raise ValueError(f"random_state must be None or an integer >= 0, got {random_state!r}")
    return int(random_state)


def _tied_counts(winners: pd.DataFrame, consistent: np.ndarray, best: int) -> np.ndarray:
    """Cluster counts as consistent as the recommended one (itself included; empty without results)."""
    if best < 0:
        return np.zeros(0, dtype=np.int64)
    ic = winners["ic"].to_numpy(np.float64)
    pool = consistent if consistent.any() else np.ones(len(winners), dtype=bool)
    tied = pool & np.isclose(ic, ic[best], rtol=0.0, atol=1e-9)
    return winners["n_cluster"].to_numpy(np.int64)[tied]


def _warn_about_coverage(targets: list[int], n_cluster: np.ndarray, diagnostics: pd.DataFrame) -> None:
    """Warn about requested cluster counts that have no result, with the reason for each."""
    missing = sorted(set(targets) - set(n_cluster.tolist()))
    if not missing:
        return
    status = dict(zip(diagnostics["target"], diagnostics["status"], strict=True))
    reasons = {
        "not_found": "no resolution gives this count",
        "removed": "too inconsistent (preliminary IC >= remove_threshold)",
    }
    groups: dict[str, list[int]] = {}
    for k in missing:
        groups.setdefault(reasons.get(status[k], "the result merged into another count"), []).append(k)
    detail = "; ".join(f"k = {', '.join(map(str, ks))}: {why}" for why, ks in groups.items())
    warnings.warn(
        f"scICE: no result for the requested cluster counts {missing} ({detail}); see "
        "coverage_complete and target_diagnostics.",
        UserWarning,
        stacklevel=3,
    )


def scice(
    adata: AnnData,
    *,
    neighbors_key: str | None = None,
    obsp: str | None = None,
    cluster_range: Sequence[int] | None = None,
    resolution: Sequence[float] | None = None,
    n_trials: int = 15,
    n_bootstrap: int = 100,
    beta: float = 0.1,
    n_iterations: int = 10,
    max_iterations: int = 150,
    remove_threshold: float = 1.15,
    min_cluster_size: int = 2,
    objective_function: Literal["CPM", "modularity"] = "CPM",
    n_jobs: int | None = None,
    random_state: int | None = 0,
    key_added: str = "scice",
    copy: bool = False,
    ic_threshold: float = 1.005,
    progress_bar: bool = True,
) -> AnnData | None:
    """Evaluate clustering consistency with scICE: Leiden (CPM) runs scored by their inconsistency coefficient.

    For each requested cluster count ``k`` (cluster-range mode), the resolution interval whose
    median Leiden cluster count is ``k`` is bracketed by bisection in ``log(gamma)``; a grid of
    resolutions over it is run ``n_trials`` times, targets whose best IC reaches
    ``remove_threshold`` are dropped, and warm-started rounds refine the better half of the
    grid until two rounds in a row no longer lower the best IC (by more than 0.001), the labels
    stop changing or ``max_iterations`` is reached. The lowest-IC resolution wins; bootstrap
    resamples of its trials give the IC distribution. The IC is ``1 / (p^T S p)`` with ``p`` the
    frequencies of the distinct labelings and ``S`` their element-centric similarities: 1 means every
    run found the same partition. With ``resolution=[...]`` (manual mode) the given resolutions are
    evaluated directly.

    Parameters
    ----------
    adata
        Annotated data matrix with a symmetric weighted neighbour graph in ``obsp``.
    neighbors_key
        Key in ``adata.uns`` of a :func:`scanpy.pp.neighbors` result: the graph is
        ``adata.obsp[adata.uns[neighbors_key]["connectivities_key"]]``. Without ``neighbors_key`` and
        ``obsp``, the graph of ``uns["neighbors"]`` (``obsp["connectivities"]``), as in
        :func:`scanpy.tl.leiden`.
    obsp
        Key of the graph in ``adata.obsp`` (instead of ``neighbors_key``; not both).
    cluster_range
        Target cluster counts (cluster-range mode); default ``2..10`` when ``resolution`` is not given.
    resolution
        Resolutions to evaluate directly (manual mode; duplicates are removed).
    n_trials
        Leiden runs per resolution.
    n_bootstrap
        Bootstrap resamples of the trials giving ``ic_vec``.
    beta
        Randomness of Leiden's refinement step (passed to igraph); a finite number > 0.
    n_iterations
        Leiden iterations per run and per refinement round.
    max_iterations
        Most Leiden iterations per trial, all refinement rounds included.
    remove_threshold
        Targets whose best preliminary IC is at least this are dropped (>= 1; ``np.inf`` keeps all).
    min_cluster_size
        Clusters smaller than this do not count during the search and are merged into their
        most connected neighbour in the final labels.
    objective_function
        ``"CPM"`` (recommended) or ``"modularity"``.
    n_jobs
        Worker processes for the Leiden runs through joblib (a non-zero integer; negative counts
        back from all cores, as in joblib); None runs serially (best for small graphs). Inside ``joblib.parallel_config(backend="dask")`` the runs go to a Dask cluster.
    random_state
        Seed (an integer >= 0); the same seed gives the same results whatever ``n_jobs``. None draws
        a fresh one, recorded in ``params["random_state"]`` so that the run can be repeated.
    key_added
        Key of the labels in ``adata.obs`` and of the results in ``adata.uns``.
    copy
        Return a modified copy instead of writing into ``adata``.
    ic_threshold
        IC at or below which a result is called consistent (``consistent_clusters``, ``best_cluster``;
        >= 1).
    progress_bar
        Show progress bars.

    Returns
    -------
    AnnData or None
        The modified copy if ``copy=True``, else None. Writes, as :func:`scanpy.tl.leiden` does,

        - ``adata.obs[key_added]``: categorical labels (``"0"`` the largest cluster) of ``best_cluster``,
          the recommended consistent cluster count (replacing a column of that name; not written,
          with a warning, when no target gave a result);

        and ``adata.uns[key_added]``, a dict with

        - ``analysis_mode``: ``"cluster_range"`` or ``"resolution"``;
        - ``n_cluster``, ``gamma``, ``ic`` (median bootstrap IC), ``n_iterations``: one entry per
          result, keyed by the final (merged) cluster count and sorted by it;
        - ``source_target_cluster``: requested ``k`` that produced each result (-1 in manual mode);
        - ``ic_vec``: ``(n_results, n_bootstrap)`` bootstrap ICs;
        - ``best_labels``: ``(n_results, n_cells)`` ``int32`` labels most similar to all trials,
          small clusters merged;
        - ``consistent_clusters`` (IC <= ``ic_threshold``), ``best_cluster`` and ``best_resolution``
          (lowest-IC consistent result, on ties the one whose target had the widest resolution
          interval, then the largest ``k``; lowest IC overall if none is consistent; -1 and NaN
          without results);
        - ``tied_clusters``: the counts exactly as consistent as ``best_cluster`` (itself included); when
          there are several, a warning names them: the choice among them is a tie-break, not a finding;
        - ``coverage_complete`` (every requested target has a result at its own count) and
          ``search_coverage_complete`` (every target got a resolution interval);
        - ``cluster_range_tested``, ``resolution_input``;
        - ``target_diagnostics``, ``optimization_diagnostics`` and ``resolution_search_diagnostics``
          (DataFrames);
        - ``params``: the arguments of the run, the graph's ``obsp`` key included.

    Raises
    ------
    KeyError
        When the graph is not in ``adata.obsp`` or ``neighbors_key`` not in ``adata.uns``.
    ValueError
        Before any Leiden run: when both ``neighbors_key`` and ``obsp`` are given, on a graph without
        edges between cells (or not square, symmetric and non-negative) and on a parameter out of range
        (``beta <= 0``, a NaN threshold, ``n_jobs=0``...).

    Warns
    -----
    UserWarning
        When requested cluster counts get no result (naming them and why: no resolution reaches them,
        too inconsistent, or merged into another count), when several counts tie for the lowest IC, and
        when there is no result to write to ``obs``.

    Notes
    -----
    The cost is the Leiden runs: per target about six resolutions times ``n_trials`` runs of
    ``n_iterations`` iterations, plus the search and the refinement rounds. For large graphs give
    ``n_jobs`` more cores or a Dask cluster, or take a first look with fewer targets or fewer
    ``n_trials``; measured run times are on :doc:`/benchmarks`.

    Examples
    --------
    Three groups of 50 cells (``obs["blobs"]``) and their neighbour graph:

    >>> import scanpy as sc
    >>> import xspecies as xs
    >>> adata = sc.datasets.blobs(n_centers=3, n_observations=150, random_state=0)
    >>> sc.pp.neighbors(adata, n_neighbors=10, use_rep="X", random_state=0)
    >>> xs.tl.scice(adata, cluster_range=range(2, 5), n_trials=5, n_bootstrap=20, progress_bar=False)
    >>> adata.uns["scice"]["best_cluster"]
    3
    >>> adata.obs["scice"].value_counts().tolist()
    [50, 50, 50]
    """
    key = graph_key(adata, neighbors_key=neighbors_key, obsp=obsp)
    graph = scice_graph(adata, key)
    targets, gammas = _check_parameters(
        adata.n_obs,
        cluster_range,
        resolution,
        n_trials,
        n_bootstrap,
        n_iterations,
        max_iterations,
        min_cluster_size,
        objective_function,
        beta,
        remove_threshold,
        ic_threshold,
        n_jobs,
    )
    random_state = _concrete_seed(random_state)
    entropy = int(np.random.SeedSequence(random_state).entropy)
    payload = GraphPayload.from_adjacency(graph)
    runner = LeidenRunner(payload, objective_function, beta, 1 if n_jobs is None else n_jobs)
    optimizer = TargetOptimizer(
        runner, entropy, n_trials, n_iterations, max_iterations, remove_threshold, min_cluster_size
    )
    search_table = pd.DataFrame({"gamma": np.zeros(0), "median_cluster_count": np.zeros(0)})
    if targets:
        mode = "cluster_range"
        search = ResolutionSearch(
            runner,
            entropy,
            min_cluster_size,
            _start_resolution(payload, objective_function),
            _component_floor(graph, min_cluster_size),
        )
        search.bracket(targets, progress_bar)
        results = []
        for k in tqdm(targets, desc="scICE targets", disable=not progress_bar):
            interval = search.interval(k)
            prelim = np.nan if interval is None else search.preliminary_ic(k, interval)
            results.append(optimizer.optimize(k, interval, prelim))
        search_table = pd.DataFrame(dict(zip(search_table.columns, search.table(), strict=True)))
    else:
        mode = "resolution"
        results = optimizer.evaluate_manual(gammas)
    winners, final = _finalize(results, graph, entropy, n_bootstrap, min_cluster_size)
    target_table, rounds_table = _diagnostics(results, winners, final, mode)

    n_cluster = winners["n_cluster"].to_numpy(np.int64)
    ic = winners["ic"].to_numpy(np.float64)
    consistent = ic <= ic_threshold
    best = _best_result(winners, consistent)
    tied = _tied_counts(winners, consistent, best)
    _warn_about_coverage(targets, n_cluster, target_table)
    if len(tied) > 1:
        warnings.warn(
            f"scICE: cluster counts {tied.tolist()} are equally consistent (IC {ic[best]:.4f}); "
            f"best_cluster={int(n_cluster[best])} was picked by the widest resolution interval, then the "
            f"most clusters. Look at all of them (uns[{key_added!r}]['tied_clusters']).",
            UserWarning,
            stacklevel=2,
        )
    adata = adata.copy() if copy else adata
    adata.uns[key_added] = {
        "analysis_mode": mode,
        "n_cluster": n_cluster,
        "source_target_cluster": winners["source_target_cluster"].to_numpy(np.int64),
        "gamma": winners["gamma"].to_numpy(np.float64),
        "ic": ic,
        "ic_vec": np.stack(winners["ic_vec"].tolist()) if len(winners) else np.zeros((0, n_bootstrap)),
        "best_labels": (
            np.stack(winners["labels"].tolist())
            if len(winners)
            else np.zeros((0, adata.n_obs), dtype=np.int32)
        ),
        "n_iterations": winners["n_iterations"].to_numpy(np.int64),
        "ic_threshold": float(ic_threshold),
        "consistent_clusters": n_cluster[consistent],
        "best_cluster": int(n_cluster[best]) if best >= 0 else -1,
        "best_resolution": float(winners["gamma"].iloc[best]) if best >= 0 else float("nan"),
        "tied_clusters": tied,
        "coverage_complete": set(targets) <= set(n_cluster.tolist()),
        "search_coverage_complete": all(r.status != "not_found" for r in results),
        "cluster_range_tested": np.asarray(targets, dtype=np.int64),
        "resolution_input": np.asarray(gammas, dtype=np.float64),
        "target_diagnostics": target_table,
        "optimization_diagnostics": rounds_table,
        "resolution_search_diagnostics": search_table,
        "params": {
            "neighbors_key": neighbors_key,
            "obsp": key,
            "n_trials": int(n_trials),
            "n_bootstrap": int(n_bootstrap),
            "beta": float(beta),
            "beta_applied": True,
            "n_iterations": int(n_iterations),
            "max_iterations": int(max_iterations),
            "remove_threshold": float(remove_threshold),
            "min_cluster_size": int(min_cluster_size),
            "objective_function": objective_function,
            "random_state": random_state,
            "n_jobs": 1 if n_jobs is None else int(n_jobs),
            "backend": "igraph",
        },
    }
    if best >= 0:
        adata.obs[key_added] = _categorical(adata.uns[key_added]["best_labels"][best])
    else:
        warnings.warn(
            f"scICE: no result, so no labels were written to adata.obs[{key_added!r}]",
            UserWarning,
            stacklevel=2,
        )
    return adata if copy else None


def _categorical(labels: np.ndarray) -> pd.Categorical:
    """Cluster labels ``0, 1, ...`` as a categorical of strings, as :func:`scanpy.tl.leiden` writes them."""
    return pd.Categorical.from_codes(labels, categories=[str(c) for c in range(int(labels.max()) + 1)])


def scice_labels(
    adata: AnnData,
    *,
    threshold: float | None = None,
    key: str = "scice",
    key_added: str | None = None,
    inplace: bool = True,
) -> pd.DataFrame | None:
    """Labels of every consistent scICE result (IC at or below ``threshold``), one ``obs`` column each.

    :func:`scice` writes the labels of the recommended count to ``obs[key_added]``; this adds the
    other consistent counts beside it.

    Parameters
    ----------
    adata
        Annotated data matrix holding the results of :func:`scice` in ``adata.uns[key]``.
    threshold
        Largest IC of a result called consistent; default: the run's ``ic_threshold``, so that the
        columns are those of ``uns[key]["consistent_clusters"]``.
    key
        Key of the scICE results in ``adata.uns`` (the ``key_added`` of :func:`scice`).
    key_added
        Prefix of the new ``obs`` columns; defaults to ``key``.
    inplace
        Add the labels to ``adata.obs`` (else return them).

    Returns
    -------
    pandas.DataFrame or None
        Without ``inplace``: one categorical column ``<key_added>_k_<k>`` per consistent ``k``,
        indexed by ``adata.obs_names``. With ``inplace``, these columns are added to
        ``adata.obs`` (replacing columns of the same name) and None is returned.

    Examples
    --------
    >>> import scanpy as sc
    >>> import xspecies as xs
    >>> adata = sc.datasets.blobs(n_centers=3, n_observations=150, random_state=0)
    >>> sc.pp.neighbors(adata, n_neighbors=10, use_rep="X", random_state=0)
    >>> xs.tl.scice(adata, cluster_range=[3], n_trials=5, n_bootstrap=20, progress_bar=False)
    >>> xs.tl.scice_labels(adata)
    >>> adata.obs.columns.tolist()
    ['blobs', 'scice', 'scice_k_3']
    """
    if key not in adata.uns:
        raise KeyError(f"no scICE results at adata.uns[{key!r}]; run xspecies.tl.scice first")
    results = adata.uns[key]
    threshold = results["ic_threshold"] if threshold is None else threshold
    if np.isnan(threshold):
        raise ValueError(f"threshold must be a number (np.inf keeps every result), got {threshold!r}")
    labels = np.asarray(results["best_labels"])
    if labels.ndim != 2 or labels.shape[1] != adata.n_obs:
        raise ValueError(
            f"adata.uns[{key!r}]['best_labels'] has shape {labels.shape}, expected (n_results, {adata.n_obs})"
        )
    prefix = key if key_added is None else key_added
    columns = {
        f"{prefix}_k_{int(n_cluster)}": _categorical(row)
        for n_cluster, ic, row in zip(results["n_cluster"], results["ic"], labels, strict=True)
        if ic <= threshold
    }
    frame = pd.DataFrame(columns, index=adata.obs_names)
    if not inplace:
        return frame
    for column in frame.columns:
        adata.obs[column] = frame[column]
    return None
