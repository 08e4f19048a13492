"""scICE search: resolution intervals per cluster count, gamma grids and warm-started refinement.

Cluster-range mode first brackets, for every requested ``k``, the interval of resolutions whose
median (effective) cluster count equals ``k``: cheap Leiden runs on a shared, cached set of
resolutions, bisected in ``log(gamma)``. Each interval then gets a grid of resolutions, evaluated
with ``n_trials`` Leiden runs each; a ``k`` whose best IC reaches ``remove_threshold`` is dropped,
otherwise rounds of warm-started runs (``initial_membership`` = previous labels) refine the better
half of the grid until the IC stops improving (by more than ``IC_TOLERANCE`` in ``IC_PATIENCE``
rounds in a row), the labels stop changing or ``max_iterations`` is reached, and the lowest-IC
resolution wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ._core import effective_cluster_count, labeling_ic
from ._leiden import Job, LeidenRunner

#: Leiden runs per resolution while bracketing intervals, and their iterations.
SEARCH_TRIALS = 5
SEARCH_ITERATIONS = 2
#: Bisection stops when an interval end is known within this factor of gamma.
SEARCH_TOLERANCE = 1.05
SEARCH_MAX_ROUNDS = 40
#: Resolutions in the grid laid over each interval.
N_GAMMA = 6
#: Refinement stops after IC_PATIENCE rounds in a row that lower the best IC by at most IC_TOLERANCE.
IC_TOLERANCE = 1e-3
IC_PATIENCE = 2
#: Share of cells in too-small clusters above which a resolution counts as "too many clusters".
MAX_TINY_FRACTION = 0.5

_PHASE_SEARCH, _PHASE_GRID, _PHASE_REFINE, _PHASE_MANUAL = range(4)


def trial_seed(entropy: int, *key: int) -> int:
    """Seed of one Leiden run, derived from the run's position only (independent of scheduling).

    Parameters
    ----------
    entropy
        The user's random state.
    *key
        Non-negative integers naming the run (phase, target, gamma index, trial, round).

    Returns
    -------
    int
        A 32-bit seed.

    Examples
    --------
    >>> trial_seed(0, 1, 2) == trial_seed(0, 1, 2) != trial_seed(0, 2, 1)
    True
    """
    return int(np.random.SeedSequence(entropy, spawn_key=key).generate_state(1)[0])


@dataclass
class GammaEvaluation:
    """Trials at one resolution and their IC summary.

    Attributes
    ----------
    gamma
        The resolution.
    labels
        ``(n_trials, n_cells)`` memberships of the trials.
    min_cluster_size
        Size below which a cluster does not count.
    """

    gamma: float
    labels: np.ndarray
    min_cluster_size: int
    ic: float = field(init=False)
    median_count: float = field(init=False)
    unique: np.ndarray = field(init=False, repr=False)
    inverse: np.ndarray = field(init=False, repr=False)
    similarity: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.ic, self.unique, self.inverse, self.similarity = labeling_ic(self.labels)
        counts = [effective_cluster_count(row, self.min_cluster_size) for row in self.unique]
        self.median_count = float(np.median(np.asarray(counts)[self.inverse]))


class ResolutionSearch:
    """Shared cache of cheap cluster counts and the bisection of per-``k`` gamma intervals.

    Parameters
    ----------
    runner
        Leiden runner on the graph.
    entropy
        Random state.
    min_cluster_size
        Smallest cluster that counts.
    start
        First resolution to try.
    floor
        Smallest reachable cluster count (the connected components with at least
        ``min_cluster_size`` vertices).
    """

    def __init__(
        self, runner: LeidenRunner, entropy: int, min_cluster_size: int, start: float, floor: int
    ) -> None:
        self.runner = runner
        self.entropy = entropy
        self.min_cluster_size = min_cluster_size
        self.start = start
        self.floor = floor
        self.counts: dict[float, float] = {}
        self.ics: dict[float, float] = {}

    def _count(self, labels: np.ndarray) -> float:
        sizes = np.bincount(labels)
        tiny = sizes[sizes < self.min_cluster_size].sum()
        if tiny > MAX_TINY_FRACTION * labels.size:
            return float(labels.size)
        return float(np.count_nonzero(sizes >= self.min_cluster_size))

    def evaluate(self, gammas: list[float]) -> None:
        """Cluster counts (median over cheap runs) and their IC at new resolutions, in one batch.

        Parameters
        ----------
        gammas
            Resolutions; those already cached are skipped.
        """
        todo = sorted({g for g in gammas if g not in self.counts})
        jobs: list[Job] = []
        for gamma in todo:
            bits = int(np.float64(gamma).view(np.uint64))
            jobs += [
                (gamma, trial_seed(self.entropy, _PHASE_SEARCH, bits, t), SEARCH_ITERATIONS, None)
                for t in range(SEARCH_TRIALS)
            ]
        results = self.runner.run(jobs)
        for i, gamma in enumerate(todo):
            trials = results[i * SEARCH_TRIALS : (i + 1) * SEARCH_TRIALS]
            self.counts[gamma] = float(np.median([self._count(labels) for labels in trials]))
            self.ics[gamma] = labeling_ic(np.stack(trials))[0]

    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        gammas = np.array(sorted(self.counts))
        return gammas, np.array([self.counts[g] for g in gammas])

    def _brackets(self, k: int) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
        """Known gammas around the lower end (count reaches k) and upper end (count exceeds k)."""
        gammas, counts = self._sorted()
        out = []
        for above in (counts >= k, counts > k):
            hits = np.flatnonzero(above)
            if hits.size == 0 or hits[0] == 0:
                out.append(None)
            else:
                out.append((float(gammas[hits[0] - 1]), float(gammas[hits[0]])))
        return out[0], out[1]

    def _expand(self, k_min: int, k_max: int) -> None:
        low = high = self.start
        self.evaluate([low])
        for _ in range(20):
            gammas, counts = self._sorted()
            need_low = counts[0] >= k_min and counts[0] > self.floor
            need_high = counts[-1] <= k_max
            if not (need_low or need_high):
                return
            low, high = gammas[0], gammas[-1]
            self.evaluate(([low / 8] if need_low else []) + ([high * 8] if need_high else []))

    def interval(self, k: int) -> tuple[float, float] | None:
        """Resolution interval with median count ``k`` (after :meth:`bracket`), or None if skipped.

        Parameters
        ----------
        k
            Target cluster count.

        Returns
        -------
        tuple of float or None
            ``(gamma_low, gamma_high)``.
        """
        gammas, counts = self._sorted()
        reach = np.flatnonzero(counts >= k)
        if reach.size == 0 or counts[reach[0]] != k:
            return None
        exceed = np.flatnonzero(counts > k)
        last = exceed[0] - 1 if exceed.size else gammas.size - 1
        return float(gammas[reach[0]]), float(gammas[max(last, reach[0])])

    def preliminary_ic(self, k: int, interval: tuple[float, float]) -> float:
        """Lowest IC of the cheap runs at resolutions in ``interval`` with median count ``k``.

        Parameters
        ----------
        k
            Target cluster count.
        interval
            From :meth:`interval`.

        Returns
        -------
        float
            The preliminary IC.
        """
        return min(
            self.ics[g] for g in self.counts if interval[0] <= g <= interval[1] and self.counts[g] == k
        )

    def bracket(self, targets: list[int], progress_bar: bool) -> None:
        """Bisect in ``log(gamma)`` until both ends of every target's interval are known.

        Parameters
        ----------
        targets
            Requested cluster counts.
        progress_bar
            Show a progress bar over bisection rounds.
        """
        self._expand(min(targets), max(targets))
        with tqdm(total=SEARCH_MAX_ROUNDS, desc="scICE search", disable=not progress_bar, leave=False) as bar:
            for _ in range(SEARCH_MAX_ROUNDS):
                midpoints = set()
                for k in targets:
                    for pair in self._brackets(k):
                        if pair is not None and pair[1] > pair[0] * SEARCH_TOLERANCE:
                            midpoints.add(float(np.sqrt(pair[0] * pair[1])))
                if not midpoints:
                    break
                self.evaluate(sorted(midpoints))
                bar.update()

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """All cached resolutions and their median cluster counts.

        Returns
        -------
        tuple of numpy.ndarray
            Sorted gammas and counts.
        """
        return self._sorted()


@dataclass
class TargetResult:
    """Outcome of optimizing one target cluster count (or one manual resolution).

    Attributes
    ----------
    target
        Requested cluster count (or -1 in manual mode).
    status
        ``"kept"``, ``"removed"`` (IC above the removal threshold) or ``"not_found"``.
    best
        Winning evaluation (None unless kept).
    preliminary_ic
        Best IC of the cheap search runs at count ``target``.
    n_iterations
        Leiden iterations per trial spent on the winner.
    rounds
        Diagnostics rows ``(round, gamma, ic, median_count, kept)``.
    interval
        Resolution interval searched (NaN when none).
    """

    target: int
    status: str
    interval: tuple[float, float] = (float("nan"), float("nan"))
    best: GammaEvaluation | None = None
    preliminary_ic: float = float("nan")
    n_iterations: int = 0
    rounds: list[tuple[int, float, float, float, bool]] = field(default_factory=list)


def _grid(low: float, high: float) -> list[float]:
    if high <= low * (1 + 1e-9):
        return [low]
    return sorted({float(g) for g in np.geomspace(low, high, N_GAMMA)})


def _ranked(evaluations: list[GammaEvaluation], k: int) -> list[GammaEvaluation]:
    """Evaluations at count ``k`` by increasing IC (all evaluations if none hits ``k``)."""
    hits = [e for e in evaluations if e.median_count == k] or evaluations
    return sorted(hits, key=lambda e: e.ic)


class TargetOptimizer:
    """Grid evaluation and warm-started refinement of the resolution for each target ``k``.

    Parameters
    ----------
    runner
        Leiden runner on the graph.
    entropy
        Random state.
    n_trials, n_iterations, max_iterations, remove_threshold, min_cluster_size
        As in :func:`xspecies.tl.scice`.
    """

    def __init__(
        self,
        runner: LeidenRunner,
        entropy: int,
        n_trials: int,
        n_iterations: int,
        max_iterations: int,
        remove_threshold: float,
        min_cluster_size: int,
    ) -> None:
        self.runner = runner
        self.entropy = entropy
        self.n_trials = n_trials
        self.n_iterations = n_iterations
        self.max_iterations = max_iterations
        self.remove_threshold = remove_threshold
        self.min_cluster_size = min_cluster_size

    def evaluate(self, gammas: list[float], key: tuple[int, ...], initial: list[np.ndarray] | None = None):
        """Run ``n_trials`` trials per resolution (warm-started from ``initial`` labels if given).

        Parameters
        ----------
        gammas
            Resolutions.
        key
            Seed key prefix naming this batch.
        initial
            Per resolution, ``(n_trials, n_cells)`` starting memberships.

        Returns
        -------
        list of GammaEvaluation
            One per resolution.
        """
        jobs: list[Job] = []
        for g, gamma in enumerate(gammas):
            jobs += [
                (
                    gamma,
                    trial_seed(self.entropy, *key, g, t),
                    self.n_iterations,
                    None if initial is None else initial[g][t],
                )
                for t in range(self.n_trials)
            ]
        labels = self.runner.run(jobs)
        n = self.n_trials
        return [
            GammaEvaluation(gamma, np.stack(labels[g * n : (g + 1) * n]), self.min_cluster_size)
            for g, gamma in enumerate(gammas)
        ]

    def optimize(self, k: int, interval: tuple[float, float] | None, preliminary_ic: float) -> TargetResult:
        """Find the lowest-IC resolution for ``k`` within its interval.

        Parameters
        ----------
        k
            Target cluster count.
        interval
            ``(gamma_low, gamma_high)`` from :class:`ResolutionSearch`, None when no resolution gives ``k``.
        preliminary_ic
            Best IC of the cheap search runs in the interval; ``k`` is dropped when it reaches
            ``remove_threshold``.

        Returns
        -------
        TargetResult
            The outcome.
        """
        if interval is None:
            return TargetResult(k, "not_found")
        if preliminary_ic >= self.remove_threshold:
            return TargetResult(k, "removed", interval, preliminary_ic=preliminary_ic)
        result = TargetResult(k, "kept", interval, preliminary_ic=preliminary_ic)
        candidates = self.evaluate(_grid(*interval), (_PHASE_GRID, k))
        iterations = self.n_iterations
        settled, stalled = False, 0
        for round_index in range(self.max_iterations):
            ranked = _ranked(candidates, k)
            survivors = ranked[: (len(ranked) + 1) // 2]
            result.rounds += [
                (round_index, e.gamma, e.ic, e.median_count, any(e is s for s in survivors))
                for e in candidates
            ]
            if round_index == 0 and ranked[0].median_count != k:
                result.status = "not_found"
                return result
            best = survivors[0]
            if (
                (best.median_count == k and best.ic == 1.0)
                or settled
                or stalled >= IC_PATIENCE
                or iterations + self.n_iterations > self.max_iterations
            ):
                break
            refined = self.evaluate(
                [e.gamma for e in survivors], (_PHASE_REFINE, k, round_index), [e.labels for e in survivors]
            )
            iterations += self.n_iterations
            # every survivor reproduced its labels: the ranking is settled
            settled = all(
                np.array_equal(old.unique[old.inverse], new.unique[new.inverse])
                for old, new in zip(survivors, refined, strict=True)
            )
            stalled = stalled + 1 if _ranked(refined, k)[0].ic > best.ic - IC_TOLERANCE else 0
            candidates = refined
        result.best = _ranked(candidates, k)[0]
        result.n_iterations = iterations
        return result

    def evaluate_manual(self, gammas: list[float]) -> list[TargetResult]:
        """Evaluate fixed resolutions directly (manual resolution mode).

        Parameters
        ----------
        gammas
            Distinct resolutions.

        Returns
        -------
        list of TargetResult
            One kept result per resolution.
        """
        out = []
        for evaluation in self.evaluate(gammas, (_PHASE_MANUAL,)):
            row = (0, evaluation.gamma, evaluation.ic, evaluation.median_count, True)
            interval = (evaluation.gamma, evaluation.gamma)
            out.append(
                TargetResult(-1, "kept", interval, evaluation, evaluation.ic, self.n_iterations, [row])
            )
        return out
