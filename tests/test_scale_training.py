"""Training at scale: models set up on an on-disk AnnData, epochs from the data size, two DDP processes."""

import os
import subprocess
import sys

import anndata as ad
import numpy as np
import pytest
import scvi
import torch
from lightning.pytorch.callbacks import Callback
from scvi import REGISTRY_KEYS
from scvi.data import AnnTorchDataset

from xspecies import model
from xspecies.model import _base, _target

BATCH = 64


def _train_pair(ctx, tgt, epochs: int = 2):
    """Context and target models trained ``epochs`` epochs (seed 0)."""
    scvi.settings.seed = 0
    model.ContextModel.setup_anndata(ctx, batch_key="donor")
    context = model.ContextModel(ctx)
    context.train(max_epochs=epochs, batch_size=BATCH, enable_progress_bar=False)
    model.TargetModel.setup_anndata(tgt, batch_key="donor")
    target = model.TargetModel.from_context(context, tgt)
    target.train(max_epochs=epochs, batch_size=BATCH, enable_progress_bar=False)
    return context, target


@pytest.fixture
def on_disk_pair(tmp_path, synthetic_pair):
    """The synthetic pair (300 + 200 cells) written to h5ad files."""
    ctx, tgt = synthetic_pair(n_ctx=300, n_tgt=200)
    ctx.write_h5ad(tmp_path / "context.h5ad")
    tgt.write_h5ad(tmp_path / "target.h5ad")
    return tmp_path / "context.h5ad", tmp_path / "target.h5ad"


def test_backed_training_matches_in_memory_and_reads_minibatches(on_disk_pair, tmp_path, monkeypatch):
    """Backed h5ad: same models as in memory, X read a minibatch (or a small block) at a time, never whole."""
    ctx_path, tgt_path = on_disk_pair
    # scvi-tools reads the cells of a backed minibatch in row order (h5py needs it), so they meet their
    # noise draws in another order than in memory; read in the same order, training is identical
    with monkeypatch.context() as patch:
        getitem = AnnTorchDataset.__getitem__
        patch.setattr(AnnTorchDataset, "__getitem__", lambda self, index: getitem(self, np.sort(index)))
        memory = _train_pair(ad.read_h5ad(ctx_path), ad.read_h5ad(tgt_path))

    ctx, tgt = ad.read_h5ad(ctx_path, backed="r"), ad.read_h5ad(tgt_path, backed="r")
    backed_type = type(ctx.X)
    assert type(tgt.X) is backed_type
    rows_read = []
    read = backed_type.__getitem__

    def spy(self, index):
        out = read(self, index)
        rows_read.append(out.shape[0])
        return out

    def refuse(self, *args, **kwargs):
        raise AssertionError("the whole on-disk matrix was loaded")

    monkeypatch.setattr(backed_type, "__getitem__", spy)
    monkeypatch.setattr(backed_type, "to_memory", refuse)
    # the count check and the library prior read blocks of rows: make them small here
    monkeypatch.setattr("xspecies._validation._CHUNK", 40 * 32)
    monkeypatch.setattr(_base, "_READ_VALUES", 40 * 32)
    on_disk = _train_pair(ctx, tgt)

    assert ctx.isbacked and tgt.isbacked and type(ctx.X) is backed_type and type(tgt.X) is backed_type
    # minibatches of training (64) and of inference (scvi-tools' 128), and blocks of 32 rows
    assert rows_read and max(rows_read) <= max(BATCH, scvi.settings.batch_size) < tgt.n_obs
    for mem, disk in zip(memory, on_disk, strict=True):
        assert disk.is_trained
        np.testing.assert_allclose(
            disk.history["elbo_train"].to_numpy(float), mem.history["elbo_train"].to_numpy(float), rtol=1e-5
        )
        np.testing.assert_allclose(
            disk.get_latent_representation(), mem.get_latent_representation(), atol=1e-5
        )
    np.testing.assert_array_equal(on_disk[1].module.partner.numpy(), memory[1].module.partner.numpy())
    assert (on_disk[1].module.partner >= 0).any()

    # a model set up on backed data saves, and loads onto the backed file again
    target = on_disk[1]
    target.save(tmp_path / "target_model")
    again = model.TargetModel.load(tmp_path / "target_model", adata=ad.read_h5ad(tgt_path, backed="r"))
    assert again.adata.isbacked
    np.testing.assert_allclose(
        again.get_latent_representation(), target.get_latent_representation(), atol=1e-6
    )


