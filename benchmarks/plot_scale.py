"""Log-log figure of CPU seconds per stage against cells per species, from benchmarks/results/scale.json.

Stages run with models trained on fewer cells than the size (``trained_on_cells``, ``--model-cells``)
are left out of the figure; the machine-speed probe of each size is written on it.

Usage: ``python benchmarks/plot_scale.py [--results FILE] [--out docs/_static/scale.png]``; also prints
the table of docs/benchmarks.md (wall and CPU seconds per 1,000 cells, peak RSS) as Markdown.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent


def table(sizes: dict) -> str:
    """Markdown table: one row per stage, per size ``wall s / 1k cells (CPU), peak RSS GiB``.

    First calls (compilation) are a fixed cost and given in total seconds.
    """
    order = sorted(sizes, key=int)
    names = list(dict.fromkeys(name for size in order for name in sizes[size]["stages"]))
    head = "| stage | " + " | ".join(f"{int(size):,} cells" for size in order) + " |"
    lines = [head, "|" + "---|" * (len(order) + 1)]
    for name in names:
        cells = []
        for size in order:
            record = sizes[size]["stages"].get(name)
            if record is None:
                cells.append("")
            elif record.get("status") != "ok":
                cells.append(record.get("status", "").replace("_", " "))
            elif name.endswith("_first_call"):  # a fixed cost: total seconds
                cpu = record.get("cpu_seconds")
                cpu = "" if cpu is None else f" ({cpu:.0f} CPU)"
                cells.append(f"{record['seconds']:.0f} s{cpu}")
            else:
                cpu = record.get("cpu_seconds_per_1k_cells")
                cpu = "" if cpu is None else f" ({cpu:.3g} CPU)"
                rss = record.get("peak_rss_gib")
                rss = "RSS not recorded" if rss is None else f"{rss:.2f} GiB"
                cells.append(f"{record['seconds_per_1k_cells']:.3g}{cpu}, {rss}")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=HERE / "results" / "scale.json")
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "_static" / "scale.png")
    args = parser.parse_args()
    sizes = json.loads(args.results.read_text())["sizes"]
    stages: dict[str, list[tuple[int, float]]] = {}
    probes = []
    for size, entry in sorted(sizes.items(), key=lambda item: int(item[0])):
        probes.append(f"{int(size):,}: {entry['gflops_before']:.0f}")
        for name, record in entry["stages"].items():
            if (
                record.get("status") == "ok"
                and not name.endswith("_first_call")
                and name != "resample"
                and record.get("trained_on_cells", int(size))
                == int(size)  # not a model trained on fewer cells
            ):
                seconds = record.get("cpu_seconds", record["seconds"])  # CPU seconds where recorded
                stages.setdefault(name, []).append((int(size), seconds))
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    markers = "os^vD<>ph*xP"
    for i, (name, points) in enumerate(sorted(stages.items())):
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker=markers[i % len(markers)], label=name)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="cells per species",
        ylabel="CPU seconds of the process",
        title="Cost of each stage (4,000 genes, one CPU thread)",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.axline((1e4, 1), (1e6, 100), color="grey", linestyle=":", label="linear in cells")
    ax.text(
        0.01,
        0.01,
        "matrix-product probe before each size (GFLOP/s): " + ", ".join(probes),
        transform=ax.transAxes,
        fontsize=7,
        color="dimgrey",
    )
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(table(sizes))


if __name__ == "__main__":
    main()
