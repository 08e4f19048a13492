"""``import xspecies`` is fast: scanpy, anndata, torch, scvi-tools and matplotlib load on first use."""

import json
import subprocess
import sys

import pytest

HEAVY = ("scanpy", "anndata", "torch", "scvi", "matplotlib")

PROBE = """
import json, sys, time
start = time.perf_counter()
import xspecies
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "loaded": [m for m in %r if m in sys.modules]}))
"""


def fresh_import() -> dict:
    """``import xspecies`` in a new interpreter: its wall time and which heavy packages it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_import_loads_no_heavy_dependency():
    assert fresh_import()["loaded"] == []


def test_import_under_1_5_seconds():
    # the bound of the issue (#16): 7.2 s when scanpy was imported at the top of pp; best of three runs
    # so that a busy machine does not decide it
    assert min(fresh_import()["seconds"] for _ in range(3)) < 1.5


def test_public_names_resolve_on_first_use():
    code = """
import xspecies as xs
for sub in (name for name in xs.__all__ if name != "__version__"):
    assert sub in dir(xs)
    exec(f"from xspecies.{sub} import *")  # every name of __all__, through the lazy __getattr__
    module = getattr(xs, sub)
    missing = [name for name in module.__all__ if name not in dir(module)]
    assert not missing, (sub, missing)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_prepare_loads_scanpy_only_when_reached():
    code = """
import sys
import xspecies as xs
xs.pp.translate_genes
assert "scanpy" not in sys.modules
from xspecies.pp import prepare
assert "scanpy" in sys.modules and callable(prepare)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_unknown_name_is_an_attribute_error():
    import xspecies as xs

    with pytest.raises(AttributeError, match="has no attribute 'preprocess'"):
        xs.preprocess  # noqa: B018
    with pytest.raises(AttributeError, match="'xspecies.pp' has no attribute 'normalize'"):
        xs.pp.normalize  # noqa: B018
