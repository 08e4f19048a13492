"""Pathway summary of homologous LFCs (tl.pathway_lfc) and its heatmap (pl.pathway_lfc)."""

import doctest
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import xspecies as xs

GMT = Path(__file__).parent / "data" / "pathways_small.gmt"
N_GENES = 300
SHIFT = 2.0


@pytest.fixture(scope="module")
def lfc_table() -> pd.DataFrame:
    """Table laid out like tl.homologous_lfc: genes 0-14 raised by SHIFT in beta cells only."""
    rng = np.random.default_rng(0)
    frames = []
    for cell_type in ["alpha", "beta"]:
        lfc = rng.normal(0.3, 0.6, N_GENES)  # 0.3: a species-wide offset that is no pathway effect
        if cell_type == "beta":
            lfc[:15] += SHIFT
        p = np.clip(np.abs(lfc) / 2.5 + rng.uniform(0, 0.1, N_GENES), 0, 1)
        frames.append(
            pd.DataFrame(
                {
                    "cell_type": cell_type,
                    "gene_target": [f"GENE{i}" for i in range(N_GENES)],
                    "gene_context": [f"Gene{i}" for i in range(N_GENES)],
                    "lfc": lfc,
                    "p": p,
                    "rho_target": rng.uniform(size=N_GENES),
                    "rho_context": rng.uniform(size=N_GENES),
                    "lfc_rand": rng.normal(0, 1, N_GENES),
                    "p_rand": rng.uniform(size=N_GENES),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def gmt_dict(path: Path = GMT) -> dict[str, list[str]]:
    return {f[0]: f[2:] for f in (line.split("\t") for line in path.read_text().splitlines())}


def to_mouse(sets: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: [g.replace("GENE", "Gene") for g in genes] for name, genes in sets.items()}


def test_gmt_dict_and_long_table_agree(lfc_table):
    from_gmt = xs.tl.pathway_lfc(lfc_table, GMT, n_permutations=300)
    from_str = xs.tl.pathway_lfc(lfc_table, str(GMT), n_permutations=300)
    from_dict = xs.tl.pathway_lfc(lfc_table, gmt_dict(), n_permutations=300)
    long = pd.DataFrame([(k, g) for k, v in gmt_dict().items() for g in v], columns=["source", "target"])
    from_long = xs.tl.pathway_lfc(lfc_table, long.assign(weight=1.0), n_permutations=300)
    padded = {name: [f" {g} " for g in genes] + genes[:2] for name, genes in gmt_dict().items()}
    from_padded = xs.tl.pathway_lfc(lfc_table, padded, n_permutations=300)  # spaces, repeats
    categorical = long.astype("category")  # as decoupler may return it
    from_categorical = xs.tl.pathway_lfc(lfc_table, categorical, n_permutations=300)
    for other in (from_str, from_dict, from_long, from_padded, from_categorical):
        pd.testing.assert_frame_equal(from_gmt, other)
    assert list(from_gmt.columns) == [
        "cell_type",
        "pathway",
        "n_genes",
        "mean_lfc",
        "frac_called",
        "pval",
        "pval_adj",
        "genes",
    ]
    assert list(from_gmt["cell_type"]) == ["alpha"] * 3 + ["beta"] * 3
    assert list(from_gmt["pathway"]) == ["SHIFTED_UP", "SCATTERED", "PARTLY_ABSENT"] * 2


def test_summary_statistics(lfc_table, tmp_path):
    gz = tmp_path / "sets.gmt.gz"
    import gzip

    gz.write_bytes(gzip.compress(GMT.read_bytes()))
    res = xs.tl.pathway_lfc(lfc_table, gz, prob_delta=0.8, n_permutations=100)
    beta = lfc_table[lfc_table.cell_type == "beta"].set_index("gene_target")
    row = res[(res.cell_type == "beta") & (res.pathway == "SCATTERED")].iloc[0]
    genes = gmt_dict()["SCATTERED"]
    assert row["n_genes"] == len(genes)
    assert row["genes"].split(";") == genes
    assert row["mean_lfc"] == pytest.approx(beta.loc[genes, "lfc"].mean())
    assert row["frac_called"] == pytest.approx((beta.loc[genes, "p"] >= 0.8).mean())
    partly = res[res.pathway == "PARTLY_ABSENT"]
    assert (partly["n_genes"] == 6).all()  # NOTAGENE1/2 are not in the table
    assert ((res["pval_adj"] >= res["pval"]) & (res["pval_adj"] <= 1)).all()


def test_min_genes_filter(lfc_table):
    default = xs.tl.pathway_lfc(lfc_table, GMT, n_permutations=50)
    assert "SMALL" not in set(default["pathway"])
    low = xs.tl.pathway_lfc(lfc_table, GMT, min_genes=3, n_permutations=50)
    assert set(low["pathway"]) == {"SHIFTED_UP", "SCATTERED", "PARTLY_ABSENT", "SMALL"}
    high = xs.tl.pathway_lfc(lfc_table, GMT, min_genes=10, n_permutations=50)
    assert set(high["pathway"]) == {"SHIFTED_UP", "SCATTERED"}
    assert (high["n_genes"] >= 10).all()


def test_either_species_symbols(lfc_table):
    human = xs.tl.pathway_lfc(lfc_table, gmt_dict(), n_permutations=200)
    mouse = xs.tl.pathway_lfc(lfc_table, to_mouse(gmt_dict()), n_permutations=200)
    explicit = xs.tl.pathway_lfc(lfc_table, to_mouse(gmt_dict()), symbols="context", n_permutations=200)
    pd.testing.assert_frame_equal(mouse, explicit)
    pd.testing.assert_frame_equal(human.drop(columns="genes"), mouse.drop(columns="genes"))
    assert mouse["genes"].str.startswith("Gene").all()
    with pytest.raises(ValueError, match="gene_target column"):
        xs.tl.pathway_lfc(lfc_table, to_mouse(gmt_dict()), symbols="target")


def test_permutation_pvalue_detects_shift(lfc_table):
    res = xs.tl.pathway_lfc(lfc_table, GMT, n_permutations=999, random_state=1).set_index(
        ["cell_type", "pathway"]
    )
    assert res.loc[("beta", "SHIFTED_UP"), "pval"] == pytest.approx(1 / 1000)  # never reached by chance
    assert res.loc[("beta", "SHIFTED_UP"), "pval_adj"] < 0.01
    assert res.loc[("beta", "SHIFTED_UP"), "mean_lfc"] > SHIFT
    assert res.loc[("alpha", "SHIFTED_UP"), "pval"] > 0.05  # the same genes are not shifted in alpha
    greater = xs.tl.pathway_lfc(lfc_table, GMT, alternative="greater", n_permutations=200)
    less = xs.tl.pathway_lfc(lfc_table, GMT, alternative="less", n_permutations=200)
    shifted = (greater.cell_type == "beta") & (greater.pathway == "SHIFTED_UP")
    assert greater.loc[shifted, "pval"].item() < 0.01
    assert less.loc[shifted, "pval"].item() > 0.99


def test_permutation_pvalues_of_random_sets_are_uniform(lfc_table):
    rng = np.random.default_rng(3)
    alpha = lfc_table[lfc_table.cell_type == "alpha"]
    sets = {f"R{k}": list(rng.choice(alpha["gene_target"], 12, replace=False)) for k in range(300)}
    res = xs.tl.pathway_lfc(alpha, sets, n_permutations=200)
    assert len(res) == 300
    pvals = res["pval"].to_numpy()
    assert 0.42 < pvals.mean() < 0.58
    assert 0.02 < (pvals <= 0.05).mean() < 0.09
    assert 0.2 < (pvals <= 0.25).mean() < 0.3


def test_permutation_pvalue_exact_small_case():
    # one gene of five is 10, the set is that gene: a random gene is as extreme with probability 1/5
    lfc = pd.DataFrame(
        {
            "cell_type": "t",
            "gene_target": list("ABCDE"),
            "gene_context": list("abcde"),
            "lfc": [0.0, 0.0, 0.0, 0.0, 10.0],
        }
    )
    res = xs.tl.pathway_lfc(lfc, {"top": ["E"], "all": list("ABCDE")}, min_genes=1, n_permutations=4000)
    assert "frac_called" not in res  # no p column
    assert res.loc[0, "pval"] == pytest.approx(0.2, abs=0.02)
    assert res.loc[1, "pval"] == 1.0  # the whole universe is its own only permutation


def test_seeded_and_nan_lfc(lfc_table):
    once = xs.tl.pathway_lfc(lfc_table, GMT, n_permutations=100, random_state=5)
    again = xs.tl.pathway_lfc(lfc_table, GMT, n_permutations=100, random_state=5)
    pd.testing.assert_frame_equal(once, again)
    observed = lfc_table[["cell_type", "gene_target", "gene_context", "lfc"]].copy()
    observed.loc[observed.gene_target.isin(["GENE0", "GENE1"]), "lfc"] = np.nan  # as tl.data_lfc writes
    res = xs.tl.pathway_lfc(observed, GMT, n_permutations=100)
    assert (res.loc[res.pathway == "SHIFTED_UP", "n_genes"] == 13).all()
    assert np.isfinite(res["mean_lfc"]).all()


def test_bad_inputs(lfc_table, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.gmt"):
        xs.tl.pathway_lfc(lfc_table, tmp_path / "missing.gmt")
    with pytest.raises(ValueError, match="collection is empty"):
        xs.tl.pathway_lfc(lfc_table, {})
    with pytest.raises(ValueError, match="collection is empty"):
        xs.tl.pathway_lfc(lfc_table, pd.DataFrame(columns=["source", "target"]))
    with pytest.raises(ValueError, match=r"without genes: \['EMPTY'\]"):
        xs.tl.pathway_lfc(lfc_table, {"EMPTY": [], "OK": ["GENE1"]})
    empty_gmt = tmp_path / "empty.gmt"
    empty_gmt.write_text("\n")
    with pytest.raises(ValueError, match="collection is empty"):
        xs.tl.pathway_lfc(lfc_table, empty_gmt)
    twice = tmp_path / "twice.gmt"
    twice.write_text("A\td\tGENE1\nA\td\tGENE2\n")
    with pytest.raises(ValueError, match="'A' appears twice"):
        xs.tl.pathway_lfc(lfc_table, twice)
    with pytest.raises(ValueError, match=r"min_genes=21 .*largest overlap is 20 genes \(SCATTERED\)"):
        xs.tl.pathway_lfc(lfc_table, GMT, min_genes=21)
    with pytest.raises(ValueError, match="no gene of the gene sets"):
        xs.tl.pathway_lfc(lfc_table, {"X": ["FOO", "BAR"]})
    with pytest.raises(TypeError, match="one string"):
        xs.tl.pathway_lfc(lfc_table, {"X": "GENE1 GENE2"})
    with pytest.raises(TypeError, match="gene_sets must be"):
        xs.tl.pathway_lfc(lfc_table, [["GENE1"]])
    with pytest.raises(KeyError, match="'target'"):
        xs.tl.pathway_lfc(lfc_table, pd.DataFrame({"source": ["A"], "gene": ["GENE1"]}))
    with pytest.raises(KeyError, match="'lfc'"):
        xs.tl.pathway_lfc(lfc_table.drop(columns="lfc"), GMT)
    for kwargs, match in [
        ({"min_genes": 0}, "min_genes"),
        ({"min_genes": 2.5}, "min_genes"),
        ({"n_permutations": 0}, "n_permutations"),
        ({"prob_delta": 1.5}, "prob_delta"),
        ({"symbols": "human"}, "symbols"),
        ({"alternative": "both"}, "alternative"),
    ]:
        with pytest.raises(ValueError, match=match):
            xs.tl.pathway_lfc(lfc_table, GMT, **kwargs)


def test_plot_heatmap(lfc_table):
    res = xs.tl.pathway_lfc(lfc_table, GMT, n_permutations=200)
    ax = xs.pl.pathway_lfc(res, show=False)
    assert isinstance(ax, Axes)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["alpha", "beta"]
    columns = [t.get_text() for t in ax.get_xticklabels()]
    assert columns[0] == "SHIFTED_UP"  # divergent in one cell type: drawn first
    assert set(columns) == {"SHIFTED_UP", "SCATTERED", "PARTLY_ABSENT"}
    marks = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert marks[(1, 0)] == "*"  # beta x SHIFTED_UP is divergent
    image = ax.get_images()[0]
    assert image.norm.vmin == -image.norm.vmax
    fig, given = plt.subplots()
    assert xs.pl.pathway_lfc(res, pathways=["SCATTERED"], cell_types="beta", ax=given, show=False) is given
    assert [t.get_text() for t in given.get_xticklabels()] == ["SCATTERED"]
    fig = xs.pl.pathway_lfc(res, max_pathways=1, return_fig=True)
    assert isinstance(fig, Figure)
    assert len(fig.axes[0].get_xticklabels()) == 1
    with pytest.raises(ValueError, match="NOPE"):
        xs.pl.pathway_lfc(res, pathways=["NOPE"], show=False)
    with pytest.raises(KeyError, match="pval_adj"):
        xs.pl.pathway_lfc(res.drop(columns="pval_adj"), show=False)
    plt.close("all")


def test_plot_marks_conserved_pathways():
    res = pd.DataFrame(
        {
            "cell_type": ["a", "a", "a", "b"],
            "pathway": ["SAME", "BIG_NS", "DIFF", "SAME"],
            "mean_lfc": [0.1, 1.0, -1.5, 0.0],
            "pval_adj": [0.8, 0.3, 0.001, 0.9],
        }
    )
    ax = xs.pl.pathway_lfc(res, conserved_lfc=0.25, show=False)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["DIFF", "BIG_NS", "SAME"]  # divergent first, then by mean |LFC|
    marks = {(round(t.get_position()[1]), labels[round(t.get_position()[0])]): t.get_text() for t in ax.texts}
    assert marks == {(0, "SAME"): "=", (0, "DIFF"): "*", (1, "SAME"): "="}  # b x DIFF, BIG_NS: not tested
    assert np.ma.is_masked(ax.get_images()[0].get_array()[1, 0])  # drawn grey
    plt.close("all")


@pytest.mark.parametrize("function", [xs.tl.pathway_lfc, xs.pl.pathway_lfc])
def test_docstring_examples_run(function):
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(function, globs={}):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0
    assert results.failed == 0
    plt.close("all")
