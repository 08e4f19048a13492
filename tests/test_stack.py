"""The lowest stack CI tests (``.ci/constraints-lowest.txt``) is the set of lower bounds of pyproject.toml."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lower_bounds() -> dict[str, str]:
    """``{distribution: lowest version}`` of the run-time dependencies in pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bounds = {}
    for requirement in project["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?>=([0-9.]+)(?:,.*)?", requirement)
        assert match, f"dependency without a lower bound: {requirement!r}"
        bounds[match.group(1).lower()] = match.group(2)
    return bounds


def pins() -> dict[str, str]:
    """``{distribution: version}`` of ``.ci/constraints-lowest.txt``."""
    lines = (ROOT / ".ci" / "constraints-lowest.txt").read_text().splitlines()
    pairs = [line.split("==") for line in lines if line.strip() and not line.startswith("#")]
    return {name.strip().lower(): version.strip() for name, version in pairs}


def release(version: str) -> tuple[int, ...]:
    """``"1.3"`` -> ``(1, 3, 0, 0)``: ``1.3`` and ``1.3.0`` name the same release."""
    parts = [int(part) for part in version.split(".")]
    return tuple(parts + [0] * (4 - len(parts)))


def test_every_lower_bound_is_pinned_in_the_lowest_stack():
    bounds, pinned = lower_bounds(), pins()
    assert set(pinned) == set(bounds), set(pinned) ^ set(bounds)
    differ = {
        name: (bounds[name], pinned[name])
        for name in bounds
        if release(bounds[name]) != release(pinned[name])
    }
    assert not differ, f"pyproject lower bound vs .ci/constraints-lowest.txt: {differ}"
