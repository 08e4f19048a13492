"""Training plan with the alignment-weight ramp of the target model."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scvi.dataloaders import AnnDataLoader
from scvi.train import TrainingPlan

#: Defaults of scvi-tools' training plan (learning rate, eps, weight decay) for the optimiser.
_PLAN_DEFAULTS = {
    name: parameter.default for name, parameter in inspect.signature(TrainingPlan.__init__).parameters.items()
}


def linear_ramp(epoch: int, start: float, end: float, n_epochs: int) -> float:
    """Value of a linear ramp from ``start`` (epoch 0) to ``end`` (epoch ``n_epochs`` and later).

    Parameters
    ----------
    epoch
        Current epoch (0-based).
    start, end
        Values at the first epoch and at the end of the ramp.
    n_epochs
        Length of the ramp; ``0`` gives ``end`` immediately.

    Returns
    -------
    float
        The weight for this epoch.
    """
    if n_epochs <= 0 or epoch >= n_epochs:
        return float(end)
    return float(start + (end - start) * epoch / n_epochs)


@dataclass(frozen=True)
class OptimizerCreator:
    """scvi-tools ``optimizer_creator``: Adam or AdamW, fused where torch accepts it.

    Called with the parameters to train, it builds ``torch.optim.<name>`` with ``fused=True`` (several
    times faster on CPU and CUDA than the per-tensor loop); where torch refuses the fused
    implementation (a device, dtype or torch version without it) it builds the standard one, as
    scvi-tools 1.5 does with its ``fused_optimizer`` plan argument. A dataclass, so that it pickles
    with the training plan's hyperparameters.

    Parameters
    ----------
    name
        ``"Adam"`` or ``"AdamW"``.
    lr, eps, weight_decay
        Optimiser settings.
    fused
        Try the fused implementation first (``False``: the standard one).

    Examples
    --------
    >>> import torch
    >>> from xspecies.model._training import OptimizerCreator
    >>> create = OptimizerCreator("Adam", lr=1e-3, eps=0.01, weight_decay=1e-6)
    >>> create(torch.nn.Linear(3, 2).parameters()).defaults["fused"]
    True
    """

    name: Literal["Adam", "AdamW"]
    lr: float
    eps: float
    weight_decay: float
    fused: bool = True

    def __call__(self, params) -> torch.optim.Optimizer:
        """Build the optimiser for ``params``.

        Parameters
        ----------
        params
            Parameters (or parameter groups) to optimise.

        Returns
        -------
        torch.optim.Optimizer
            The fused optimiser, or the standard one where torch refuses the fused one.

        Examples
        --------
        >>> import torch
        >>> from xspecies.model._training import OptimizerCreator
        >>> create = OptimizerCreator("AdamW", lr=1e-3, eps=0.01, weight_decay=0.0, fused=False)
        >>> type(create(torch.nn.Linear(3, 2).parameters())).__name__
        'AdamW'
        """
        optimizer_cls = getattr(torch.optim, self.name)
        params = list(params)  # a generator could not be read twice when the fused build is refused
        kwargs = {"lr": self.lr, "eps": self.eps, "weight_decay": self.weight_decay}
        if self.fused:
            try:
                return optimizer_cls(params, fused=True, **kwargs)
            except (RuntimeError, ValueError, AssertionError, TypeError):
                pass  # torch says at construction where fused is unavailable
        return optimizer_cls(params, **kwargs)


@dataclass(frozen=True)
class PartnerLoaders:
    """Data loaders over the target cells to align, one share per training process.

    Called with the process's rank and the number of processes, it returns an scvi-tools
    :class:`~scvi.dataloaders.AnnDataLoader` over every ``world_size``-th minibatch of ``indices``
    (starting at ``rank``), so that processes share the partner refresh and read disjoint cells. A
    dataclass, so that it pickles with the training plan (``strategy="ddp_spawn"``).

    Parameters
    ----------
    adata_manager
        The target model's :class:`~scvi.data.AnnDataManager`.
    indices
        Cells to align, in the order they are read.
    batch_size
        Cells per minibatch.

    Examples
    --------
    Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

    >>> import numpy as np
    >>> import xspecies as xs
    >>> from xspecies.model._training import PartnerLoaders
    >>> context, target = xs.datasets.pancreas_models()
    >>> loaders = PartnerLoaders(target.adata_manager, np.arange(200), batch_size=64)
    >>> len(loaders(0, 1)), len(loaders(0, 2)), len(loaders(1, 2))  # 4 minibatches: 4, 2 and 2
    (4, 2, 2)
    """

    adata_manager: object
    indices: np.ndarray
    batch_size: int = 256

    def __call__(self, rank: int, world_size: int) -> AnnDataLoader:
        """The loader of process ``rank`` of ``world_size``.

        Parameters
        ----------
        rank, world_size
            Rank of the process and number of processes.

        Returns
        -------
        scvi.dataloaders.AnnDataLoader
            Minibatches ``rank``, ``rank + world_size``, ... of ``indices``, in order.

        Examples
        --------
        >>> import numpy as np
        >>> import xspecies as xs
        >>> from xspecies.model._training import PartnerLoaders
        >>> context, target = xs.datasets.pancreas_models()
        >>> PartnerLoaders(target.adata_manager, np.arange(10), batch_size=4)(1, 2).indices
        array([4, 5, 6, 7])
        """
        blocks = [
            self.indices[start : start + self.batch_size]
            for start in range(rank * self.batch_size, len(self.indices), world_size * self.batch_size)
        ]
        mine = np.concatenate(blocks) if blocks else self.indices[:0]
        return AnnDataLoader(self.adata_manager, indices=mine, batch_size=self.batch_size, shuffle=False)


class SpeciesTrainingPlan(TrainingPlan):
    """:class:`scvi.train.TrainingPlan` with a fused Adam/AdamW step and logging once per epoch.

    The optimiser is an ``OptimizerCreator`` (``xspecies.model._training``) passed to scvi-tools as
    ``optimizer="Custom"``: the fused Adam (or AdamW) step is several times faster on CPU (and on CUDA) than the per-tensor loop,
    and where a device refuses it the standard step is used. ``fused_optimizer=False`` (scvi-tools
    1.5's plan argument, honoured with every supported scvi-tools) asks for the standard step;
    ``optimizer="Custom"`` with an ``optimizer_creator`` of your own replaces it.
    scvi-tools logs the loss, the ELBO terms, the KL weight and any extra metrics of the loss with a
    Lightning ``log`` call at every step, which costs ~0.5 ms each on CPU (a few percent of a training
    step); this plan updates the same epoch means (weighted by the number of cells of each minibatch)
    at every step and logs them once, at the end of the epoch, so the history (``train_loss``,
    ``elbo_train``, ``reconstruction_loss_train``, ``kl_local_train``, ``kl_global_train``,
    ``kl_weight`` and ``<extra metric>_train``) holds the same values. With ``on_step=True`` it logs
    every step as scvi-tools does. Everything else (KL ramp, validation, learning-rate schedule) is
    scvi-tools' plan.

    Parameters
    ----------
    module
        The module to train.
    optimizer
        ``"Adam"`` (default), ``"AdamW"`` or ``"Custom"`` (with ``optimizer_creator``).
    optimizer_creator
        With ``optimizer="Custom"``: a callable building the optimiser from the parameters.
    fused_optimizer
        Use the fused Adam/AdamW implementation where torch accepts it.
    **kwargs
        Passed to :class:`scvi.train.TrainingPlan` (``lr``, ``eps``, ``weight_decay``, KL ramp...).

    Examples
    --------
    Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

    >>> import xspecies as xs
    >>> context, target = xs.datasets.pancreas_models()

    ``context.train`` builds this plan; its arguments go through ``plan_kwargs`` (on real data train
    for 40 epochs or more):

    >>> context.train(max_epochs=1, plan_kwargs={"weight_decay": 1e-6}, enable_progress_bar=False)
    >>> plan = xs.model.SpeciesTrainingPlan(context.module, lr=1e-3, n_epochs_kl_warmup=10)
    >>> plan.configure_optimizers()["optimizer"].defaults["fused"]
    True
    """

    def __init__(
        self,
        module,
        *,
        optimizer: Literal["Adam", "AdamW", "Custom"] = "Adam",
        optimizer_creator=None,
        fused_optimizer: bool = True,
        **kwargs,
    ):
        if optimizer != "Custom":
            if optimizer not in ("Adam", "AdamW"):
                raise ValueError(f"optimizer must be 'Adam', 'AdamW' or 'Custom', got {optimizer!r}.")
            settings = {key: kwargs.get(key, _PLAN_DEFAULTS[key]) for key in ("lr", "eps", "weight_decay")}
            optimizer_creator = OptimizerCreator(optimizer, fused=bool(fused_optimizer), **settings)
        super().__init__(module, optimizer="Custom", optimizer_creator=optimizer_creator, **kwargs)
        self._epoch_sums: dict[str, torch.Tensor] = {}
        self._epoch_cells = 0

    def training_step(self, batch, batch_idx):
        """Compute the loss of a minibatch and add its terms to the epoch means.

        Parameters
        ----------
        batch
            Minibatch of registered tensors.
        batch_idx
            Index of the minibatch in the epoch.

        Returns
        -------
        torch.Tensor
            The loss to minimise.
        """
        if self.on_step:
            return super().training_step(batch, batch_idx)
        if "kl_weight" in self.loss_kwargs:
            self.loss_kwargs["kl_weight"] = self.kl_weight
        _, _, out = self.forward(batch, loss_kwargs=self.loss_kwargs)
        n_cells = out.n_obs_minibatch
        self.train_metrics["elbo_train"].update(
            reconstruction_loss=out.reconstruction_loss_sum,
            kl_local=out.kl_local_sum,
            kl_global=out.kl_global_sum,
            n_obs_minibatch=n_cells,
        )
        terms = {"train_loss": out.loss}
        terms.update({f"{key}_train": value for key, value in out.extra_metrics.items() if _is_scalar(value)})
        for key, value in terms.items():
            self._epoch_sums[key] = self._epoch_sums.get(key, 0) + torch.as_tensor(value).detach() * n_cells
        self._epoch_cells += n_cells
        return out.loss

    def on_train_epoch_end(self):
        """Log the epoch means of the loss terms, then let scvi-tools step its learning-rate schedule.

        Returns
        -------
        None
            The means go to the training history.
        """
        if self._epoch_cells:
            sync = {"sync_dist": self.use_sync_dist, "on_step": False, "on_epoch": True}
            means = {key: total / self._epoch_cells for key, total in self._epoch_sums.items()}
            self.log("train_loss", means.pop("train_loss"), prog_bar=True, **sync)
            self.log_dict(means, **sync)
            self.log_dict(self.train_metrics, **sync)
            if "kl_weight" in self.loss_kwargs:
                self.log("kl_weight", self.loss_kwargs["kl_weight"], **sync)
        self._epoch_sums, self._epoch_cells = {}, 0
        super().on_train_epoch_end()


def _is_scalar(value) -> bool:
    """Whether an extra metric of the loss is a number (scvi-tools logs only those)."""
    return isinstance(value, int | float) or (isinstance(value, torch.Tensor) and value.dim() == 0)


class AlignmentTrainingPlan(SpeciesTrainingPlan):
    """:class:`SpeciesTrainingPlan` that also passes a ramped alignment weight ``eta`` to the loss.

    Parameters
    ----------
    module
        A :class:`~xspecies.model.TargetVAE`.
    eta_start, eta_max
        Alignment weight at the first epoch and after the ramp.
    n_epochs_eta_warmup
        Number of epochs of the linear ramp.
    partner_loader
        Data loader over the target cells to align, or a callable ``(rank, world_size) -> loader``
        giving each process its share of them
        (:class:`~xspecies.model._training.PartnerLoaders`); at the start of every
        ``partner_refresh``-th epoch their alignment partners are chosen anew with the current decoder
        (:meth:`~xspecies.model.TargetVAE.update_partners`). Under distributed training each process
        chooses the partners of its share and the choices are gathered (an all-reduce of the
        ``partner`` buffer), so every process holds the partners of every cell, as one process does.
        ``None``: no alignment.
    partner_refresh
        Epochs between two choices of the partners (1: every epoch).
    **kwargs
        Passed to :class:`scvi.train.TrainingPlan` (KL ramp, learning rate, ...).

    Examples
    --------
    Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

    >>> import xspecies as xs
    >>> context, target = xs.datasets.pancreas_models()

    ``target.train`` builds this plan from its ``eta_*`` and ``partner_refresh`` arguments; the weight
    of every epoch is in the training history:

    >>> target.train(max_epochs=3, eta_start=10.0, eta_max=25.0, n_epochs_eta_warmup=2, enable_progress_bar=False)
    >>> target.history["eta"]["eta"].tolist()  # the first epoch (of the tiny model), then these three
    [10.0, 10.0, 17.5, 25.0]
    >>> plan = xs.model.AlignmentTrainingPlan(target.module, eta_start=10.0, eta_max=25.0)
    >>> plan.eta  # weight of the current epoch (the first one outside training)
    10.0
    """

    def __init__(
        self,
        module,
        *,
        eta_start: float = 10.0,
        eta_max: float = 25.0,
        n_epochs_eta_warmup: int = 10,
        partner_loader=None,
        partner_refresh: int = 5,
        **kwargs,
    ):
        if partner_refresh < 1:
            raise ValueError(f"partner_refresh must be a positive number of epochs, got {partner_refresh}.")
        super().__init__(module, **kwargs)
        self.partner_loader = partner_loader
        self.partner_refresh = partner_refresh
        self.eta_start = eta_start
        self.eta_max = eta_max
        self.n_epochs_eta_warmup = n_epochs_eta_warmup

    @property
    def eta(self) -> float:
        """Alignment weight of the current epoch."""
        return linear_ramp(self.current_epoch, self.eta_start, self.eta_max, self.n_epochs_eta_warmup)

    def on_train_epoch_start(self):
        """Choose the alignment partners anew at the first epoch and every ``partner_refresh`` epochs.

        Returns
        -------
        None
            The partners are stored in the module's ``partner`` buffer.
        """
        if self.partner_loader is None or self.current_epoch % self.partner_refresh:
            return
        world_size, rank = self.trainer.world_size, self.trainer.global_rank
        loader = self.partner_loader
        if callable(loader):  # PartnerLoaders: this process's share
            loader = loader(rank, world_size)
        was_training = self.module.training
        self.module.eval()
        self.module.partner.fill_(-1)  # cells without an allowed candidate stay unaligned
        for tensors in loader:
            self.module.update_partners({k: v.to(self.device) for k, v in tensors.items()})
        if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            # each process chose the partners of its share of the cells (-1 elsewhere)
            torch.distributed.all_reduce(self.module.partner, op=torch.distributed.ReduceOp.MAX)
        self.module.train(was_training)

    def training_step(self, batch, batch_idx):
        """Update ``eta`` in the loss arguments, then run :meth:`SpeciesTrainingPlan.training_step`.

        Parameters
        ----------
        batch
            Minibatch of registered tensors.
        batch_idx
            Index of the minibatch in the epoch.

        Returns
        -------
        torch.Tensor
            The loss to minimise.
        """
        self.loss_kwargs["eta"] = self.eta
        return super().training_step(batch, batch_idx)

    def on_train_epoch_end(self):
        """Log the alignment weight of the epoch besides the loss terms.

        Returns
        -------
        None
            ``eta`` goes to the training history.
        """
        self.log("eta", self.eta, on_step=False, on_epoch=True, sync_dist=self.use_sync_dist)
        super().on_train_epoch_end()
