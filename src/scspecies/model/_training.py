"""Training plan with the alignment-weight ramp of the target model."""

from __future__ import annotations

from scvi.train import TrainingPlan


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


class SpeciesTrainingPlan(TrainingPlan):
    """:class:`scvi.train.TrainingPlan` whose Adam/AdamW use the fused implementation.

    The fused optimiser step is several times faster on CPU (and on CUDA) than the per-tensor loop;
    everything else (KL ramp, metrics, learning-rate schedule) is scvi-tools' plan.

    Parameters
    ----------
    module
        The module to train.
    **kwargs
        Passed to :class:`scvi.train.TrainingPlan`.

    Examples
    --------
    ``context.train`` builds this plan; its arguments go through ``plan_kwargs``:

    >>> context.train(max_epochs=40, plan_kwargs={"weight_decay": 1e-6})
    >>> plan = scs.model.SpeciesTrainingPlan(context.module, lr=1e-3, n_epochs_kl_warmup=10)
    >>> plan.configure_optimizers()["optimizer"].defaults["fused"]
    True
    """

    def _optimizer_creator_fn(self, optimizer_cls):
        def create(params):
            params = list(params)
            fused = all(p.dtype.is_floating_point for p in params)
            return optimizer_cls(
                params, lr=self.lr, eps=self.eps, weight_decay=self.weight_decay, fused=fused
            )

        return create


class AlignmentTrainingPlan(SpeciesTrainingPlan):
    """:class:`SpeciesTrainingPlan` that also passes a ramped alignment weight ``eta`` to the loss.

    Parameters
    ----------
    module
        A :class:`~scspecies.model.TargetVAE`.
    eta_start, eta_max
        Alignment weight at the first epoch and after the ramp.
    n_epochs_eta_warmup
        Number of epochs of the linear ramp.
    partner_loader
        Data loader over the target cells to align; at the start of every ``partner_refresh``-th epoch
        their alignment partners are chosen anew with the current decoder
        (:meth:`~scspecies.model.TargetVAE.update_partners`). ``None``: no alignment.
    partner_refresh
        Epochs between two choices of the partners (1: every epoch).
    **kwargs
        Passed to :class:`scvi.train.TrainingPlan` (KL ramp, learning rate, ...).

    Examples
    --------
    ``target.train`` builds this plan from its ``eta_*`` and ``partner_refresh`` arguments; the weight
    of every epoch is in the training history:

    >>> target.train(max_epochs=40, eta_start=10.0, eta_max=25.0, n_epochs_eta_warmup=10)
    >>> target.history["eta"].head(3)
    >>> plan = scs.model.AlignmentTrainingPlan(target.module, eta_start=10.0, eta_max=25.0)
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

        Examples
        --------
        Lightning calls it at the start of every epoch of ``target.train``, which sets the interval:

        >>> target.train(max_epochs=40, partner_refresh=5)
        >>> int((target.module.partner >= 0).sum())  # cells with an alignment partner
        """
        if self.partner_loader is None or self.current_epoch % self.partner_refresh:
            return
        was_training = self.module.training
        self.module.eval()
        for tensors in self.partner_loader:
            self.module.update_partners({k: v.to(self.device) for k, v in tensors.items()})
        self.module.train(was_training)

    def training_step(self, batch, batch_idx):
        """Update ``eta`` in the loss arguments, then run the scvi-tools training step.

        Parameters
        ----------
        batch
            Minibatch of registered tensors.
        batch_idx
            Index of the minibatch in the epoch.

        Returns
        -------
        torch.Tensor
            The loss to minimise (output of :meth:`scvi.train.TrainingPlan.training_step`).

        Examples
        --------
        Lightning calls it for every minibatch of ``target.train``; ``eta`` is logged once per epoch:

        >>> target.train(max_epochs=40)
        >>> target.history["eta"].tail()
        """
        self.loss_kwargs["eta"] = self.eta
        self.log("eta", self.eta, on_step=False, on_epoch=True)
        return super().training_step(batch, batch_idx)
