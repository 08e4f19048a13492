"""``xspecies align`` on the full Baron pancreas files as a user brings them, against the tuned run.

The CLI is run as a user would (a subprocess of ``xspecies align``) on the raw count files of the
shared data folder: all 14,877 mouse and 20,125 human genes, all cells, the default gene selection
(4000 highly variable genes per species, ``--hvg-flavor seurat``: the dispersion of the log-normalized
counts), 40 + 40 epochs. Its balanced accuracy over the shared cell types (from ``report.json``) is
compared, seed by seed, with the tuned run of ``benchmarks/bench_model.py``
(``benchmarks/results/model.json``: 4000 HVGs per species chosen by the benchmark itself, same epochs and
seeds). Done when every seed is within 0.02 of the tuned run (or above it). Seeds that the tuned run
lacks are run and recorded without a comparison.

``--hvg-flavor seurat_v3`` runs the other gene ranking of ``xspecies align`` (its default in earlier versions).

Usage: ``python benchmarks/bench_align.py [--seeds 0 1 2] [--hvg-flavor F] [--data DIR] [--keep DIR]
[--add] [--out FILE]``; writes ``benchmarks/results/align.json`` (with ``--add``, the runs of other seeds
already in it are kept). ``--compare`` runs nothing and compares the runs in ``--out`` with ``--tuned``
again, after a new run of ``bench_model.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
TOLERANCE = 0.02


def run_align(data: Path, output: Path, seed: int, epochs: int, flavor: str | None) -> dict:
    """Run ``xspecies align`` on the Baron files; its report and wall time."""
    command = [
        sys.executable,
        "-m",
        "xspecies.cli.main",
        "align",
        "--context",
        str(data / "baron_mouse_counts.h5ad"),
        "--target",
        str(data / "baron_human_counts.h5ad"),
        "--context-species",
        "mouse",
        "--target-species",
        "human",
        "--labels-key",
        "cell_ontology_class",
        "--context-batch-key",
        "donor",
        "--target-batch-key",
        "donor",
        "--target-labels-key",
        "cell_ontology_class",
        "--epochs",
        str(epochs),
        "--seed",
        str(seed),
        "--output",
        str(output),
        "--quiet",
        *([] if flavor is None else ["--hvg-flavor", flavor]),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"xspecies align failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads((output / "report.json").read_text())
    return {"seed": seed, "wall_s": wall, "stdout": done.stdout.strip().splitlines(), **report}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument(
        "--hvg-flavor", choices=["seurat", "seurat_v3"], default=None, help="default: the CLI's default"
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--tuned", type=Path, default=RESULTS / "model.json", help="bench_model.py results")
    parser.add_argument("--out", type=Path, default=RESULTS / "align.json")
    parser.add_argument("--keep", type=Path, default=None, help="keep the align output folders here")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="run nothing: compare the runs already in --out with --tuned again (after a new tuned run)",
    )
    parser.add_argument(
        "--add",
        action="store_true",
        help="keep the runs of other seeds already in --out (one file for all seeds)",
    )
    args = parser.parse_args()
    tuned = {run["seed"]: run for run in json.loads(args.tuned.read_text())["runs"]}
    keys = ["balanced_accuracy", "accuracy", "recall", "n_novel", "n_context_genes", "n_target_genes"]
    keys += ["n_context_cells", "n_target_cells", "train_context_s", "train_target_s", "transfer_s", "wall_s"]
    keys += ["hvg_flavor"]
    earlier = json.loads(args.out.read_text()) if (args.add or args.compare) and args.out.exists() else {}
    if args.compare:  # the runs in --out, compared again with --tuned
        write(args, earlier["command"], [compare(run, tuned) for run in earlier["runs"]], earlier.get("note"))
        return
    kept = [run for run in earlier.get("runs", []) if run["seed"] not in args.seeds]
    command = (
        "xspecies align --context baron_mouse_counts.h5ad --target baron_human_counts.h5ad "
        "--context-species mouse --target-species human --labels-key cell_ontology_class "
        "--context-batch-key donor --target-batch-key donor --target-labels-key cell_ontology_class "
        f"--epochs {args.epochs} --seed SEED"
        + ("" if args.hvg_flavor is None else f" --hvg-flavor {args.hvg_flavor}")
    )
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            folder = (args.keep or Path(scratch)) / f"seed{seed}"
            report = run_align(args.data, folder, seed, args.epochs, args.hvg_flavor)
            run = {key: report[key] for key in ["seed", *keys] if key in report}
            run["novel_flag_rate"] = report["n_novel"] / report["n_target_cells"]
            runs.append(compare(run, tuned))
            versus = (
                "no tuned run"
                if run["difference"] is None
                else (f"tuned {run['tuned_balanced_accuracy']:.3f} ({run['difference']:+.3f})")
            )
            print(
                f"seed {seed}: align {run['balanced_accuracy']:.3f}, {versus}, "
                f"{run['n_context_genes']}/{run['n_target_genes']} genes, {run['wall_s']:.0f} s",
                flush=True,
            )
            write(args, command, kept + runs, earlier.get("note"))


def compare(run: dict, tuned: dict) -> dict:
    """``run`` with the balanced accuracy and accuracy of the tuned run of its seed and the difference."""
    match = tuned.get(run["seed"])
    run["tuned_balanced_accuracy"] = None if match is None else match["balanced_accuracy"]
    run["tuned_accuracy"] = None if match is None else match["accuracy"]
    run["difference"] = None if match is None else run["balanced_accuracy"] - match["balanced_accuracy"]
    return run


def write(args: argparse.Namespace, command: str, runs: list, note: str | None) -> None:
    """Write the runs, their summary, the machine and a ``note`` (when not None) to ``args.out``."""
    every = sorted(runs, key=lambda r: r["seed"])
    differences = [r["difference"] for r in every if r["difference"] is not None]
    result = {
        "benchmark": "xspecies align on the full Baron files (mouse context -> human target)",
        "command": command,
        "tuned_run": str(args.tuned.name),
        "tolerance": TOLERANCE,
        "summary": {
            "seeds": [r["seed"] for r in every],
            "balanced_accuracy": [r["balanced_accuracy"] for r in every],
            "accuracy": [r["accuracy"] for r in every],
            "tuned_balanced_accuracy": [r["tuned_balanced_accuracy"] for r in every],
            "difference": None
            if not differences
            else {"min": float(np.min(differences)), "mean": float(np.mean(differences))},
            "done": bool(differences) and bool(min(differences) >= -TOLERANCE),
        },
        "runs": every,
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_after": os.getloadavg(),
            "python": platform.python_version(),
        },
    }
    if note is not None:
        result["note"] = note
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