def test_default_epochs_follow_the_data_size(synthetic_pair, monkeypatch):
    """max_epochs=None: 40 epochs up to 20,000 cells, fewer above; the ramps cover the same share."""
    assert [_base.default_max_epochs(n) for n in (1_886, 20_000, 50_000, 100_000, 10**6)] == [
        40,
        40,
        16,
        8,
        1,
    ]
    # pretend the decay starts at 15 cells: 300 context cells -> 2 epochs, 200 target cells -> 3
    monkeypatch.setattr(_base, "DECAY_AT_N_OBS", 15)
    ctx, tgt = synthetic_pair(n_ctx=300, n_tgt=200)
    scvi.settings.seed = 0
    model.ContextModel.setup_anndata(ctx, batch_key="donor")
    context = model.ContextModel(ctx)
    context.train(enable_progress_bar=False)
    kl = context.history["kl_weight"].to_numpy(float).ravel()
    np.testing.assert_allclose(kl, [0.1, 1.0])  # ramp of ceil(2 / 4) = 1 epoch
    model.TargetModel.setup_anndata(tgt, batch_key="donor")
    target = model.TargetModel.from_context(context, tgt)
    target.train(enable_progress_bar=False)
    np.testing.assert_allclose(target.history["eta"].to_numpy(float).ravel(), [10.0, 25.0, 25.0])
    # an explicit max_epochs keeps the recipe's 10-epoch ramps
    target.train(max_epochs=2, enable_progress_bar=False)
    # (the history continues the first training's)
    np.testing.assert_allclose(target.history["eta"].to_numpy(float).ravel(), [10.0, 25.0, 25.0, 10.0, 11.5])


class Recorder(Callback):
    """Writes, in every process, the cells of each first-epoch minibatch and the partners chosen."""

    def __init__(self, folder):
        self.folder = folder

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch:
            return
        rank = trainer.global_rank
        cells = batch[REGISTRY_KEYS.INDICES_KEY].reshape(-1).long().cpu().numpy()
        np.save(self.folder / f"cells_{rank}_{batch_idx}.npy", cells)
        np.save(self.folder / f"partner_{rank}.npy", pl_module.module.partner.cpu().numpy())


def _target_run(pair, folder, **kwargs):
    """Train a target (on a context trained in this process) for 2 epochs, recording in ``folder``."""
    ctx, tgt = (adata.copy() for adata in pair)
    scvi.settings.seed = 0
    model.ContextModel.setup_anndata(ctx, batch_key="donor")
    context = model.ContextModel(ctx)
    context.train(max_epochs=1, enable_progress_bar=False)
    model.TargetModel.setup_anndata(tgt, batch_key="donor")
    target = model.TargetModel.from_context(context, tgt)
    folder.mkdir()
    target.train(
        max_epochs=2, batch_size=16, enable_progress_bar=False, callbacks=[Recorder(folder)], **kwargs
    )
    return target


def test_two_ddp_processes_share_cells_and_partners_like_one(synthetic_pair, tmp_path, monkeypatch):
    """Two CPU processes (gloo): disjoint cells, each with every partner of one process, same eta ramp."""
    if os.environ.get("XSPECIES_TEST_DDP_CHILD") != "1":
        # the training processes are forked from the test process: after a long test session its other
        # threads may hold a lock at the fork, which the children then wait for forever (seen once in a
        # full run under load), so the test runs in a fresh interpreter
        name = "test_two_ddp_processes_share_cells_and_partners_like_one"
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::{name}"],
            env={**os.environ, "XSPECIES_TEST_DDP_CHILD": "1"},
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert "1 passed" in proc.stdout
        return
    monkeypatch.setattr(_target, "PARTNER_BATCH_SIZE", 4)  # both processes choose partners
    pair = synthetic_pair(n_ctx=120, n_tgt=90)
    one = _target_run(pair, tmp_path / "one")
    two = _target_run(pair, tmp_path / "two", accelerator="cpu", devices=2, strategy="ddp_fork")

    single = np.load(tmp_path / "one" / "partner_0.npy")
    assert (single >= 0).sum() >= 8  # enough aligned cells for both processes to choose some
    cells = []
    for rank in (0, 1):
        np.testing.assert_array_equal(np.load(tmp_path / "two" / f"partner_{rank}.npy"), single)
        cells.append(
            np.concatenate([np.load(path) for path in (tmp_path / "two").glob(f"cells_{rank}_*.npy")])
        )
    assert len(cells[0]) == len(cells[1]) == 45
    assert not set(cells[0]) & set(cells[1])
    assert set(cells[0]) | set(cells[1]) == set(range(90))
    # each process refreshed its own share of the aligned cells (4 per minibatch here)
    loaders = two._partner_loader()
    shares = [set(loaders(rank, 2).indices) for rank in (0, 1)]
    assert shares[1] and not shares[0] & shares[1]
    assert shares[0] | shares[1] == set(loaders(0, 1).indices) == set(np.flatnonzero(single >= 0))
    assert two.is_trained
    np.testing.assert_allclose(two.history["eta"].to_numpy(float), one.history["eta"].to_numpy(float))
    assert np.isfinite(two.history["elbo_train"].to_numpy(float)).all()
    assert torch.isfinite(torch.as_tensor(two.get_latent_representation())).all()
