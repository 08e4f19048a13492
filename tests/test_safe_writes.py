"""Crash-safe writing: every writer stopped at every step leaves the previous file or folder intact."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from xspecies import _io
from xspecies.cli import scice as scice_cli

SRC = Path(__file__).resolve().parents[1] / "src"


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary entries the writers create beside their destinations."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


class Boom(RuntimeError):
    pass


def fail_on_call(monkeypatch, module, name: str, call: int = 0):
    """Make ``module.name`` raise :class:`Boom` on its ``call``-th call (0-based), pass through otherwise."""
    original = getattr(module, name)
    calls = {"n": 0}

    def patched(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] - 1 == call:
            raise Boom(f"injected failure in {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, patched)


def fail_in_io(monkeypatch, name: str, call: int = 0):
    """Make the writers' ``fsync`` (:func:`os.fsync`) or ``replace`` (:meth:`pathlib.Path.replace`, the
    rename) fail once, on its ``call``-th call (0-based)."""
    if name == "fsync":
        fail_on_call(monkeypatch, _io.os, "fsync", call)
    else:
        fail_on_call(monkeypatch, Path, "replace", call)


# --- single files: h5ad (scice result), CSV, figure ------------------------------------------------
def _write_h5ad(tmp: Path) -> None:
    scice_cli.write_uns(tmp, "scice", {"note": "new result"})


def _write_csv(tmp: Path) -> None:
    pd.DataFrame({"a": [1, 2]}).to_csv(tmp)


def _write_figure(tmp: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    fig.savefig(tmp)
    plt.close(fig)


@pytest.mark.parametrize("step", ["write", "fsync", "replace"])
@pytest.mark.parametrize(
    ("suffix", "writer"), [(".h5ad", _write_h5ad), (".csv", _write_csv), (".png", _write_figure)]
)
def test_file_writer_stopped_at_each_step_keeps_previous_file(
    tmp_path, monkeypatch, step, suffix, writer, checksum, graph_h5ad
):
    source = graph_h5ad(tmp_path / "source.h5ad")
    destination = tmp_path / f"result{suffix}"
    if suffix == ".h5ad":
        destination.write_bytes(source.read_bytes())
    else:
        writer(destination)  # a previous, complete result
    before = checksum(destination)
    if step in ("fsync", "replace"):
        fail_in_io(monkeypatch, step)
    with pytest.raises(Boom), _io.atomic_path(destination) as tmp:
        if suffix == ".h5ad":
            tmp.write_bytes(source.read_bytes())
        writer(tmp)
        if step == "write":
            raise Boom("stopped after the write")
    assert checksum(destination) == before
    assert leftovers(tmp_path) == []
    if suffix == ".h5ad":
        assert ad.read_h5ad(destination).uns["scice"]["note"] == "previous result"


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("stage", ["copy", "write_uns", "fsync", "replace"])
def test_scice_result_stopped_at_each_step(tmp_path, monkeypatch, stage, inplace, checksum, graph_h5ad):
    source = graph_h5ad(tmp_path / "in.h5ad")
    destination = source if inplace else tmp_path / "out.h5ad"
    if not inplace:
        destination.write_bytes(source.read_bytes())
    before_source, before_destination = checksum(source), checksum(destination)
    if stage == "copy":
        fail_on_call(monkeypatch, scice_cli.shutil, "copyfile")
    elif stage == "write_uns":

        def partial_write(path, key, value):  # delete the old entry, then fail before writing the new one
            import h5py

            with h5py.File(path, "a") as handle:
                del handle["uns"][key]
            raise Boom("stopped mid-write")

        monkeypatch.setattr(scice_cli, "write_uns", partial_write)
    else:
        fail_in_io(monkeypatch, stage)
    with pytest.raises(Boom):
        scice_cli.write_result(source, destination, "scice", {"note": "new result"})
    assert checksum(source) == before_source
    assert checksum(destination) == before_destination
    assert ad.read_h5ad(destination).uns["scice"]["note"] == "previous result"
    assert leftovers(tmp_path) == []


def test_scice_result_complete(tmp_path, checksum, graph_h5ad):
    source = graph_h5ad(tmp_path / "in.h5ad")
    before = checksum(source)
    scice_cli.write_result(source, tmp_path / "out.h5ad", "scice", {"note": "new result"})
    assert checksum(source) == before
    back = ad.read_h5ad(tmp_path / "out.h5ad")
    assert back.uns["scice"]["note"] == "new result"
    np.testing.assert_array_equal(back.X.toarray(), ad.read_h5ad(source).X.toarray())


# --- folders: staging of the CLI outputs --------------------------------------------------------
# the renames: set the old folder aside (0), move the new one in (1), the same for the table (2, 3)
@pytest.mark.parametrize("step", ["write", "fsync", "replace-0", "replace-1", "replace-2", "replace-3"])
def test_output_folder_stopped_at_each_step(tmp_path, monkeypatch, step, checksum):
    out = tmp_path / "out"
    with _io.atomic_entries(out) as staging:
        _write_csv(staging / "table.csv")
        (staging / "figures").mkdir()
        _write_figure(staging / "figures" / "fig.png")
    (out / "mine.txt").write_text("a file of the user")
    before = checksum(out)
    if step != "write":
        name, _, call = step.partition("-")
        fail_in_io(monkeypatch, name, int(call or 0))
    with pytest.raises(Boom), _io.atomic_entries(out) as staging:
        pd.DataFrame({"b": [3]}).to_csv(staging / "table.csv")
        (staging / "figures").mkdir()
        (staging / "figures" / "fig.png").write_bytes(b"partial")
        if step == "write":
            raise Boom("stopped mid-write")
    assert checksum(out) == before
    assert leftovers(out) == [] and leftovers(tmp_path) == []


# --- models and hub folders --------------------------------------------------------------------
@pytest.fixture(scope="module")
def context_model(synthetic_pair):
    import torch

    from xspecies import model

    torch.manual_seed(0)
    ctx, _ = synthetic_pair(n_ctx=60, n_tgt=20, n_genes=12)
    model.ContextModel.setup_anndata(ctx, batch_key="donor", labels_key="cell_type")
    context = model.ContextModel(ctx, n_latent=4)
    context.train(max_epochs=1, batch_size=32, enable_progress_bar=False)
    return context


def _model_steps():
    # the save writes the model file and the data, flushes, then swaps the folders (two renames)
    return [
        ("torch", "save", 0),
        ("anndata", "write", 0),
        ("fsync", "fsync", 0),
        ("replace", "replace", 0),
        ("replace", "replace", 1),
    ]


def _patch_step(monkeypatch, kind: str, name: str, call: int) -> None:
    if kind == "torch":
        import torch

        fail_on_call(monkeypatch, torch, name, call)
    elif kind == "anndata":
        fail_on_call(monkeypatch, ad.AnnData, name, call)
    else:
        fail_in_io(monkeypatch, name, call)


@pytest.mark.parametrize(("kind", "name", "call"), _model_steps())
def test_model_save_stopped_at_each_step_keeps_previous_folder(
    context_model, tmp_path, monkeypatch, kind, name, call, checksum
):
    from xspecies.model import ContextModel

    folder = tmp_path / "context"
    context_model.save(folder, save_anndata=True)
    before = checksum(folder)
    _patch_step(monkeypatch, kind, name, call)
    with pytest.raises(Boom):
        context_model.save(folder, overwrite=True, save_anndata=True)
    monkeypatch.undo()
    assert checksum(folder) == before
    assert leftovers(tmp_path) == []
    ContextModel.load(folder)  # still readable


@pytest.mark.parametrize(("kind", "name", "call"), _model_steps())
def test_hub_save_stopped_at_each_step_keeps_previous_folder(
    context_model, tmp_path, monkeypatch, kind, name, call, checksum
):
    from xspecies.model import load_hub_dir, save_to_hub_dir

    folder = save_to_hub_dir(context_model, tmp_path / "hub", description="first")
    before = checksum(folder)
    _patch_step(monkeypatch, kind, name, call)
    with pytest.raises(Boom):
        save_to_hub_dir(context_model, folder, description="second", overwrite=True)
    monkeypatch.undo()
    assert checksum(folder) == before
    assert "first" in (folder / "README.md").read_text()
    assert leftovers(tmp_path) == []
    assert load_hub_dir(folder, accelerator="cpu").summary_stats.n_vars == 12


def test_save_without_data_removes_stale_data(context_model, tmp_path):
    from xspecies.model import ContextModel

    folder = tmp_path / "context"
    context_model.save(folder, save_anndata=True)
    context_model.save(folder, prefix="other_", overwrite=True, save_anndata=True)
    (folder / "notes.txt").write_text("kept")
    with pytest.raises(FileExistsError, match="already exists"):
        context_model.save(folder)
    context_model.save(folder, overwrite=True)  # without the data
    assert not (folder / "adata.h5ad").exists()
    assert (folder / "other_adata.h5ad").exists() and (folder / "notes.txt").read_text() == "kept"
    with pytest.raises(FileNotFoundError, match="saved without data|holds no saved data"):
        ContextModel.load(folder)
    loaded = ContextModel.load(folder, adata=context_model.adata.copy())
    np.testing.assert_allclose(
        loaded.get_latent_representation(), context_model.get_latent_representation(), atol=1e-6
    )


def test_load_errors_name_the_path(context_model, tmp_path):
    from xspecies.model import ContextModel, load_hub_dir, save_to_hub_dir

    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope.*does not exist"):
        ContextModel.load(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model.pt is missing"):
        ContextModel.load(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not a hub folder"):
        load_hub_dir(tmp_path / "empty")
    hub = save_to_hub_dir(context_model, tmp_path / "hub", save_anndata=False)
    assert "load_hub_dir" in (hub / "README.md").read_text()
    with pytest.raises(FileNotFoundError, match="saved without its data"):
        load_hub_dir(hub)
    loaded = load_hub_dir(hub, adata=context_model.adata.copy(), accelerator="cpu")
    assert loaded.is_trained


# --- the CLI interrupted by SIGINT / SIGTERM ------------------------------------------------------
# Each child first restores Python's SIGINT handler: a shell without job control starts background
# commands (a CI script run with &, nohup) with SIGINT ignored, and Python keeps an inherited SIG_IGN.
_DEFAULT_SIGINT = "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
_SLOW_WRITE = (
    _DEFAULT_SIGINT
    + """
