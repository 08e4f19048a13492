import functools
import gzip
import http.server
import tarfile
import threading
from importlib.resources import files

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import xspecies as xs
from xspecies.datasets import _liver, _pancreas

MARKERS = {"human": ["INS", "GCG", "SST", "PPY"], "mouse": ["Ins1", "Ins2", "Gcg", "Sst", "Ppy"]}


@pytest.mark.parametrize(("species", "n_obs"), [("human", 2142), ("mouse", 1886)])
def test_pancreas_demo(species, n_obs):
    adata = xs.datasets.pancreas(species)
    assert adata.n_obs == n_obs
    assert 3000 < adata.n_vars < 6000
    assert adata.X.dtype == np.float32 and adata.X.format == "csr"
    assert np.array_equal(adata.X.data, np.round(adata.X.data)) and adata.X.data.min() > 0
    assert {"cell_ontology_class", "donor"} <= set(adata.obs.columns)
    assert "type B pancreatic cell" in set(adata.obs["cell_ontology_class"])
    assert set(MARKERS[species]) <= set(adata.var_names)
    beta = (adata.obs["cell_ontology_class"] == "type B pancreatic cell").to_numpy()
    insulin = "INS" if species == "human" else "Ins2"
    expression = adata[:, insulin].X.toarray().ravel()
    assert expression[beta].mean() > 10 * expression[~beta].mean()


def test_demo_files_are_package_data():
    data = files("xspecies").joinpath("data")
    names = {p.name for p in data.iterdir()}
    assert {"pancreas_human_demo.h5ad", "pancreas_mouse_demo.h5ad", "orthologs_human_mouse.tsv.gz"} <= names
    total = sum(data.joinpath(n).stat().st_size for n in names if not n.startswith("__"))
    assert total < 6e6


def test_pancreas_errors():
    with pytest.raises(ValueError, match="unknown species 'rat'"):
        xs.datasets.pancreas("rat")
    with pytest.raises(ValueError, match="unknown subset 'tiny'"):
        xs.datasets.pancreas("human", subset="tiny")


def test_pancreas_full_from_data_dir(shared_data, monkeypatch):
    monkeypatch.setenv("XSPECIES_DATA_DIR", str(shared_data))
    adata = xs.datasets.pancreas("mouse", subset="full")
    assert adata.shape == (1886, 14877)
    assert adata.X.dtype == np.float32
    demo = xs.datasets.pancreas("mouse")
    assert set(demo.var_names) <= set(adata.var_names)
    # the demo keeps the full counts of its genes
    np.testing.assert_array_equal(adata[demo.obs_names, demo.var_names].X.toarray(), demo.X.toarray())


def test_pancreas_full_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="baron_human_counts.h5ad"):
        xs.datasets.pancreas("human", subset="full", data_dir=tmp_path)


def _geo_file(folder, name, clusters, genes, seed):
    """A count table in GEO GSE84133's format: index, barcode, assigned_cluster, then genes."""
    rng = np.random.default_rng(seed)
    cells = [f"{name.split('_')[1]}_lib1.final_cell_{i:04d}" for i in range(len(clusters))]
    table = pd.DataFrame(rng.poisson(2, size=(len(cells), len(genes))), index=cells, columns=genes)
    table.insert(0, "assigned_cluster", clusters)
    table.insert(0, "barcode", [f"AC{i:06d}" for i in range(len(cells))])
    path = folder / name
    with gzip.open(path, "wt") as fh:
        table.to_csv(fh)
    return path


@pytest.fixture
def geo_files(tmp_path):
    return [
        _geo_file(
            tmp_path, "GSM2230761_mouse1_umifm_counts.csv.gz", ["beta", "alpha", "B_cell"], ["Ins1", "Gcg"], 0
        ),
        _geo_file(
            tmp_path,
            "GSM2230762_mouse2_umifm_counts.csv.gz",
            ["quiescent_stellate", "beta"],
            ["Gcg", "Sst"],
            1,
        ),
        _geo_file(tmp_path, "GSM2230757_human1_umifm_counts.csv.gz", ["beta"], ["INS"], 2),
    ]


