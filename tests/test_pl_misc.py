import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb

import xspecies as xs


def test_palette_distinct_for_many_categories():
    names = [f"type_{i}" for i in range(40)]
    pal = xs.pl.palette(names)
    assert list(pal) == names
    assert len(set(pal.values())) == 40
    rgb = np.array([to_rgb(c) for c in pal.values()])
    dist = np.abs(rgb[:, None] - rgb[None]).sum(-1) + np.eye(40) * 9
    assert dist.min() >= 0.12
    big = xs.pl.palette(range(150))
    assert len(set(big.values())) == 150


def test_palette_keeps_fixed_colours_and_categorical_order():
    cat = pd.Categorical(["b", "a", "b"], categories=["b", "a", "c"])
    pal = xs.pl.palette(cat, colors={"a": "black"})
    assert list(pal) == ["b", "a", "c"]
    assert pal["a"] == "#000000"
    assert "#000000" not in (pal["b"], pal["c"])


def test_history_groups_train_and_validation():
    hist = {
        "elbo_train": pd.DataFrame({"elbo_train": np.linspace(10, 1, 5)}),
        "elbo_validation": pd.DataFrame({"elbo_validation": np.linspace(11, 2, 5)}),
        "train_loss_step": pd.DataFrame({"train_loss_step": np.arange(50.0)}),
        "kl_local_train": pd.DataFrame({"kl_local_train": np.arange(5.0)}),
    }
    axes = xs.pl.history(hist, skip_first=1, show=False)
    assert [ax.get_title() for ax in axes] == ["elbo", "kl_local"]
    assert [line.get_label() for line in axes[0].lines] == ["train", "validation"]
    assert len(axes[0].lines[0].get_xdata()) == 4
    with pytest.raises(KeyError, match="missing"):
        xs.pl.history(hist, keys=["missing"], show=False)
    with pytest.raises(ValueError, match="no training history"):
        xs.pl.history({}, show=False)
    plt.close("all")


def test_finalize_return_conventions(tmp_path):
    fig, ax = plt.subplots()
    assert xs.pl.finalize(fig, ax, show=False) is ax
    assert xs.pl.finalize(fig, ax, show=False, return_fig=True) is fig
    out = tmp_path / "sub" / "fig.png"
    result = xs.pl.finalize(fig, ax, show=False, save=out)
    assert isinstance(result, Axes)
    assert out.stat().st_size > 0
    plt.close("all")
