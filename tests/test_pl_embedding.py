import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData, concat
from matplotlib.colors import to_hex

import xspecies as xs


def _species(n, labels, seed, prefix):
    rng = np.random.default_rng(seed)
    lab = rng.choice(labels, n)
    adata = AnnData(
        np.zeros((n, 2), np.float32),
        obs=pd.DataFrame({"cell_type": pd.Categorical(lab)}, index=[f"{prefix}{i}" for i in range(n)]),
    )
    adata.obsm["X_umap"] = rng.normal(size=(n, 2))
    return adata


@pytest.fixture
def pair():
    return _species(60, ["alpha", "beta", "delta"], 0, "m"), _species(40, ["alpha", "beta", "gamma"], 1, "h")


def _point_colors(ax):
    """Facecolours (hex) of all points of an axes, in drawing order."""
    colors = []
    for coll in ax.collections:
        fc = coll.get_facecolors()
        n = len(coll.get_offsets())
        colors += [to_hex(fc[i if len(fc) > 1 else 0]) for i in range(n)]
    return colors


def test_embedding_split_shares_colours(pair):
    context, target = pair
    axes = xs.pl.embedding_2d(
        context, target, color="cell_type", species_names=("mouse", "human"), show=False
    )
    assert len(axes) == 2
    assert axes[0].get_title() == "mouse (cell_type, 60 cells)"
    assert axes[1].get_title() == "human (cell_type, 40 cells)"
    assert axes[0].get_xlabel() == "UMAP 1"
    pal = xs.pl.palette(["alpha", "beta", "delta", "gamma"])
    for ax, adata in zip(axes, pair, strict=True):
        colors = _point_colors(ax)
        assert len(colors) == adata.n_obs
        # every point carries the shared colour of its label
        assert set(colors) == {pal[label] for label in adata.obs["cell_type"].unique()}
    legend = axes[-1].get_legend()
    assert sorted(t.get_text() for t in legend.get_texts()) == ["alpha", "beta", "delta", "gamma"]
    plt.close("all")


def test_embedding_joint_from_concatenated(pair, tmp_path):
    context, target = pair
    both = concat({"mouse": context, "human": target}, label="species", index_unique="-")
    fig = xs.pl.embedding_2d(
        both, color="cell_type", layout="joint", save=tmp_path / "joint.png", return_fig=True, show=False
    )
    assert (tmp_path / "joint.png").stat().st_size > 0
    ax = fig.axes[0]
    assert ax.get_title() == "mouse + human"
    assert len(_point_colors(ax)) == 100
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[-2:] == ["mouse", "human"]  # species markers
    plt.close("all")


def test_embedding_two_label_columns_and_errors(pair):
    context, target = pair
    target.obs["predicted"] = target.obs["cell_type"].astype(str)
    axes = xs.pl.embedding_2d(context, target, color=("cell_type", "predicted"), show=False)
    assert axes[1].get_title().startswith("target (predicted")
    with pytest.raises(KeyError, match="X_pca"):
        xs.pl.embedding_2d(context, target, color="cell_type", basis="X_pca", show=False)
    with pytest.raises(KeyError, match="missing"):
        xs.pl.embedding_2d(context, target, color="missing", show=False)
    with pytest.raises(KeyError, match="species"):
        xs.pl.embedding_2d(context, color="cell_type", show=False)
    with pytest.raises(ValueError, match="layout"):
        xs.pl.embedding_2d(context, target, color="cell_type", layout="grid", show=False)
    plt.close("all")


def test_similarity_plot(pair):
    context, target = pair
    sim = pd.DataFrame({"context_index": np.arange(50), "similarity": -np.arange(50, dtype=float)})
    ax = xs.pl.similar_cells(context, target, sim, index="h3", labels_key="cell_type", show=False)
    assert ax.get_title() == f"target cell h3 ({target.obs['cell_type'].iloc[3]})"
    sizes = [len(c.get_offsets()) for c in ax.collections]
    # target background, context cells absent from the table, coloured context cells, the star
    assert sizes == [40, 10, 50, 1]
    np.testing.assert_allclose(ax.collections[3].get_offsets()[0], target.obsm["X_umap"][3])
    coloured = ax.collections[2].get_array()
    assert coloured[-1] == 0.0  # most similar drawn last
    with pytest.raises(IndexError, match="out of range"):
        xs.pl.similar_cells(context, target, sim, index=40, show=False)
    with pytest.raises(KeyError, match="similarity"):
        xs.pl.similar_cells(context, target, sim.drop(columns="similarity"), index=0, show=False)
    plt.close("all")
