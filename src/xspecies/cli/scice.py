"""``xspecies scice``: scICE clustering consistency of the graph stored in a (large) h5ad file.

Only the graph (``obsp/<obsp>``, or the one ``uns/<neighbors-key>/connectivities_key`` names) and the cell
names are read (never ``X`` or layers). The results, the labels ``obs/<key-added>`` and
``uns/<key-added>``, are written into a copy of the input: a new file (``--output``, by default
``<input>_<key-added>.h5ad`` beside the input), or, with ``--inplace``, a copy that then replaces the
input. Either way the copy is complete and flushed to disk before it is renamed into place, so an
interruption never leaves a damaged or half-written file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from xspecies._io import atomic_path

from .main import CLIError, add_debug_argument

if TYPE_CHECKING:
    import h5py
    from anndata import AnnData


def read_graph(path: str | Path, *, neighbors_key: str | None = None, obsp: str | None = None) -> AnnData:
    """Read only a graph, the cell names and the graph's ``uns`` settings of an h5ad file.

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    neighbors_key
        Key in ``uns`` of a :func:`scanpy.pp.neighbors` result naming the graph, as in
        :func:`xspecies.tl.scice`.
    obsp
        Key of the graph in ``obsp`` (instead of ``neighbors_key``).

    Returns
    -------
    anndata.AnnData
        Cells without variables, with the graph in ``obsp`` and the ``uns`` entry that names it.

    Examples
    --------
    >>> import anndata as ad
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> import tempfile
    >>> graph = sp.csr_matrix(np.array([[0, 1.0], [1.0, 0]]))
    >>> path = f"{tempfile.mkdtemp()}/graph.h5ad"
    >>> ad.AnnData(np.ones((2, 3)), obsp={"connectivities": graph}).write_h5ad(path)
    >>> read_graph(path)
    AnnData object with n_obs × n_vars = 2 × 0
        obsp: 'connectivities'
    """
    import h5py
    import numpy as np
    import pandas as pd
    from anndata import AnnData
    from anndata.io import read_elem

    from xspecies.tl._scice._graph import graph_key

    with h5py.File(path, "r") as handle:
        name = "neighbors" if neighbors_key is None else neighbors_key
        settings = handle.get(f"uns/{name}")
        uns = {}
        if isinstance(settings, h5py.Group) and "connectivities_key" in settings:
            uns[name] = {"connectivities_key": read_elem(settings["connectivities_key"])}
        key = graph_key(AnnData(uns=uns), neighbors_key=neighbors_key, obsp=obsp)
        if "obsp" not in handle or key not in handle["obsp"]:
            available = list(handle["obsp"].keys()) if "obsp" in handle else []
            raise KeyError(f"graph {key!r} not found in obsp of {path} (available: {available})")
        graph = read_elem(handle["obsp"][key])
        obs = handle["obs"]
        names = read_elem(obs[obs.attrs["_index"]])
    adata = AnnData(obs=pd.DataFrame(index=pd.Index(np.asarray(names).astype(str))), uns=uns)
    adata.obsp[key] = graph
    return adata


@contextmanager
def _emptied(path: str | Path, group: str, key: str) -> Iterator[h5py.Group]:
    """The top-level ``group`` of an h5ad file opened for writing, its entry ``key`` deleted."""
    import h5py

    from xspecies._validation import check_key_name

    check_key_name(key)
    with h5py.File(path, "a") as handle:
        parent = handle.require_group(group)
        if key in parent:
            del parent[key]
        yield parent


def write_uns(path: str | Path, key: str, value: dict) -> None:
    """Write (or replace) one ``uns`` entry of an existing h5ad file in place.

    Not atomic by itself: :func:`write_result` calls it on a copy of the file.

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    key
        Entry of ``uns`` (one plain key, see :func:`xspecies._validation.check_key_name`).
    value
        The element to write.

    Examples
    --------
    >>> import anndata as ad
    >>> import numpy as np
    >>> import tempfile
    >>> path = f"{tempfile.mkdtemp()}/cells.h5ad"
    >>> ad.AnnData(np.ones((2, 1))).write_h5ad(path)
    >>> write_uns(path, "scice", {"best_cluster": 2})
    >>> ad.read_h5ad(path).uns["scice"]["best_cluster"]
    2
    """
    from anndata.io import write_elem

    with _emptied(path, "uns", key) as uns:
        write_elem(uns, key, value)


def write_obs(path: str | Path, key: str, values) -> None:
    """Write (or replace) one ``obs`` column of an existing h5ad file in place.

    Not atomic by itself: :func:`write_result` calls it on a copy of the file.

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    key
        Column name (one plain key, see :func:`xspecies._validation.check_key_name`).
    values
        One value per cell (e.g. a :class:`pandas.Categorical`).

    Examples
    --------
    >>> import anndata as ad
    >>> import pandas as pd
    >>> import tempfile
    >>> path = f"{tempfile.mkdtemp()}/cells.h5ad"
    >>> ad.AnnData(obs={"donor": ["a", "b"]}).write_h5ad(path)
    >>> write_obs(path, "scice", pd.Categorical(["0", "1"]))
    >>> ad.read_h5ad(path).obs
      donor scice
    0     a     0
    1     b     1
    """
    import h5py
    import numpy as np
    from anndata.io import write_elem

    with _emptied(path, "obs", key) as obs:
        write_elem(obs, key, values)
        order = [str(c) for c in obs.attrs.get("column-order", []) if str(c) != key] + [key]
        obs.attrs["column-order"] = np.array(order, dtype=h5py.string_dtype())


def write_result(source: str | Path, destination: str | Path, key: str, value: dict, labels=None) -> None:
    """Write a copy of ``source`` with ``uns[key] = value`` (and ``obs[key] = labels``) to ``destination``, atomically.

    The copy is made and completed beside ``destination`` and renamed into place only when it is
    complete and flushed to disk; ``destination`` may be ``source`` (in-place update). An existing
    ``destination`` is intact until the rename.

    Parameters
    ----------
    source
        The input ``.h5ad`` file.
    destination
        The file to write.
    key
        Entry of ``uns``.
    value
        The element to write.
    labels
        One value per cell for ``obs[key]``; None writes no column.

    Examples
    --------
    >>> import anndata as ad
    >>> import numpy as np
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> ad.AnnData(np.ones((2, 1))).write_h5ad(f"{folder}/in.h5ad")
    >>> write_result(f"{folder}/in.h5ad", f"{folder}/out.h5ad", "scice", {"best_cluster": 2}, ["0", "1"])
    >>> out = ad.read_h5ad(f"{folder}/out.h5ad")
    >>> out.uns["scice"]["best_cluster"], out.obs["scice"].tolist()
    (2, ['0', '1'])
    """
    with atomic_path(destination) as tmp:
        shutil.copyfile(source, tmp)
        write_uns(tmp, key, value)
        if labels is not None:
            write_obs(tmp, key, labels)


def _output_path(args: argparse.Namespace) -> Path:
    """The file to write, checked before the run: never the input unless ``--inplace``."""
    source = Path(args.input)
    if args.inplace and args.output is not None:
        raise CLIError("give either --inplace or --output, not both")
    if args.inplace:
        destination = source
    elif args.output is not None:
        destination = Path(args.output)
    else:
        destination = source.with_name(f"{source.stem}_{args.key_added}.h5ad")
    if not args.inplace and destination.resolve() == source.resolve():
        raise CLIError(f"--output {destination} is the input file: pass --inplace to update the input")
    if destination.is_dir():
        raise CLIError(f"output {destination} is a folder: give a file name")
    folder = destination.parent
    if not folder.is_dir():
        raise CLIError(f"the folder of the output {destination} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write to the folder {folder} of the output {destination}")
    needed, free = source.stat().st_size, shutil.disk_usage(folder).free
    if needed > free:
        raise CLIError(
            f"not enough free disk space in {folder} for a copy of {source} "
            f"({needed / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free)"
        )
    return destination


def _check_input(path: Path) -> None:
    import h5py

    if not path.is_file():
        raise CLIError(f"input file not found: {path}")
    if not h5py.is_hdf5(path):
        raise CLIError(f"{path} is not an h5ad (HDF5) file")


def _run(args: argparse.Namespace) -> int:
    from xspecies._validation import check_key_name

    if (args.cluster_range is None) == (args.resolution is None):
        raise CLIError("give exactly one of --cluster-range or --resolution")
    cluster_range = None
    if args.cluster_range is not None:
        low, high = args.cluster_range
        if low > high:
            raise CLIError(f"--cluster-range MIN MAX needs MIN <= MAX, got {low} {high}")
        cluster_range = list(range(low, high + 1))
    check_key_name(args.key_added, "--key-added")
    source = Path(args.input)
    _check_input(source)
    destination = _output_path(args)
    import numpy as np  # the heavy imports once the arguments are known to be good

    from xspecies.tl import scice

    start = time.perf_counter()
    adata = read_graph(source, neighbors_key=args.neighbors_key, obsp=args.obsp)
    print(f"read graph {next(iter(adata.obsp))!r} of {adata.n_obs} cells from {source}", flush=True)
    scice(
        adata,
        neighbors_key=args.neighbors_key,
        obsp=args.obsp,
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
    result = adata.uns[args.key_added]
    labels = adata.obs.get(args.key_added)
    written = f"uns[{args.key_added!r}]" + ("" if labels is None else f" and obs[{args.key_added!r}]")
    print(f"writing {written} to {destination}", flush=True)
    write_result(source, destination, args.key_added, result, None if labels is None else labels.array)
    print(
        f"scICE done in {time.perf_counter() - start:.1f} s: cluster counts {result['n_cluster'].tolist()}, "
        f"IC {np.round(result['ic'], 4).tolist()}, consistent {result['consistent_clusters'].tolist()}; "
        f"wrote {written} to {destination}",
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
            "Run scICE on a neighbour graph of an h5ad file (the one uns[NEIGHBORS_KEY] names, or "
            "obsp[OBSP]; default: that of uns['neighbors'], else obsp['connectivities']), reading only the "
            "graph and cell names. The labels of the recommended cluster count obs[KEY_ADDED] and the "
            "results uns[KEY_ADDED] are written into a copy of INPUT (--output, default "
            "INPUT_KEY_ADDED.h5ad beside INPUT); INPUT is only changed with --inplace. Outputs are "
            "written completely beside their destination and then renamed into place."
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
    graph = parser.add_mutually_exclusive_group()
    graph.add_argument(
        "--neighbors-key",
        default=None,
        help="uns entry of a scanpy.pp.neighbors result naming the graph (default: neighbors)",
    )
    graph.add_argument("--obsp", default=None, help="graph in obsp (instead of --neighbors-key)")
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
    parser.add_argument(
        "--key-added", default="scice", help="obs and uns key of the results (default: scice)"
    )
    parser.add_argument(
        "--output",
        default=None,
        help="file to write: a copy of INPUT with the result (default: INPUT_KEY_ADDED.h5ad beside INPUT; "
        "an existing file is replaced when the new one is complete)",
    )
    parser.add_argument(
        "--inplace",
        action="store_true",
        help="write the result into INPUT itself (through a complete copy that replaces it)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_debug_argument(parser)
    parser.set_defaults(func=_run)
