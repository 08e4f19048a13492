import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import xspecies as xs
from xspecies.pp._species import resolve_species


def _adata(genes):
    X = sparse.csr_matrix(np.ones((3, len(genes)), dtype=np.float32))
    return ad.AnnData(X=X, var=pd.DataFrame(index=genes))


@pytest.fixture(scope="module")
def human_demo():
    return xs.datasets.pancreas("human")


@pytest.mark.parametrize(
    ("given", "name", "taxon"),
    [
        ("human", "human", 9606),
        ("Mus musculus", "mouse", 10090),
        (10116, "rat", 10116),
        ("7955", "zebrafish", 7955),
    ],
)
def test_resolve_species(given, name, taxon):
    species = resolve_species(given)
    assert (species.name, species.taxon_id) == (name, taxon)


def test_resolve_species_unknown_taxon_and_errors():
    assert resolve_species(9999999).taxon_id == 9999999
    with pytest.raises(ValueError, match="unknown species 'unicorn'"):
        resolve_species("unicorn")
    with pytest.raises(ValueError, match="invalid NCBI taxon id"):
        resolve_species(0)


def test_embedded_table_content():
    table = xs.pp.ortholog_table("human", "mouse")
    assert list(table.columns) == ["human", "mouse", "type", "support"]
    assert set(table["type"]) == {"one2one", "one2many", "many2many"}
    assert len(table) > 20_000
    assert set(table.loc[table["human"] == "INS", "mouse"]) == {"Ins1", "Ins2"}
    assert table.loc[table["human"] == "GCG", "mouse"].tolist() == ["Gcg"]
    # the reverse direction is the same table with swapped columns
    reverse = xs.pp.ortholog_table(10090, 9606)
    assert list(reverse.columns[:2]) == ["mouse", "human"]
    assert len(reverse) == len(table)


def test_translate_markers_human_to_mouse(human_demo):
    adata = human_demo.copy()
    assert xs.pp.translate_genes(adata, "human", "mouse") is None
    var = adata.var
    assert var.loc["INS", "ortholog"] in {"Ins1", "Ins2"}
    assert var.loc["GCG", "ortholog"] == "Gcg"
    assert var.loc["SST", "ortholog"] == "Sst"
    assert var.loc["PPY", "ortholog"] == "Ppy"
    assert var.loc["GCG", "ortholog_type"] == "one2one"
    assert var.loc["INS", "ortholog_type"] == "one2many"
    mapped = var["ortholog"].dropna()
    assert mapped.is_unique  # "best" is a one-to-one assignment
    info = adata.uns["ortholog"]
    assert info["n_mapped"] == len(mapped) > 0.7 * adata.n_vars
    assert info["params"] == {
        "source_species": "human",
        "target_species": "mouse",
        "table": "embedded",
        "policy": "best",
    }
    assert (var.loc[var["ortholog"].isna(), "ortholog_support"] == 0).all()
    assert adata.n_vars == human_demo.n_vars  # no gene removed


def test_translate_policies(human_demo):
    one = xs.pp.translate_genes(human_demo, "human", "mouse", policy="one2one", copy=True)
    assert pd.isna(one.var.loc["INS", "ortholog"])
    assert one.var.loc["GCG", "ortholog"] == "Gcg"
    assert (one.var["ortholog_type"].dropna() == "one2one").all()
    every = xs.pp.translate_genes(human_demo, "human", "mouse", policy="all", copy=True, key_added="orth")
    assert set(every.var.loc["INS", "orth"].split("|")) == {"Ins1", "Ins2"}
    assert "orth_type" in every.var
    assert "ortholog" not in human_demo.var  # copy=True leaves the input alone
    with pytest.raises(ValueError, match="unknown policy"):
        xs.pp.translate_genes(human_demo, "human", "mouse", policy="random")


def test_translate_mouse_to_human_many_to_one():
    adata = _adata(["Ins1", "Ins2", "Gcg", "NotAGene"])
    every = xs.pp.translate_genes(adata, "mouse", "human", policy="all", copy=True)
    assert every.var.loc["Ins1", "ortholog"] == every.var.loc["Ins2", "ortholog"] == "INS"
    best = xs.pp.translate_genes(adata, "mouse", "human", copy=True)
    assert best.var["ortholog"].tolist().count("INS") == 1  # only the best-supported mouse gene keeps INS
    assert pd.isna(best.var.loc["NotAGene", "ortholog"])


