"""Parameter descriptions shared by several docstrings, written once (as scanpy's ``_doc_params``).

A docstring names a shared description by a placeholder line ``{name}`` at the indentation of its
``Parameters`` entries; :func:`doc_params` replaces the line with the text, indented alike.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "doc_adata",
    "doc_ax",
    "doc_error_name",
    "doc_key_added_table",
    "doc_layer",
    "doc_model_pair",
    "doc_params",
    "doc_progress_bar",
    "doc_progressbar",
    "doc_random_state_sampling",
    "doc_show_save",
]

_T = TypeVar("_T")

doc_adata = """\
adata
    Annotated data matrix (cells x genes)."""

doc_layer = """\
layer
    Layer that holds the counts; ``None`` for ``X``."""

doc_model_pair = """\
target
    Trained :class:`~xspecies.model.TargetModel` built from ``context``.
context
    Trained :class:`~xspecies.model.ContextModel` with its AnnData."""

doc_key_added_table = """\
key_added
    ``target.adata.uns`` key of the result (``{"params": ..., "table": ...}``)."""

doc_random_state_sampling = """\
random_state
    Seed of the sampling."""

doc_progress_bar = """\
progress_bar
    Show progress."""

doc_ax = """\
ax
    Axes to draw into; ``None`` draws a new figure."""

doc_show_save = """\
show
    Show the figure with :func:`matplotlib.pyplot.show`. ``None`` shows it only when the plotting
    function drew a new figure and returns nothing, like scanpy; ``False`` never shows it.
save
    File to write the figure to (format from the suffix, e.g. ``.png``, ``.pdf``); parent folders
    are created.
return_fig
    Return the figure instead of the axes."""

doc_error_name = """\
name
    How the object is called in error messages."""

doc_progressbar = """\
progressbar
    Show a download progress bar."""


def doc_params(**texts: str) -> Callable[[_T], _T]:
    """Decorator: fill the placeholder lines ``{key}`` of a docstring with shared descriptions.

    Only whole lines that hold a placeholder are replaced; other braces of the docstring (in examples,
    for instance) are left alone.

    Parameters
    ----------
    **texts
        ``key=text``: the text (one or more lines) that replaces the line ``{key}``.

    Returns
    -------
    The decorator; it raises :class:`ValueError` when the docstring lacks one of the placeholders.

    Examples
    --------
    >>> @doc_params(adata=doc_adata)
    ... def n_cells(adata):
    ...     '''Number of cells.
    ...
    ...     Parameters
    ...     ----------
    ...     {adata}
    ...     '''
    ...     return adata.n_obs
    >>> [line.strip() for line in n_cells.__doc__.splitlines() if line.strip()][-2:]
    ['adata', 'Annotated data matrix (cells x genes).']
    >>> doc_params(layer=doc_layer)(n_cells)
    Traceback (most recent call last):
    ...
    ValueError: the docstring of n_cells has no line {layer} to fill.
    """

    def decorate(obj: _T) -> _T:
        doc = obj.__doc__ or ""
        for key, text in texts.items():
            line = re.compile(rf"^(?P<indent>[ \t]*)\{{{re.escape(key)}\}}[ \t]*$", re.MULTILINE)
            if not line.search(doc):
                raise ValueError(f"the docstring of {obj.__qualname__} has no line {{{key}}} to fill.")
            doc = line.sub(lambda match, text=text: textwrap.indent(text, match["indent"]), doc)
        obj.__doc__ = doc
        return obj

    return decorate
