"""``xspecies demo`` and ``xspecies align`` command lines."""

import json

import pytest

from xspecies.cli.main import CLIError, build_parser, main


def test_commands_registered(capsys):
    parser = build_parser()
    args = parser.parse_args(["demo", "--epochs", "3", "--output", "out"])
    assert args.epochs == 3 and args.output == "out" and callable(args.func)
    args = parser.parse_args(
        ["align", "--context", "c.h5ad", "--target", "t.h5ad", "--context-species", "mouse"]
        + ["--target-species", "human", "--labels-key", "cell_type"]
    )
    assert args.labels_key == "cell_type" and args.output == "xspecies_output"
    assert args.n_top_genes == 4000 and args.n_neighbors is None and args.accelerator == "auto"
    assert parser.parse_args([*_ALIGN, "--all-genes"]).n_top_genes == 0
    assert args.hvg_flavor == "seurat"
    assert parser.parse_args([*_ALIGN, "--hvg-flavor", "seurat_v3"]).hvg_flavor == "seurat_v3"
    with pytest.raises(CLIError, match="--hvg-flavor: invalid choice: 'cell_ranger'"):
        parser.parse_args([*_ALIGN, "--hvg-flavor", "cell_ranger"])
    with pytest.raises(CLIError, match="required"):
        parser.parse_args(["align", "--context", "c.h5ad"])  # missing required arguments


_ALIGN = ["align", "--context", "c.h5ad", "--target", "t.h5ad", "--context-species", "mouse"]
_ALIGN += ["--target-species", "human", "--labels-key", "cell_type"]


def test_align_missing_file(tmp_path, capsys):
    argv = ["align", "--context", str(tmp_path / "nope.h5ad"), "--target", str(tmp_path / "nope2.h5ad")]
    argv += ["--context-species", "mouse", "--target-species", "human", "--labels-key", "x"]
    assert main(argv) == 2
    assert "file not found" in capsys.readouterr().err


def test_demo_runs(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "2", "--max-cells", "400", "--output", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "balanced accuracy" in printed
    report = json.loads((out / "report.json").read_text())
    assert 0 <= report["balanced_accuracy"] <= 1
    for name in ("confusion_matrix.png", "history_context.png", "history_target.png"):
        assert (out / "figures" / name).stat().st_size > 0
    assert "%" in (out / "confusion_matrix_percent.csv").read_text().splitlines()[0]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no staging left
    assert (out / "human_target.h5ad").exists() and (out / "mouse_context.h5ad").exists()
    assert (out / "models" / "target" / "model.pt").exists()