def test_read_gse84133(geo_files):
    adata = xs.datasets.read_gse84133(geo_files, "mouse")
    assert adata.shape == (5, 3)
    assert sorted(adata.var_names) == ["Gcg", "Ins1", "Sst"]
    assert adata.obs["donor"].tolist() == ["mouse1"] * 3 + ["mouse2"] * 2
    assert adata.obs["cell_ontology_class"].tolist() == [
        "type B pancreatic cell",
        "pancreatic A cell",
        "B cell",
        "pancreatic stellate cell",
        "type B pancreatic cell",
    ]
    raw = pd.read_csv(geo_files[1], index_col=0)
    cell = raw.index[0]
    assert adata[cell, "Sst"].X.toarray().item() == raw.loc[cell, "Sst"]
    assert adata[cell, "Ins1"].X.toarray().item() == 0  # gene absent from that donor's file
    assert adata.X.dtype == np.float32
    with pytest.raises(ValueError, match="no GSE84133 count files of species 'human'"):
        xs.datasets.read_gse84133(geo_files[:2], "human")


@pytest.fixture
def local_server(tmp_path):
    """Serve ``tmp_path / "www"`` on 127.0.0.1; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_pancreas_full_download_from_geo_tar(geo_files, local_server, tmp_path, monkeypatch):
    root, url = local_server
    with tarfile.open(root / "GSE84133_RAW.tar", "w") as tar:
        for path in geo_files:
            tar.add(path, arcname=path.name)
    monkeypatch.delenv("XSPECIES_DATA_DIR", raising=False)
    monkeypatch.setenv("XSPECIES_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_pancreas, "GEO_URL", f"{url}/GSE84133_RAW.tar")
    adata = xs.datasets.pancreas("mouse", subset="full")
    assert adata.n_obs == 5 and set(adata.obs["donor"]) == {"mouse1", "mouse2"}
    assert (tmp_path / "cache" / "GSE84133_RAW.tar").exists()
    human = xs.datasets.pancreas("human", subset="full")  # served from the cache
    assert human.n_obs == 1


def test_liver_download(local_server, tmp_path, monkeypatch):
    root, url = local_server
    tiny = ad.AnnData(np.ones((3, 2), dtype=np.float32))
    tiny.write_h5ad(root / "hamster_liver.h5ad")
    monkeypatch.setenv("XSPECIES_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_liver, "liver_url", lambda species: f"{url}/{species}_liver.h5ad")
    adata = xs.datasets.liver("hamster", progressbar=False)
    assert adata.shape == (3, 2)
    assert xs.datasets.cache_dir() == tmp_path / "cache"


def test_liver_urls():
    assert (
        xs.datasets.liver_url("human")
        == "https://zenodo.org/records/15522251/files/human_liver.h5ad?download=1"
    )
    assert set(_liver.LIVER_FILES) == {"human", "mouse", "hamster"}
    with pytest.raises(ValueError, match="unknown species 'rat' for the liver data"):
        xs.datasets.liver("rat")


def test_pancreas_models_are_trained_and_independent_copies():
    with pytest.raises(ValueError, match="n_cells"):
        xs.datasets.pancreas_models(n_cells=10)
    context, target = xs.datasets.pancreas_models(n_cells=40)
    assert context.is_trained and target.is_trained
    assert context.adata.n_obs == target.adata.n_obs == 40
    assert target.adata.uns["homology"]["params"]["labels_key"] == "cell_ontology_class"
    assert target.get_latent_representation().shape[0] == 40
    target.adata.obs["changed"] = 1  # a later call loads new copies of the same models
    again_context, again = xs.datasets.pancreas_models(n_cells=40)
    assert "changed" not in again.adata.obs
    np.testing.assert_allclose(
        again.get_latent_representation(), target.get_latent_representation(), atol=1e-6
    )
    assert again_context.adata.obs_names.equals(context.adata.obs_names)
