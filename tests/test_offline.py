"""Network-only sources without a connection: one clear line naming what works offline."""

import pytest

import xspecies as xs
from xspecies.datasets import _liver, _pancreas
from xspecies.pp import _orthologs

#: Nothing listens on the discard port of the local host: the connection is refused at once.
UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XSPECIES_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("XSPECIES_DATA_DIR", raising=False)


def _assert_one_clear_line(error, fragment):
    message = str(error.value)
    assert "\n" not in message and "needs an internet connection" in message and fragment in message
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_liver_offline(empty_cache, monkeypatch):
    monkeypatch.setattr(_liver, "liver_url", lambda species: f"{UNREACHABLE}/{species}_liver.h5ad")
    with pytest.raises(ConnectionError) as error:
        xs.datasets.liver("mouse", progressbar=False)
    _assert_one_clear_line(error, "xs.datasets.pancreas(")


def test_full_pancreas_offline(empty_cache, monkeypatch):
    monkeypatch.setattr(_pancreas, "GEO_URL", f"{UNREACHABLE}/GSE84133_RAW.tar")
    with pytest.raises(ConnectionError) as error:
        xs.datasets.pancreas("mouse", subset="full")
    _assert_one_clear_line(error, "xs.datasets.pancreas('mouse')")


def test_mgi_offline(empty_cache, monkeypatch):
    monkeypatch.setattr(_orthologs, "MGI_URL", f"{UNREACHABLE}/HOM_AllOrganism.rpt")
    with pytest.raises(ConnectionError) as error:
        xs.pp.ortholog_table("human", "rat", source="mgi")
    _assert_one_clear_line(error, 'table="embedded"')


def test_mygene_offline(monkeypatch):
    import httpx  # what mygene's client (biothings_client) raises on a network failure
    import mygene

    def no_connection(self, *args, **kwargs):
        raise httpx.ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr(mygene.MyGeneInfo, "querymany", no_connection)
    with pytest.raises(ConnectionError) as error:
        xs.pp.ortholog_table("human", "rat", source="mygene", genes=["GCG"])
    _assert_one_clear_line(error, 'table="embedded"')
    assert "cached" not in str(error.value)
