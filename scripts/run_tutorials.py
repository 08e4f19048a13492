"""Re-execute the tutorial notebooks in place, one at a time, so that their committed outputs are current.

Usage::

    python scripts/run_tutorials.py            # every tutorials/*.ipynb
    python scripts/run_tutorials.py 01 03      # only the notebooks whose name starts with these prefixes

Needs ``nbclient`` and ``ipykernel`` (``pip install -e ".[doc]"``). Each notebook runs with the
``tutorials/`` folder as working directory and must finish within ``--timeout`` seconds per cell.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"


def select(prefixes: list[str]) -> list[Path]:
    """Notebooks of ``tutorials/`` whose file name starts with one of ``prefixes`` (all when empty)."""
    notebooks = sorted(TUTORIALS.glob("*.ipynb"))
    if prefixes:
        notebooks = [nb for nb in notebooks if nb.name.startswith(tuple(prefixes))]
    if not notebooks:
        raise SystemExit(f"no notebook in {TUTORIALS} matches {prefixes}")
    return notebooks


def execute(path: Path, timeout: int) -> float:
    """Execute ``path`` in place; return the time it took in seconds."""
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()

    def report(cell, cell_index, **kwargs):
        if cell.cell_type == "code":
            print(f"  cell {cell_index:>3} done at {time.perf_counter() - start:6.0f} s", flush=True)

    NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(TUTORIALS)}},
        on_cell_executed=report,
    ).execute()
    nbformat.write(notebook, path)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="name prefixes of the notebooks to run (default: all)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    for path in select(args.prefixes):
        print(f"executing {path.name} ...", flush=True)
        print(f"  done in {execute(path, args.timeout):.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
