"""Scenario sets shipped inside the package (`harness/suite/scenarios/<name>/`), so an installed vlh has them too."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from harness.errors import VlhError


def builtin_names() -> list[str]:
    """The shipped sets: `nightly` today."""
    root = Path(str(files("harness.suite") / "scenarios"))
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def builtin_path(name: str = "nightly") -> Path:
    """The directory of a shipped scenario set (a plain directory: the package is installed unzipped)."""
    p = Path(str(files("harness.suite") / "scenarios" / name))
    if not p.is_dir():
        raise VlhError(f"no built-in scenario set {name!r}; there are: {', '.join(builtin_names())}")
    return p
