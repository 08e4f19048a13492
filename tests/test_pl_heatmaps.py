import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import xspecies as xs


def test_celltype_similarity_ranks():
    df = pd.DataFrame(
        [[-1.0, -5.0, -3.0], [-9.0, -2.0, -4.0]], index=["alpha", "beta"], columns=["alpha", "beta", "gamma"]
    )
    ax = xs.pl.celltype_similarity(df, target_name="human", context_name="mouse", show=False)
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert texts == {(0, 0): "1", (0, 2): "2", (1, 1): "1", (1, 2): "2"}
    assert ax.get_xlabel() == "mouse cell type"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["alpha", "beta"]
    assert len(ax.patches) == 2  # frames around alpha/alpha and beta/beta
    with pytest.raises(ValueError, match="empty"):
        xs.pl.celltype_similarity(pd.DataFrame(), show=False)
    plt.close("all")


def test_confusion_matrix_row_percent(tmp_path):
    cm = pd.DataFrame([[8, 2], [1, 3]], index=["alpha", "beta"], columns=["alpha", "beta"])
    fig = xs.pl.confusion_matrix(cm, title="transfer", save=tmp_path / "cm.pdf", return_fig=True)
    ax = fig.axes[0]
    assert ax.get_title() == "transfer"
    assert sorted(t.get_text() for t in ax.texts) == ["20", "25", "75", "80"]
    np.testing.assert_allclose(ax.images[0].get_array(), [[80, 20], [25, 75]])
    assert (tmp_path / "cm.pdf").exists()
    ax = xs.pl.confusion_matrix(cm, normalize=False, annotate=False, show=False)
    assert not ax.texts
    plt.close("all")


def test_transfer_accuracy_balanced():
    truth = pd.Series(["alpha"] * 10 + ["beta"] * 10 + ["human_only"] * 5)
    good = truth.copy()
    good[[0, 1]] = "beta"
    good[20:] = "alpha"
    poor = pd.Series(["alpha"] * 25)
    reports = {"NNS": pd.crosstab(truth, poor), "scSpecies": {"confusion": pd.crosstab(truth, good)}}
    axes = xs.pl.transfer_accuracy(reports, show=False)
    assert axes[0].get_title() == "NNS\nbalanced accuracy 50.0%"
    assert axes[1].get_title() == "scSpecies\nbalanced accuracy 90.0%"
    assert [t.get_text() for t in axes[1].texts] == ["80%", "100%", "n/a"]
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["alpha", "beta", "human_only"]
    legend = axes[-1].get_legend()
    assert sorted(t.get_text() for t in legend.get_texts()) == ["alpha", "beta"]
    # bars of one predicted label share one colour across panels
    pal = xs.pl.palette(["alpha", "beta"], {"other": "#bdbdbd"})
    assert axes[0].patches[0].get_facecolor()[:3] == pytest.approx(plt.matplotlib.colors.to_rgb(pal["alpha"]))
    with pytest.raises(TypeError, match="confusion"):
        xs.pl.transfer_accuracy({"x": [1, 2]}, show=False)
    plt.close("all")
