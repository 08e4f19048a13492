"""``xspecies scice``: scICE clustering consistency of the graph stored in a (large) h5ad file.

Only the graph ``obsp/<graph-key>`` and the cell names are read (never ``X`` or layers); only
``uns/<key-added>`` is written back, into the input file or into a copy given by ``--output``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from anndata import AnnData
from anndata.io import read_elem, write_elem


def read_graph(path: str | Path, graph_key: str = "connectivities") -> AnnData:
    """Read only a graph and the cell names of an h5ad file.

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    graph_key
        Key of the graph in ``obsp``.

    Returns
    -------
    anndata.AnnData
        Cells without variables, with ``obsp[graph_key]``.

    Examples
    --------
    >>> adata = read_graph("data.h5ad")  # doctest: +SKIP
    """
    with h5py.File(path, "r") as handle:
        if "obsp" not in handle or graph_key not in handle["obsp"]:
            available = list(handle["obsp"].keys()) if "obsp" in handle else []
            raise KeyError(f"graph_key {graph_key!r} not found in obsp of {path} (available: {available})")
        graph = read_elem(handle["obsp"][graph_key])
        obs = handle["obs"]
        names = read_elem(obs[obs.attrs["_index"]])
    adata = AnnData(obs=pd.DataFrame(index=pd.Index(np.asarray(names).astype(str))))
    adata.obsp[graph_key] = graph
    return adata


def write_uns(path: str | Path, key: str, value: dict) -> None:
    """Write (or replace) one ``uns`` entry of an existing h5ad file in place.

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    key
        Entry of ``uns``.
    value
        The element to write.

    Examples
    --------
    >>> write_uns("data.h5ad", "scice", adata.uns["scice"])  # doctest: +SKIP
    """
    with h5py.File(path, "a") as handle:
        uns = handle.require_group("uns")
        if key in uns:
            del uns[key]
        write_elem(uns, key, value)


def _run(args: argparse.Namespace) -> int:
    from xspecies.tl import scice

    if (args.cluster_range is None) == (args.resolution is None):
        raise SystemExit("xspecies scice: give exactly one of --cluster-range or --resolution")
    cluster_range = None
    if args.cluster_range is not None:
        low, high = args.cluster_range
        if low > high:
            raise SystemExit(f"xspecies scice: --cluster-range MIN MAX needs MIN <= MAX, got {low} {high}")
        cluster_range = list(range(low, high + 1))
    start = time.perf_counter()
    adata = read_graph(args.input, args.graph_key)
    print(f"read graph {args.graph_key!r} of {adata.n_obs} cells from {args.input}", flush=True)
    scice(
        adata,
        graph_key=args.graph_key,
        cluster_range=cluster_range,
        resolution=args.resolution,
        n_trials=args.n_trials,
        n_bootstrap=args.n_bootstrap,
        beta=args.beta,
        n_iterations=args.n_iterations,
        max_iterations=args.max_iterations,
        min_cluster_size=args.min_cluster_size,
        n_jobs=args.n_jobs,
        random_state=args.seed,
        key_added=args.key_added,
        progress_bar=not args.quiet,
    )
    target = Path(args.input)
    if args.output is not None:
        target = Path(args.output)
        shutil.copyfile(args.input, target)
    write_uns(target, args.key_added, adata.uns[args.key_added])
    result = adata.uns[args.key_added]
    print(
        f"scICE done in {time.perf_counter() - start:.1f} s: cluster counts {result['n_cluster'].tolist()}, "
        f"IC {np.round(result['ic'], 4).tolist()}, consistent {result['consistent_clusters'].tolist()}; "
        f"wrote uns[{args.key_added!r}] to {target}",
        flush=True,
    )
    return 0


def register(subparsers) -> None:
    """Add the ``scice`` sub-command.

    Parameters
    ----------
    subparsers
        The sub-parsers action of the ``xspecies`` parser.
    """
    parser = subparsers.add_parser(
        "scice",
        help="scICE clustering consistency of a graph in an h5ad file",
        description=(
            "Run scICE on obsp[GRAPH_KEY] of an h5ad file, reading only the graph and cell names and "
            "writing only uns[KEY_ADDED] back (into INPUT, or into a copy given by --output)."
        ),
    )
    parser.add_argument("input", help="h5ad file with a neighbour graph in obsp")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--cluster-range",
        nargs=2,
        type=int,
        metavar=("MIN", "MAX"),
        help="target cluster counts MIN..MAX (inclusive)",
    )
    mode.add_argument("--resolution", nargs="+", type=float, help="resolutions to evaluate directly")
    parser.add_argument(
        "--graph-key", default="connectivities", help="graph in obsp (default: connectivities)"
    )
    parser.add_argument("--n-trials", type=int, default=15, help="Leiden runs per resolution (default: 15)")
    parser.add_argument("--n-bootstrap", type=int, default=100, help="bootstrap resamples (default: 100)")
    parser.add_argument(
        "--n-iterations", type=int, default=10, help="Leiden iterations per run (default: 10)"
    )
    parser.add_argument("--max-iterations", type=int, default=150, help="iteration budget (default: 150)")
    parser.add_argument("--beta", type=float, default=0.1, help="Leiden refinement randomness (default: 0.1)")
    parser.add_argument(
        "--min-cluster-size", type=int, default=2, help="smallest counted cluster (default: 2)"
    )
    parser.add_argument("--n-jobs", type=int, default=None, help="worker processes (default: serial)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--key-added", default="scice", help="uns key of the results (default: scice)")
    parser.add_argument("--output", default=None, help="write into a copy of INPUT at this path instead")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run)
