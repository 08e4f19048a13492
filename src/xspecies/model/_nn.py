"""Building blocks of the xspecies networks: configurable fully connected stacks and encoder heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Normal

#: Default order of operations inside every hidden layer (as in scSpecies).
DEFAULT_LAYER_ORDER: tuple = ("linear", "layer_norm", ("act", "relu"), ("dropout", 0.1))

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "prelu": nn.PReLU,
}


class ClippedActivation(nn.Module):
    """Activation followed by clamping of its output to ``[min_value, max_value]``.

    Parameters
    ----------
    activation
        The activation module.
    min_value, max_value
        Clipping bounds (``None`` leaves that side open).
    """

    def __init__(self, activation: nn.Module, min_value: float | None, max_value: float | None):
        super().__init__()
        self.activation = activation
        self.min_value = min_value
        self.max_value = max_value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the activation and clip."""
        return torch.clamp(self.activation(x), self.min_value, self.max_value)


def _make_activation(spec) -> nn.Module:
    name = spec[1] if len(spec) > 1 else "relu"
    if isinstance(name, str):
        if name.lower() not in _ACTIVATIONS:
            raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}.")
        act = _ACTIVATIONS[name.lower()]()
    elif isinstance(name, type) and issubclass(name, nn.Module):
        act = name()
    elif isinstance(name, nn.Module):
        act = name
    else:
        raise ValueError(f"Activation must be a name, an nn.Module class or instance, got {name!r}.")
    if len(spec) > 2 and spec[2] is not None:
        low, high = spec[2]
        return ClippedActivation(act, low, high)
    return act


def validate_layer_order(layer_order: Sequence) -> tuple:
    """Check a layer-order specification and return it as a tuple.

    Parameters
    ----------
    layer_order
        Sequence of ``"linear"``, ``"layer_norm"``, ``"batch_norm"``,
        ``("act", name_or_module[, (min, max)])`` and ``("dropout", rate)``; ``"linear"`` must appear
        exactly once.

    Returns
    -------
    tuple
        The validated specification.
    """
    order = tuple(tuple(s) if isinstance(s, list) else s for s in layer_order)
    n_linear = sum(1 for s in order if s == "linear")
    if n_linear != 1:
        raise ValueError(f"layer_order must contain 'linear' exactly once, got {layer_order!r}.")
    for spec in order:
        if isinstance(spec, str):
            if spec not in ("linear", "layer_norm", "batch_norm"):
                raise ValueError(f"Unknown layer {spec!r} in layer_order.")
        elif not (isinstance(spec, tuple) and spec and spec[0] in ("act", "dropout")):
            raise ValueError(f"Unknown layer specification {spec!r} in layer_order.")
        elif spec[0] == "dropout" and not 0 <= float(spec[1]) < 1:
            raise ValueError(f"Dropout rate must lie in [0, 1), got {spec[1]!r}.")
        elif spec[0] == "act":
            _make_activation(spec)
    return order


class CovariateLinear(nn.Module):
    """Linear layer on the input and a one-hot covariate, without building the concatenation.

    Equal to ``nn.Linear(n_in + n_cat, n_out)`` applied to ``[x, one_hot(cat)]`` (and initialised as
    that layer), computed as ``x @ weight.T + bias + cat_weight[cat]``: the covariate's columns of the
    weight matrix become rows picked by the category code. On counts of thousands of genes this
    saves copying the input and a matrix product over a dimension that is not a multiple of the
    vector width.

    Parameters
    ----------
    n_in
        Input dimension (without the covariate).
    n_out
        Output dimension.
    n_cat
        Number of categories of the covariate.
    """

    def __init__(self, n_in: int, n_out: int, n_cat: int):
        super().__init__()
        full = nn.Linear(n_in + n_cat, n_out)
        self.weight = nn.Parameter(full.weight.detach()[:, :n_in].clone())
        self.bias = nn.Parameter(full.bias.detach().clone())
        self.cat_weight = nn.Parameter(full.weight.detach()[:, n_in:].T.clone())

    def forward(self, x: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """Apply the layer; ``cat`` holds integer category codes (``(n,)`` or ``(n, 1)``)."""
        return nn.functional.linear(x, self.weight, self.bias) + self.cat_weight[cat.reshape(-1).long()]


class MLP(nn.Module):
    """Stack of fully connected layers built from a layer-order specification.

    Parameters
    ----------
    n_in
        Input dimension (without the one-hot batch covariate).
    hidden
        Output size of every layer.
    layer_order
        Operations of every layer, see :func:`validate_layer_order`.
    n_cat
        Number of categories of a covariate whose one-hot code joins the input of the first layer
        (:class:`CovariateLinear`; 0: none).
    """

    def __init__(self, n_in: int, hidden: Sequence[int], layer_order: Sequence, n_cat: int = 0):
        super().__init__()
        order = validate_layer_order(layer_order)
        layers: list[nn.Module] = []
        dims = [n_in, *hidden]
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            for spec in order:
                if spec == "linear":
                    # the covariate enters the first layer only
                    layers.append(
                        CovariateLinear(d_in, d_out, n_cat) if i == 0 and n_cat else nn.Linear(d_in, d_out)
                    )
                elif spec == "layer_norm":
                    layers.append(nn.LayerNorm(d_out, elementwise_affine=False))
                elif spec == "batch_norm":
                    layers.append(nn.BatchNorm1d(d_out, momentum=0.01, eps=1e-3))
                elif spec[0] == "act":
                    layers.append(_make_activation(spec))
                else:
                    layers.append(nn.Dropout(float(spec[1])))
        self.layers = nn.ModuleList(layers)
        self.n_out = dims[-1]

    def forward(self, x: torch.Tensor, cat: torch.Tensor | None = None) -> torch.Tensor:
        """Run the stack; ``cat`` holds integer category codes (``(n,)`` or ``(n, 1)``)."""
        for layer in self.layers:
            if isinstance(layer, CovariateLinear):
                x = layer(x, cat)  # the category rows broadcast over a leading axis of samples
            elif isinstance(layer, nn.BatchNorm1d):
                x = layer(x.reshape(-1, x.shape[-1])).reshape(x.shape)
            else:
                x = layer(x)
        return x


class GaussianHead(nn.Module):
    """Fully connected stack followed by linear heads for the mean and the variance of a Gaussian.

    Parameters
    ----------
    n_in
        Input dimension.
    hidden
        Hidden layer sizes.
    n_out
        Dimension of the Gaussian.
    layer_order
        Layer specification, see :func:`validate_layer_order`.
    n_cat
        Number of categories of the one-hot covariate concatenated to the input.
    """

    def __init__(self, n_in: int, hidden: Sequence[int], n_out: int, layer_order: Sequence, n_cat: int = 0):
        super().__init__()
        self.net = MLP(n_in, hidden, layer_order, n_cat=n_cat)
        self.mean = nn.Linear(self.net.n_out, n_out)
        self.log_var = nn.Linear(self.net.n_out, n_out)

    def forward(self, x: torch.Tensor, cat: torch.Tensor | None = None) -> Normal:
        """Return the Gaussian ``Normal(mean, sqrt(var))`` for the inputs."""
        h = self.net(x, cat)
        var = torch.exp(torch.clamp(self.log_var(h), -12.0, 8.0)) + 1e-5
        return Normal(self.mean(h), var.sqrt())
