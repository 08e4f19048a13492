"""Names of a package loaded on first access (PEP 562), so that ``import xspecies`` stays fast.

A package lists its public names once, as imports under ``if TYPE_CHECKING:`` (which static analysers
and IDEs read), and hands its own ``__file__`` to :func:`attach`; at run time nothing is imported until
a name is first used: ``xs.pp`` imports the sub-package, ``xs.pp.prepare`` the module that defines it
(and with it scanpy), ``xs.pl`` no matplotlib until a plotting function is reached.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["attach"]


def _type_checking_imports(init_file: str) -> dict[str, tuple[str, str]]:
    """``{name: (module, attribute)}`` of the ``from . import`` lines under ``if TYPE_CHECKING:``."""
    tree = ast.parse(Path(init_file).read_text(encoding="utf-8"))
    origin = {}
    blocks = [
        node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    for node in blocks:
        for statement in node.body:
            if not (isinstance(statement, ast.ImportFrom) and statement.level == 1):
                raise TypeError(f"{init_file}: only 'from . import' lines belong under TYPE_CHECKING")
            for alias in statement.names:
                if statement.module is None:  # from . import pp: the sub-package itself
                    origin[alias.asname or alias.name] = (f".{alias.name}", "")
                else:
                    origin[alias.asname or alias.name] = (f".{statement.module}", alias.name)
    return origin


def attach(package: str, init_file: str) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` of a package whose public names load on first access.

    Parameters
    ----------
    package
        The package's ``__name__``.
    init_file
        The package's ``__file__``: its ``if TYPE_CHECKING:`` block lists the public names.

    Returns
    -------
    ``(__getattr__, __dir__)`` to assign in the package's ``__init__.py``.

    Examples
    --------
    >>> import xspecies as xs
    >>> "prepare" in dir(xs.pp)
    True
    """
    origin = _type_checking_imports(init_file)

    def __getattr__(name: str) -> object:
        if name not in origin:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, attribute = origin[name]
        module = importlib.import_module(module_name, package)
        value = getattr(module, attribute) if attribute else module
        setattr(sys.modules[package], name, value)  # later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(origin))

    return __getattr__, __dir__
