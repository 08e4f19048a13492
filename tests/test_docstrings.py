"""Every public function, class and method has a numpy-style docstring with its sections.

The API reference renders these docstrings, so each public name of :mod:`xspecies.pp`,
:mod:`xspecies.tl`, :mod:`xspecies.pl`, :mod:`xspecies.datasets` and :mod:`xspecies.model`
(their ``__all__``), and each public method that an xspecies class defines itself (also in its private
base classes, not those inherited from scvi-tools, torch or lightning), must document:

- ``Parameters``, when it takes arguments besides ``self`` / ``cls``;
- ``Returns`` (or ``Yields``), for functions and methods (a class documents what it is instead);
- ``Examples`` (except on overrides of Lightning hooks such as ``training_step``, which Lightning calls).
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterator

import pytest

SUBPACKAGES = ("pp", "tl", "pl", "datasets", "model")
# a numpy-style section header: a title line underlined with dashes of the same length
_SECTION = re.compile(r"^(?P<title>[A-Z][A-Za-z ]*)\n(?P<rule>-+)$", re.MULTILINE)


def sections(doc: str) -> set[str]:
    """Titles of the numpy-style sections of ``doc`` (``{"Parameters", "Returns"}``)."""
    return {m["title"].strip() for m in _SECTION.finditer(doc) if len(m["rule"]) == len(m["title"].strip())}


def _takes_parameters(obj: Callable) -> bool:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return any(name not in ("self", "cls") for name in signature.parameters)


def _is_ours(obj: object) -> bool:
    return getattr(obj, "__module__", "").startswith("xspecies")


def _own_methods(cls: type) -> Iterator[tuple[str, Callable]]:
    """Public methods defined by xspecies classes of ``cls``'s MRO, under their qualified names."""
    seen = set()
    for klass in cls.__mro__:
        if not _is_ours(klass):
            continue
        for name, attr in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            function = attr.__func__ if isinstance(attr, classmethod | staticmethod) else attr
            if inspect.isfunction(function) and _is_ours(function):
                yield function.__qualname__, function


def public_callables() -> dict[str, Callable]:
    """``{qualified name: object}`` for the public names of the sub-packages and their own methods."""
    found = {}
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"xspecies.{sub}")
        for name in module.__all__:
            obj = getattr(module, name)
            found[f"xspecies.{sub}.{name}"] = obj
            if inspect.isclass(obj):
                for qualname, method in _own_methods(obj):
                    found.setdefault(f"{method.__module__}.{qualname}", method)
    return found


def _is_lightning_hook(obj: Callable) -> bool:
    """Whether ``obj`` overrides a hook that Lightning defines (``training_step``, ``on_train_epoch_end``...)."""
    from lightning.pytorch import LightningModule

    lightning = [k for k in LightningModule.__mro__ if k.__module__.startswith("lightning")]
    return inspect.isfunction(obj) and any(obj.__name__ in vars(k) for k in lightning)


def problems(name: str, obj: Callable) -> list[str]:
    """What the docstring of ``obj`` lacks, as readable lines (empty when complete)."""
    doc = inspect.getdoc(obj) if inspect.isclass(obj) else obj.__doc__
    if not doc:
        return [f"{name}: no docstring"]
    present = sections(inspect.cleandoc(doc))
    missing = []
    if _takes_parameters(obj) and "Parameters" not in present:
        missing.append("Parameters")
    if not inspect.isclass(obj) and not {"Returns", "Yields"} & present:
        missing.append("Returns")
    if "Examples" not in present and not _is_lightning_hook(obj):
        missing.append("Examples")
    return [f"{name}: missing {', '.join(missing)}"] if missing else []


def test_section_parser():
    doc = inspect.cleandoc(
        """Summary.

        Parameters
        ----------
        x
            Something.

        Returns
        -------
        The value.

        Examples
        --------
        >>> f(1)
        """
    )
    assert sections(doc) == {"Parameters", "Returns", "Examples"}
    assert sections("Summary.\n\nNotes\n---\n") == set()  # rule shorter than the title


def test_collects_public_names_and_own_methods():
    found = public_callables()
    assert "xspecies.pp.translate_genes" in found
    assert "xspecies.pl.finalize" in found
    assert "xspecies.model.TargetModel" in found
    # methods defined in xspecies are collected, methods inherited from scvi-tools are not
    assert any(name.endswith("TargetModel.from_context") for name in found)
    assert not any(name.endswith((".view_anndata_setup", ".get_normalized_expression")) for name in found)


def test_every_public_docstring_has_parameters_returns_examples():
    failures = [line for name, obj in sorted(public_callables().items()) for line in problems(name, obj)]
    if failures:
        pytest.fail(
            f"{len(failures)} public docstrings lack numpy-style sections:\n  " + "\n  ".join(failures),
            pytrace=False,
        )
