"""Bad command lines: one line on stderr, exit status 2, input files unchanged, nothing written."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xspecies.cli.main import main

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def pair_files(tmp_path, synthetic_pair):
    ctx, tgt = synthetic_pair(n_ctx=60, n_tgt=40, n_genes=12)
    ctx.layers["counts"] = ctx.X.copy()
    del tgt.obsm["homology_neighbors"]
    paths = tmp_path / "mouse.h5ad", tmp_path / "human.h5ad"
    ctx.write_h5ad(paths[0])
    tgt.write_h5ad(paths[1])
    (tmp_path / "not_h5ad.h5ad").write_text("just text")
    (tmp_path / "a_file").write_text("not a folder")
    return paths


def _align(tmp_path, paths, *extra):
    argv = ["align", "--context", str(paths[0]), "--target", str(paths[1]), "--context-species", "mouse"]
    argv += ["--target-species", "human", "--labels-key", "cell_type", "--output", str(tmp_path / "out")]
    return [*argv, *extra]


def _assert_one_line_error(capsys, code, fragment):
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "error" in lines[0] and fragment in lines[0]


ALIGN_CASES = {
    "epochs -1": (["--epochs", "-1"], "--epochs: must be an integer >= 1, got"),
    "epochs 0": (["--epochs", "0"], "--epochs: must be an integer >= 1, got"),
    "n-neighbors 0": (["--n-neighbors", "0"], "--n-neighbors"),
    "n-neighbors above context cells": (["--n-neighbors", "500"], "60 context cells"),
    "too few target cells": (["--max-cells", "20"], "the target data has 20 cells"),
    "n-top-genes negative": (["--n-top-genes", "-5"], "--n-top-genes"),
    "batch-size 0": (["--batch-size", "0"], "--batch-size"),
    "max-cells 0": (["--max-cells", "0"], "--max-cells"),
    "accelerator": (["--accelerator", "tpu9"], "--accelerator"),
    "labels key": (["--labels-key", "nope"], "'nope' is not a column of the context"),
    "labels key with slash": (["--labels-key", "a/b"], "contains '/'"),
    "context batch key": (["--context-batch-key", "nope"], "--context-batch-key 'nope'"),
    "target labels key": (["--target-labels-key", "nope"], "--target-labels-key 'nope'"),
    "layer": (["--layer", "nope"], "--layer 'nope'"),
    "species": (["--context-species", "unicorn"], "unicorn"),
    "same species": (["--target-species", "mouse"], "same"),
    "output is a file": (["--output", "{tmp}/a_file"], "not a folder"),
    "context missing": (["--context", "{tmp}/nope.h5ad"], "file not found"),
    "context not h5ad": (["--context", "{tmp}/not_h5ad.h5ad"], "not an h5ad"),
    "unknown option": (["--frobnicate"], "unrecognized arguments"),
}


@pytest.mark.parametrize("case", list(ALIGN_CASES))
def test_align_bad_inputs(tmp_path, pair_files, capsys, case, checksum):
    extra, fragment = ALIGN_CASES[case]
    extra = [arg.replace("{tmp}", str(tmp_path)) for arg in extra]
    before = [checksum(path) for path in pair_files]
    _assert_one_line_error(capsys, main(_align(tmp_path, pair_files, *extra)), fragment)
    assert [checksum(path) for path in pair_files] == before
    assert not (tmp_path / "out").exists()


SCICE_KEYS = ["/X", "/obs", "", "/scice", "a/b", ".", " scice"]


@pytest.mark.parametrize("key", SCICE_KEYS)
def test_scice_bad_key_names(tmp_path, capsys, key, checksum, graph_h5ad):
    source = graph_h5ad(tmp_path / "in.h5ad")
    before = checksum(source)
    for mode in (["--inplace"], ["--output", str(tmp_path / "out.h5ad")]):
        code = main(["scice", str(source), "--resolution", "0.1", "--key-added", key, *mode])
        _assert_one_line_error(capsys, code, "--key-added")
    assert checksum(source) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad"]


SCICE_CASES = {
    "output is the input": (["--resolution", "0.1", "--output", "{tmp}/in.h5ad"], "--inplace"),
    "inplace and output": (["--resolution", "0.1", "--inplace", "--output", "{tmp}/o.h5ad"], "not both"),
    "no mode": ([], "--cluster-range or --resolution"),
    "cluster range reversed": (["--cluster-range", "5", "3"], "MIN <= MAX"),
    "obsp key": (["--resolution", "0.1", "--obsp", "nope"], "'nope' not found"),
    "neighbors key": (["--resolution", "0.1", "--neighbors-key", "nope"], "neighbors_key 'nope' not found"),
    "obsp and neighbors key": (["--resolution", "0.1", "--obsp", "a", "--neighbors-key", "b"], "not allowed"),
    "n-trials 0": (["--resolution", "0.1", "--n-trials", "0"], "n_trials"),
    "output folder missing": (["--resolution", "0.1", "--output", "{tmp}/no/o.h5ad"], "does not exist"),
    "output is a folder": (["--resolution", "0.1", "--output", "{tmp}"], "is a folder"),
    "not an integer": (["--resolution", "0.1", "--n-trials", "many"], "invalid int value"),
}


@pytest.mark.parametrize("case", list(SCICE_CASES))
def test_scice_bad_inputs(tmp_path, capsys, case, checksum, graph_h5ad):
    extra, fragment = SCICE_CASES[case]
    source = graph_h5ad(tmp_path / "in.h5ad")
    before = checksum(source)
    code = main(["scice", str(source), *[arg.replace("{tmp}", str(tmp_path)) for arg in extra]])
    _assert_one_line_error(capsys, code, fragment)
    assert checksum(source) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad"]


def test_scice_missing_or_wrong_input(tmp_path, capsys):
    _assert_one_line_error(
        capsys, main(["scice", str(tmp_path / "nope.h5ad"), "--resolution", "1"]), "not found"
    )
    (tmp_path / "text.h5ad").write_text("text")
    _assert_one_line_error(capsys, main(["scice", str(tmp_path / "text.h5ad"), "--resolution", "1"]), "HDF5")


def test_debug_shows_the_traceback(tmp_path, capsys, graph_h5ad):
    source = graph_h5ad(tmp_path / "in.h5ad")
    assert main(["scice", str(source), "--resolution", "0.1", "--obsp", "nope", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().splitlines()[-1].endswith(
        "(available: ['connectivities'])"
    )


def test_exit_status_of_the_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    args = [
        sys.executable,
        "-m",
        "xspecies.cli.main",
        "scice",
        str(tmp_path / "nope.h5ad"),
        "--resolution",
        "1",
    ]
    out = subprocess.run(args, capture_output=True, text=True, env=env)
    assert out.returncode == 2
    assert out.stderr.strip() == f"xspecies scice: error: input file not found: {tmp_path / 'nope.h5ad'}"


@pytest.mark.parametrize(
    ("signum", "status", "word"), [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")]
)
def test_signal_reported_by_its_exit_status_whatever_exception_it_became(
    monkeypatch, capsys, signum, status, word
):
    # numpy turns a KeyboardInterrupt inside some comparisons into a TypeError: the signal decides
    import signal
    import time

    import xspecies.cli.scice as scice_cli

    def interrupted_run(args):
        try:
            os.kill(os.getpid(), getattr(signal, signum))
            time.sleep(30)  # the handler raises before this ends
        except KeyboardInterrupt as exc:
            raise TypeError("Cannot compare structured arrays unless they have a common dtype") from exc

    monkeypatch.setattr(scice_cli, "_run", interrupted_run)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # pytest may run with SIGINT ignored
    try:
        assert main(["scice", "in.h5ad"]) == status
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert err.strip() == f"xspecies scice: {word}; no output was written or replaced"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the previous handlers are back
