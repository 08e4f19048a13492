import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy.stats import spearmanr

import xspecies as xs


@pytest.fixture
def lfc_table():
    rng = np.random.default_rng(0)
    rows = []
    genes = [f"G{i}" for i in range(40)]
    for cell_type in ["alpha", "beta"]:
        lfc = np.linspace(-4, 4, 40)
        rows.append(
            pd.DataFrame(
                {
                    "cell_type": cell_type,
                    "gene_target": genes,
                    "gene_context": [g.lower() for g in genes],
                    "lfc": lfc,
                    "p": np.clip(np.abs(lfc) / 3, 0, 1),
                    "lfc_rand": rng.normal(0, 2, 40),
                    "p_rand": rng.uniform(size=40),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_lfc_annotates_top_genes(lfc_table):
    axes = xs.pl.homologous_lfc(lfc_table, prob_delta=0.9, n_top=3, show=False)
    assert [ax.get_title() for ax in axes] == ["alpha (40 genes)", "beta (40 genes)"]
    names = [t.get_text() for t in axes[0].texts]
    # largest and smallest LFC among genes with p >= 0.9
    assert set(names) == {"G39", "G38", "G37", "G0", "G1", "G2"}
    legend = [t.get_text() for t in axes[0].get_legend().get_texts()]
    n_up = int(((lfc_table.cell_type == "alpha") & (lfc_table.p >= 0.9) & (lfc_table.lfc > 0)).sum())
    assert f"up ({n_up})" in legend
    n_points = sum(len(c.get_offsets()) for c in axes[0].collections)
    assert n_points == 80  # 40 permuted + 40 genes
    plt.close("all")


def test_lfc_selection_and_errors(lfc_table):
    fig = xs.pl.homologous_lfc(
        lfc_table, cell_types="beta", label="gene_context", show_random=False, return_fig=True
    )
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title() == "beta (40 genes)"
    assert all(t.get_text().islower() for t in ax.texts)
    with pytest.raises(ValueError, match="gamma"):
        xs.pl.homologous_lfc(lfc_table, cell_types=["gamma"], show=False)
    with pytest.raises(KeyError, match="p_rand"):
        xs.pl.homologous_lfc(lfc_table.drop(columns="p_rand"), show=False)
    plt.close("all")


def test_lfc_comparison_reports_spearman(lfc_table):
    data = lfc_table.assign(lfc=lfc_table["lfc"] ** 3 + np.tile(np.r_[0.0, 5.0, 0.0, -5.0], 20))
    axes = xs.pl.lfc_comparison(lfc_table, data, show=False)
    part = lfc_table.cell_type == "alpha"
    expected = spearmanr(data.loc[part, "lfc"], lfc_table.loc[part, "lfc"]).statistic
    assert axes[0].get_title() == f"alpha\nSpearman r = {expected:.2f} (40 genes)"
    assert len(axes[0].collections[0].get_offsets()) == 40
    with pytest.raises(ValueError, match="share no"):
        xs.pl.lfc_comparison(lfc_table, data.assign(cell_type="x"), show=False)
    plt.close("all")


def test_lfc_comparison_specific_part(lfc_table):
    """specific=True correlates each gene's LFC minus its mean over the types, for model and data."""
    offset = np.linspace(-3, 3, 40)  # the same per gene in both types: no type-specific information
    model = lfc_table.assign(lfc=np.tile(offset, 2) + np.r_[np.zeros(40), np.linspace(0, 1, 40)])
    data = lfc_table.assign(lfc=np.tile(offset, 2) + np.r_[np.zeros(40), -np.linspace(0, 1, 40)])
    total = xs.pl.lfc_comparison(model, data, show=False)
    assert float(total[1].get_title().split("= ")[1].split()[0]) > 0.9  # the offset agrees
    axes = xs.pl.lfc_comparison(model, data, specific=True, show=False)
    # beta - mean over the types is +x/2 in the model and -x/2 in the data: perfectly anti-correlated
    assert axes[1].get_title() == "beta\nSpearman r = -1.00 (40 genes)"
    assert axes[1].get_xlabel() == "data type-specific LFC"
    with pytest.raises(ValueError, match="two cell types"):
        xs.pl.lfc_comparison(model[model.cell_type == "beta"], data, specific=True, show=False)
    plt.close("all")