import sys, time
import xspecies.cli.scice as scice_cli
from xspecies.cli.main import main

original = scice_cli.write_uns

def slow_write_uns(path, key, value):  # the copy is complete and half updated: stop here
    original(path, key, value)
    print("WRITING", flush=True)
    time.sleep(120)

scice_cli.write_uns = slow_write_uns
sys.exit(main(sys.argv[1:]))
"""
)
_RUN = _DEFAULT_SIGINT + "import sys\nfrom xspecies.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.mark.parametrize(
    ("signum", "phase", "inplace"),
    [
        (signal.SIGINT, "run", True),
        (signal.SIGTERM, "run", False),
        (signal.SIGINT, "write", False),
        (signal.SIGTERM, "write", True),
    ],
)
def test_scice_cli_interrupted(tmp_path, signum, phase, inplace, checksum, graph_h5ad):
    # mid-run: a run of many seconds, interrupted half a second in; mid-write: a quick run
    source = graph_h5ad(tmp_path / "in.h5ad", n=600 if phase == "run" else 120)
    before = checksum(source)
    output = tmp_path / "out.h5ad"
    script = _SLOW_WRITE if phase == "write" else _RUN
    if phase == "run":
        args = ["scice", str(source), "--cluster-range", "2", "12", "--n-trials", "30", "--quiet"]
    else:
        args = ["scice", str(source), "--resolution", "0.1", "--n-trials", "3", "--quiet"]
    args += ["--inplace"] if inplace else ["--output", str(output)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    marker = "WRITING" if phase == "write" else "read graph"
    lines = []
    for line in proc.stdout:  # wait until the run (or the write) has started
        lines.append(line)
        if marker in line:
            break
    assert any(marker in line for line in lines), (lines, proc.stderr.read())
    if phase == "run":
        time.sleep(0.5)  # well inside the scICE run
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    expected = 130 if signum == signal.SIGINT else 143
    assert proc.returncode == expected, err
    assert len(err.strip().splitlines()) == 1 and ("interrupted" in err or "terminated" in err)
    assert checksum(source) == before
    assert ad.read_h5ad(source).uns["scice"]["note"] == "previous result"
    assert not output.exists()
    assert leftovers(tmp_path) == []
