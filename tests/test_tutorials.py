"""The tutorial notebooks: valid, executed with outputs (figures included), and in sync with the API.

Executing the notebooks as written takes minutes (model training): re-run them with
``python scripts/run_tutorials.py``. Here their code runs on the demo data with one epoch and few
trials, and these tests check what would break the rendered documentation: every notebook is
valid JSON in nbformat 4, its code cells ran in order without an error and produced their figures,
its imports resolve, and every ``xs.<sub-package>.<name>`` it uses exists in the installed package.
"""

import ast
import importlib
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

import xspecies as xs

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = {
    "01_pancreas_mouse_to_human.ipynb": True,  # name: must contain figures
    "02_one_context_two_targets.ipynb": True,
    "03_scice.ipynb": True,
    "04_scvi_hub.ipynb": False,
}


def _load(name: str) -> dict:
    notebook = json.loads((TUTORIALS / name).read_text())
    assert notebook["nbformat"] == 4, name
    assert notebook["metadata"]["kernelspec"]["language"] == "python"
    return notebook


def _code(notebook: dict) -> list[str]:
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def _tree(source: str) -> ast.Module:
    # IPython magics and shell escapes are not Python
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return ast.parse("\n".join(lines))


def _attribute_chain(node: ast.Attribute) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "xs":
        return parts[::-1]
    return None


@pytest.fixture(params=sorted(NOTEBOOKS), ids=lambda name: name.split("_")[0])
def notebook_name(request) -> str:
    return request.param


def test_notebook_has_title_and_code(notebook_name):
    notebook = _load(notebook_name)
    first = notebook["cells"][0]
    assert first["cell_type"] == "markdown" and "".join(first["source"]).startswith("# ")
    assert len(_code(notebook)) >= 3


def test_imports_and_api_references_resolve(notebook_name):
    for source in _code(_load(notebook_name)):
        for node in ast.walk(_tree(source)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert importlib.util.find_spec(alias.name.split(".")[0]), alias.name
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(
                        f"{node.module}.{alias.name}"
                    )
            elif isinstance(node, ast.Attribute) and (chain := _attribute_chain(node)):
                target = xs
                for i, part in enumerate(chain):
                    assert hasattr(target, part), (
                        f"{notebook_name}: xs.{'.'.join(chain[: i + 1])} does not exist"
                    )
                    target = getattr(target, part)


def test_notebook_was_executed_without_errors(notebook_name):
    notebook = _load(notebook_name)
    cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    counts = [cell["execution_count"] for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{notebook_name}: cells not run once, in order: {counts}"
    )
    outputs = [output for cell in cells for output in cell["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"], f"{notebook_name} has an error output"
    assert outputs, f"{notebook_name} has no outputs"
    if NOTEBOOKS[notebook_name]:
        figures = [o for o in outputs if "image/png" in o.get("data", {})]
        assert figures, f"{notebook_name} has no figure"


#: Substitutions that shrink a tutorial to a smoke run: one epoch, few samples, trials and bootstraps.
_QUICK = [
    (r"\bEPOCHS = \d+", "EPOCHS = 1"),
    (r"\bn_samples=\d+", "n_samples=20"),
    (r"\bn_trials=\d+", "n_trials=3"),
    (r"\bn_bootstrap=\d+", "n_bootstrap=5"),
    (r"cluster_range=range\(2, \d+\)", "cluster_range=range(2, 5)"),
]


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_tutorial_code_runs_on_the_demo_data(name, monkeypatch, tmp_path):
    """Every code cell runs, in order, on the embedded demo data (epochs, samples and trials shrunk)."""
    import matplotlib.pyplot as plt  # Agg, set by conftest

    source = "\n\n".join(_code(_load(name)))
    for pattern, quick in _QUICK:
        source = re.sub(pattern, quick, source)
    shutil.copytree(TUTORIALS / "data", tmp_path / "data")  # files the notebooks read (gene sets)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__tutorial__", "display": print}
    exec(compile(source, name, "exec"), namespace)  # our own notebooks
    plt.close("all")
