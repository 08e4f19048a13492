import os
import subprocess
import sys
from pathlib import Path

import pytest

import xspecies as xs
from xspecies.cli.main import main


def test_version_and_subpackages():
    assert isinstance(xs.__version__, str)
    for sub in ("pp", "tl", "pl", "datasets"):
        assert hasattr(xs, sub)


def test_cli_help(capsys):
    assert main([]) == 2  # no command: one line on stderr
    assert "choose a command" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "xspecies" in capsys.readouterr().out


def test_help_and_version_do_not_import_the_package():
    code = (
        "import sys\nfrom xspecies.cli.main import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "try:\n    main(['align', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "print(sorted(m for m in ('anndata', 'scanpy', 'torch', 'scvi', 'numpy') if m in sys.modules))"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert out.stdout.startswith("xspecies ")
