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
    **kwargs
        Passed to :class:`scvi.train.TrainingPlan` (KL ramp, learning rate, ...).
    """

    def __init__(
        self,
        module,
        *,
        eta_start: float = 10.0,
        eta_max: float = 25.0,
        n_epochs_eta_warmup: int = 10,
        **kwargs,
    ):
        super().__init__(module, **kwargs)
        self.eta_start = eta_start
        self.eta_max = eta_max
        self.n_epochs_eta_warmup = n_epochs_eta_warmup

    @property
    def eta(self) -> float:
        """Alignment weight of the current epoch."""
        return linear_ramp(self.current_epoch, self.eta_start, self.eta_max, self.n_epochs_eta_warmup)

    def training_step(self, batch, batch_idx):
        """Update ``eta`` in the loss arguments, then run the scvi-tools training step."""
        self.loss_kwargs["eta"] = self.eta
        self.log("eta", self.eta, on_step=False, on_epoch=True)
        return super().training_step(batch, batch_idx)
