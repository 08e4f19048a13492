import xspecies as xs
from xspecies.cli.main import main


def test_version_and_subpackages():
    assert isinstance(xs.__version__, str)
    for sub in ("pp", "tl", "pl", "datasets"):
        assert hasattr(xs, sub)


def test_cli_help(capsys):
    assert main([]) == 1
    assert "xspecies" in capsys.readouterr().out
