"""Log-log figure of seconds per stage against cells per species, from benchmarks/results/scale.json.

Usage: ``python benchmarks/plot_scale.py [--results FILE] [--out docs/_static/scale.png]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=HERE / "results" / "scale.json")
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "_static" / "scale.png")
    args = parser.parse_args()
    sizes = json.loads(args.results.read_text())["sizes"]
    stages: dict[str, list[tuple[int, float]]] = {}
    for size, entry in sorted(sizes.items(), key=lambda item: int(item[0])):
        for name, record in entry["stages"].items():
            if record.get("status") == "ok" and not name.endswith("_first_call") and name != "resample":
                stages.setdefault(name, []).append((int(size), record["seconds"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = "os^vD<>ph*xP"
    for i, (name, points) in enumerate(sorted(stages.items())):
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker=markers[i % len(markers)], label=name)
    ref = min(int(s) for s in sizes)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="cells per species",
        ylabel="wall seconds",
        title="Cost of each stage (4,000 genes, 2 shared CPU cores)",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.axline((ref, 1), slope=1, color="grey", linestyle=":", label="linear in cells")
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
