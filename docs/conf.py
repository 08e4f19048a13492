"""Sphinx configuration of the xspecies documentation (cookiecutter-scverse conventions)."""

import os
import sys
from datetime import datetime
from importlib.metadata import metadata
from pathlib import Path

import sphinx_autodoc_typehints.patches

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "_ext"))

# -- Project information -----------------------------------------------------------------------------

info = metadata("xspecies")
project = info["Name"]
author = info["Author"] or "xspecies developers"
copyright = f"{datetime.now():%Y}, {author}"
version = info["Version"]
release = version
repository_url = "https://github.com/scverse/xspecies"

# -- General configuration ---------------------------------------------------------------------------

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_autodoc_typehints",  # after napoleon
    "sphinx_copybutton",
    "cli_help",  # docs/_ext: renders `xspecies --help` and every sub-command's help
    "api_check",  # docs/_ext: warns when a public name is missing from api.md
]

templates_path = ["_templates"]
html_static_path = ["_static"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "tutorials/*.py"]
source_suffix = {".rst": "restructuredtext", ".ipynb": "myst-nb", ".md": "myst-nb"}
master_doc = "index"
default_role = "literal"
pygments_style = "default"

# autodoc / autosummary / napoleon (numpy-style docstrings, types from the annotations)
autosummary_generate = True
autodoc_member_order = "groupwise"
autodoc_default_options = {"show-inheritance": True}
typehints_defaults = "braces"
typehints_document_rtype = False  # the Returns section of each docstring says it
always_document_param_types = False
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_include_init_with_doc = False
napoleon_use_rtype = True
napoleon_use_param = True
# "Returns" as a free-text section: scanpy-style docstrings describe in prose and lists what is returned
# and written, which the typed numpy field parser would mangle
napoleon_custom_sections = [("Params", "Parameters"), "Returns"]
# ... and sphinx-autodoc-typehints must not prefix that section with its ":" marker (meant for typed fields)
sphinx_autodoc_typehints.patches.napoleon_numpy_docstring_return_type_processor = lambda *args, **kwargs: None


# scvi-tools members that xspecies users call directly: documented on the class pages with the rest
SCVI_MEMBERS_SHOWN = ("get_latent_representation", "history", "is_trained", "save")


def _class_members() -> dict[str, dict[str, list[str]]]:
    """For each class of :mod:`xspecies.model`: the members to document, and the other scvi-tools ones.

    Class pages document the public members defined in xspecies (also in its private base classes)
    and :data:`SCVI_MEMBERS_SHOWN`; the remaining members of the scvi-tools base classes are only named,
    and those of torch and lightning are left out: their docstrings belong to those projects.
    """
    import inspect

    import xspecies.model

    pages = {}
    for name in xspecies.model.__all__:
        cls = getattr(xspecies.model, name)
        if not inspect.isclass(cls):
            continue
        # wrappers of scvi-tools methods (e.g. the trained-model check) keep scvi-tools' docstrings: named only
        ours = {
            a
            for k in cls.__mro__
            if k.__module__.startswith("xspecies")
            for a, v in vars(k).items()
            if not getattr(getattr(v, "__wrapped__", None), "__module__", "").startswith("scvi")
        }
        scvi = {a for k in cls.__mro__ if k.__module__.startswith("scvi") for a in vars(k)} - ours
        shown = sorted(a for a in ours | (scvi & set(SCVI_MEMBERS_SHOWN)) if not a.startswith("_"))
        named = sorted(a for a in scvi if not a.startswith("_") and a not in shown)
        pages[f"xspecies.model.{name}"] = {"shown": shown, "named": named}
    return pages


autosummary_context = {"class_members": _class_members()}

# MyST and notebooks: tutorials are committed with their outputs and are never executed here
myst_enable_extensions = ["amsmath", "colon_fence", "deflist", "dollarmath", "html_image", "html_admonition"]
myst_heading_anchors = 3
nb_execution_mode = "off"
nb_output_stderr = "remove"
nb_merge_streams = True

# External packages: link to their documentation on Read the Docs, where the network is reachable.
# Offline (CI), references into these packages are left unresolved and are not reported.
intersphinx_mapping = {}
if os.environ.get("READTHEDOCS"):
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
        "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
        "scvi": ("https://docs.scvi-tools.org/en/stable/", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "pandas": ("https://pandas.pydata.org/docs/", None),
        "scipy": ("https://docs.scipy.org/doc/scipy/", None),
        "matplotlib": ("https://matplotlib.org/stable/", None),
        "torch": ("https://docs.pytorch.org/docs/stable/", None),
    }
_external = (
    r"(anndata|ad|mudata|md|scanpy|sc|scvi|numpy|np|pandas|pd|scipy|sp|matplotlib|mpl|plt|torch|lightning"
    r"|pytorch_lightning|igraph|leidenalg|pynndescent|sklearn|huggingface_hub|pooch|joblib|dask|tqdm"
    r"|collections|typing|os|pathlib|argparse|numbers|types|typing_extensions|builtins)"
)
nitpick_ignore_regex = [
    (r"py:.*", _external + r"(\..*)?"),
    # private modules and classes (base classes shown by show-inheritance) are not documented
    (r"py:.*", r"xspecies\.(.*\.)?_\w+(\..*)?"),
    # bare names that the type-hint renderer leaves unqualified
    (r"py:class", r"(AnnData|MuData|ArrayLike|NDArray|DataFrame|Series|Axes|Figure|Colormap|Module|Tensor)"),
    (
        r"py:class",
        r"(PathLike|StrPath|Literal|Sequence|Mapping|Iterable|Callable|Any|Self|optional|default.*)",
    ),
]

# -- HTML output -------------------------------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = "xspecies"
html_css_files = ["custom.css"]
html_theme_options = {
    "repository_url": repository_url,
    "repository_branch": "main",
    "path_to_docs": "docs/",
    "use_repository_button": True,
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
