import scspecies as scs
from scspecies.cli.main import main


def test_version_and_subpackages():
    assert isinstance(scs.__version__, str)
    for sub in ("pp", "tl", "pl", "datasets"):
        assert hasattr(scs, sub)


def test_cli_help(capsys):
    assert main([]) == 1
    assert "scspecies" in capsys.readouterr().out