def test_translate_user_table():
    table = pd.DataFrame({"human": ["A", "A", "B"], "mouse": ["a1", "a2", "b"], "support": [1, 5, 2]})
    adata = _adata(["A", "B", "C"])
    xs.pp.translate_genes(adata, "human", "mouse", table=table)
    assert adata.var["ortholog"].tolist()[:2] == ["a2", "b"]
    assert adata.var["ortholog_type"].tolist()[:2] == ["one2many", "one2one"]
    assert adata.uns["ortholog"]["params"]["table"] == "user"
    # positional columns work too
    xs.pp.translate_genes(adata, "human", "mouse", table=table.rename(columns={"human": "x", "mouse": "y"}))
    assert adata.var.loc["B", "ortholog"] == "b"


def test_translate_errors():
    with pytest.raises(ValueError, match="human <-> mouse only.*mgi.*mygene"):
        xs.pp.translate_genes(_adata(["A"]), "human", "zebrafish")
    dup = _adata(["A", "A"])
    with pytest.raises(ValueError, match="duplicates"):
        xs.pp.translate_genes(dup, "human", "mouse")
    with pytest.raises(ValueError, match="same"):
        xs.pp.ortholog_table("mouse", 10090)
    with pytest.raises(ValueError, match="unknown ortholog source"):
        xs.pp.ortholog_table("human", "mouse", source="biomart")


MGI_REPORT = (
    "DB Class Key\tCommon Organism Name\tNCBI Taxon ID\tSymbol\tEntrezGene ID\n"
    "1\thuman\t9606\tINS\t3630\n"
    "1\tmouse, laboratory\t10090\tIns1\t16333\n"
    "1\tmouse, laboratory\t10090\tIns2\t16334\n"
    "1\trat\t10116\tIns1\t24505\n"
    "1\trat\t10116\tIns2\t24506\n"
    "2\thuman\t9606\tGCG\t2641\n"
    "2\trat\t10116\tGcg\t24952\n"
    "3\thuman\t9606\tSST\t6750\n"
    "3\tzebrafish\t7955\tsst1.1\t30248\n"
)


def test_mgi_table_from_local_cache(tmp_path, monkeypatch):
    # pooch finds the report already in the cache folder and does not download it
    monkeypatch.setenv("XSPECIES_CACHE_DIR", str(tmp_path))
    (tmp_path / "HOM_AllOrganism.rpt").write_text(MGI_REPORT)
    table = xs.pp.ortholog_table("human", "rat", source="mgi")
    assert set(map(tuple, table[["human", "rat"]].to_numpy())) == {
        ("INS", "Ins1"),
        ("INS", "Ins2"),
        ("GCG", "Gcg"),
    }
    assert table.set_index("rat").loc["Gcg", "type"] == "one2one"
    adata = _adata(["INS", "GCG", "SST"])
    xs.pp.translate_genes(adata, "human", "zebrafish", table="mgi")
    assert adata.var["ortholog"].tolist() == [None, None, "sst1.1"]
    with pytest.raises(ValueError, match="not in the MGI homology report"):
        xs.pp.ortholog_table("human", "pig", source="mgi")


class FakeMyGene:
    """Stands in for mygene.MyGeneInfo: HomoloGene groups of two human genes."""

    calls: list = []

    def querymany(self, genes, scopes, species, fields, verbose):
        FakeMyGene.calls.append(("querymany", tuple(genes), species))
        groups = {
            "GCG": [[9606, 2641], [10116, 24952]],
            "INS": [[9606, 3630], [10116, 24505], [10116, 24506]],
        }
        return [
            {"query": g, "homologene": {"genes": groups[g]}}
            if g in groups
            else {"query": g, "notfound": True}
            for g in genes
        ]

    def getgenes(self, ids, fields, verbose):
        FakeMyGene.calls.append(("getgenes", tuple(ids)))
        symbols = {24952: "Gcg", 24505: "Ins1", 24506: "Ins2"}
        return [{"query": str(i), "symbol": symbols[i]} for i in ids]


def test_mygene_table_mocked(monkeypatch):
    import mygene

    monkeypatch.setattr(mygene, "MyGeneInfo", FakeMyGene)
    adata = _adata(["GCG", "INS", "XYZ"])
    xs.pp.translate_genes(adata, 9606, 10116, table="mygene")
    assert adata.var.loc["GCG", "ortholog"] == "Gcg"
    assert adata.var.loc["INS", "ortholog"] in {"Ins1", "Ins2"}
    assert adata.var.loc["INS", "ortholog_type"] == "one2many"
    assert pd.isna(adata.var.loc["XYZ", "ortholog"])
    assert FakeMyGene.calls[0] == ("querymany", ("GCG", "INS", "XYZ"), 9606)
    with pytest.raises(ValueError, match="needs the gene symbols"):
        xs.pp.ortholog_table("human", "rat", source="mygene")
